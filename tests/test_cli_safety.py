"""Production safety from the command line (issue 12): `--confirm`, abort is final, budgets, read-only, resume gates,
and the last-resort handler. Each test failed on the code before it (see the break-on-purpose notes in the report)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from segtui import cli
from segtui.rollout.engine import RolloutOptions
from segtui.rollout.events import State
from segtui.rollout.journal import ApplianceRecord, Journal

INVENTORY = """
[fleet]
name = "emea-prod"
environment = "{environment}"
update_server = "http://127.0.0.1:9"

[defaults]
username = "admin"
password_env = "SEGTUI_PASSWORD"
known_hosts = "known_hosts"

[[appliance]]
name = "esa1"
host = "127.0.0.1"
port = 9

[[appliance]]
name = "esa2"
host = "127.0.0.1"
port = 9
"""


def inventory(tmp_path: Path, environment: str = "production") -> Path:
    inv = tmp_path / "fleet" / "inventory.toml"
    inv.parent.mkdir(exist_ok=True)
    inv.write_text(INVENTORY.format(environment=environment))
    (inv.parent / "known_hosts").write_text("")
    return inv


def journal_with_rollout(inv: Path, *, max_fail: str = "0", failed: bool = False) -> tuple[Journal, int]:
    """A journaled, interrupted rollout of `inv` in the state directory beside it."""
    journal = Journal(inv.parent / ".segtui" / "journal.sqlite")
    rollout_id = journal.begin(str(inv.resolve()), "16.0.0-123", asdict(RolloutOptions(max_fail=max_fail)))
    journal.action("created", "target 16.0.0-123", who="alice@noc1")
    journal.save(ApplianceRecord(name="esa1", state=State.FAILED if failed else State.PENDING, error="boom"))
    journal.save(ApplianceRecord(name="esa2"))
    return journal, rollout_id


def segtui(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGTUI_")}
    env["SEGTUI_PASSWORD"] = "pw-for-tests"
    return subprocess.run(
        [sys.executable, "-m", "segtui", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def one_line(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if all(f in ln for f in fragments)]
    assert lines, proc.stderr
    return lines[0]


# --- headless on production needs the fleet's name -----------------------------------------------------------------
@pytest.mark.parametrize("confirm", [None, "emea", "EMEA-PROD"])
def test_headless_run_on_production_refuses_without_the_typed_name(tmp_path: Path, confirm: str | None) -> None:
    inv = inventory(tmp_path)
    args = ["run", "--headless", "--inventory", str(inv), "--target", "16.0.0-123"]
    proc = segtui(args + (["--confirm", confirm] if confirm else []), tmp_path)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    one_line(proc, 2, "--confirm FLEETNAME", "production")
    assert not (inv.parent / ".segtui" / "journal.sqlite").exists()  # refused at once: nothing journaled


def test_headless_run_on_production_with_the_name_goes_on_to_preflight(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    proc = segtui(
        ["run", "--headless", "--inventory", str(inv), "--target", "16.0.0-123", "--confirm", "emea-prod"], tmp_path
    )
    one_line(proc, 3, "pre-flight refused")  # nothing listens on port 9: the gate was passed, the pre-flight refuses


def test_headless_resume_on_production_refuses_without_the_typed_name(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    journal, _ = journal_with_rollout(inv)
    proc = segtui(["resume", "--headless", "--inventory", str(inv)], tmp_path)
    one_line(proc, 2, "--confirm FLEETNAME")
    actions = [a for (a,) in journal.db.execute("SELECT action FROM actions")]
    assert actions == ["created"]  # nothing resumed, nothing started


def test_readonly_cannot_be_headless(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "lab")
    journal_with_rollout(inv)
    proc = segtui(["resume", "--headless", "--readonly", "--inventory", str(inv)], tmp_path)
    one_line(proc, 2, "--readonly")


# --- abort is final ------------------------------------------------------------------------------------------------
def test_resume_of_an_aborted_rollout_says_so_and_starts_nothing(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "lab")
    journal, rollout_id = journal_with_rollout(inv)
    journal.action("abort", who="bob@noc2")
    journal.finish("aborted")
    other = tmp_path / "elsewhere"
    other.mkdir()
    proc = segtui(["resume", "--headless", "--inventory", str(inv)], other)
    line = one_line(proc, 2, f"rollout {rollout_id}", "was aborted by bob@noc2 at 20", "nothing was started")
    assert "segtui run" in line
    actions = [a for (a,) in journal.db.execute("SELECT action FROM actions ORDER BY id")]
    assert actions == ["created", "abort"]


def test_resume_of_an_abort_that_never_finished_is_still_final(tmp_path: Path) -> None:
    """segtui died between the abort and the end of the rollout: the journal's abort action decides."""
    inv = inventory(tmp_path, "lab")
    journal, _ = journal_with_rollout(inv)
    journal.action("abort", who="bob@noc2")
    proc = segtui(["resume", "--headless", "--inventory", str(inv)], tmp_path)
    one_line(proc, 2, "was aborted by bob@noc2")


# --- the failure budget --------------------------------------------------------------------------------------------
def test_resume_with_a_spent_budget_refuses_and_names_max_fail(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "lab")
    journal, _ = journal_with_rollout(inv, max_fail="0", failed=True)
    proc = segtui(["resume", "--headless", "--inventory", str(inv)], tmp_path)
    one_line(proc, 2, "failure budget spent", "--max-fail")
    actions = [a for (a,) in journal.db.execute("SELECT action FROM actions ORDER BY id")]
    assert "unpause" not in actions and "start" not in actions


# --- interactive resume: production waits for the gate, read-only never starts ---------------------------------------
@pytest.mark.parametrize(
    "environment,flags,autostart",
    [
        ("production", [], False),
        ("production", ["--readonly"], False),
        ("lab", ["--readonly"], False),
        ("lab", [], True),
    ],
)
def test_interactive_resume_autostarts_only_where_no_gate_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: str, flags: list[str], autostart: bool
) -> None:
    import segtui.tui.app

    inv = inventory(tmp_path, environment)
    journal_with_rollout(inv)
    seen: dict[str, Any] = {}

    async def fake_dashboard(rollout: Any, *, readonly: bool, autostart: bool, sim: Any = None) -> str:
        seen.update(readonly=readonly, autostart=autostart, state=rollout.state)
        return "paused"

    monkeypatch.setattr(segtui.tui.app, "run_dashboard", fake_dashboard)
    monkeypatch.delenv("SEGTUI_STATE_DIR", raising=False)
    assert cli.main(["resume", "--inventory", str(inv), *flags]) == 1
    assert seen["autostart"] is autostart
    assert seen["readonly"] is ("--readonly" in flags)
    assert seen["state"] != "running"  # nothing was started before the dashboard came up


def test_readonly_resume_writes_nothing_to_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import segtui.tui.app

    inv = inventory(tmp_path, "production")
    journal, rollout_id = journal_with_rollout(inv)
    before = journal.db.execute("SELECT COUNT(*) FROM actions").fetchone()[0]
    shown: dict[str, Any] = {}

    async def fake_dashboard(rollout: Any, *, readonly: bool, autostart: bool, sim: Any = None) -> str:
        shown.update(records=dict(rollout.records))
        return "paused"

    monkeypatch.setattr(segtui.tui.app, "run_dashboard", fake_dashboard)
    monkeypatch.delenv("SEGTUI_STATE_DIR", raising=False)
    cli.main(["resume", "--inventory", str(inv), "--readonly"])
    # the interrupted rollout is shown as the journal has it...
    assert shown["records"]["esa1"].error == "boom"
    # ...and read-only changed nothing: no operator action, the rollout still interrupted (not reopened or closed)
    assert journal.db.execute("SELECT COUNT(*) FROM actions").fetchone()[0] == before
    assert journal.db.execute("SELECT outcome FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()[0] is None


# --- the last resort -----------------------------------------------------------------------------------------------
def test_unexpected_error_is_one_line_with_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import segtui.commands.history

    async def explode(args: Any) -> int:
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(segtui.commands.history, "history", explode)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    inv = inventory(tmp_path, "lab")
    assert cli.main(["history", "--inventory", str(inv)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unexpected error: RuntimeError: something nobody expected" in lines[0]
    log = Path(lines[0].split("details in ")[1].split(")")[0].split(";")[0])
    assert log.is_file() and "Traceback" in log.read_text()
