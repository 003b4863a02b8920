"""Reports an auditor accepts (issue 13): names, times, steps, actions, what needs a person; hostile text inert;
`segtui history` and `segtui report` from the journal, from any working directory (issue 16)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segtui.inventory import Inventory, load_inventory
from segtui.rollout.events import State
from segtui.rollout.journal import ApplianceRecord, Journal
from segtui.rollout.report import markdown, report_from_journal, report_paths, write_report
from segtui.settings import Settings

PASSWORD = "Hunter2-Very-Secret"
SETTINGS = Settings()
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")
HOSTILE = "bad | pipe `tick` \x1b]0;pwned\x07 \x1b]52;c;SGVsbG8=\x07 \x1b[2J [/] *bold* <b> " + PASSWORD

INVENTORY = """
[fleet]
name = "emea-lab"
environment = "lab"
update_server = "http://127.0.0.1:9"

[defaults]
password_env = "SEGTUI_PASSWORD"
known_hosts = "known_hosts"

[[appliance]]
name = "esa1"
host = "127.0.0.1"
port = 2201

[[appliance]]
name = "esa2"
host = "127.0.0.1"
port = 2202
"""


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    path = tmp_path / "fleet" / "inventory.toml"
    path.parent.mkdir()
    path.write_text(INVENTORY)
    (path.parent / "known_hosts").write_text("")
    return load_inventory(path, environ={"SEGTUI_PASSWORD": PASSWORD})


def journal_of(inv: Inventory, *, error: str = "upgrade failed", outcome: str | None = "failed") -> tuple[Journal, int]:
    journal = Journal(inv.path.parent / ".segtui" / "journal.sqlite")
    rollout_id = journal.begin(str(inv.path), "16.0.0-123", {"batch": "1,25%", "max_fail": "1"}, "alice@noc1")
    journal.save_batches([["esa1"], ["esa2"]])
    journal.event("batch-start", "batch 1 of 2: esa1", ts=time.time() - 100)
    journal.event("batch-end", "batch 1 of 2 finished: 1 done", ts=time.time() - 40)
    journal.event("warning", "esa2: \x1b[31mqueue high\x1b[0m", "esa2")
    journal.action("created", "target 16.0.0-123", who="alice@noc1")
    journal.action("start", who="alice@noc1")
    t0 = time.time() - 100
    done = ApplianceRecord(
        name="esa1",
        state=State.DONE,
        version_before="15.0.0-104",
        current="16.0.0-123",
        hops=["15.5.1-055", "16.0.0-123"],
        backups=[{"kind": "config", "path": "/b/esa1.xml", "sha256": "ab" * 32}],
        started=t0,
        finished=t0 + 60,
    )
    bad = ApplianceRecord(
        name="esa2",
        state=State.FAILED,
        version_before="15.0.0-104",
        current="15.0.0-104",
        listeners="suspended",
        suspended_by_us=True,
        error=error,
        started=t0 + 60,
        finished=t0 + 90,
    )
    for rec in (done, bad):
        journal.save(rec)
    step = journal.step_started("esa1", "upgrade")
    journal.step_finished(step, True, "")
    step = journal.step_started("esa2", "upgrade")
    journal.step_finished(step, False, error)
    journal.action("skip", "esa2", who="bob@noc2")
    if outcome:
        journal.finish(outcome)
    return journal, rollout_id


@pytest.mark.parametrize(
    "given,json_name,md_name",
    [
        ("r", "r.json", "r.md"),
        ("r.json", "r.json", "r.md"),
        ("out/r.md", "out/r.json", "out/r.md"),
        ("a.b", "a.b.json", "a.b.md"),
    ],
)
def test_report_names_get_their_extensions(given: str, json_name: str, md_name: str) -> None:
    assert report_paths(Path(given)) == (Path(json_name), Path(md_name))


def test_report_holds_what_an_auditor_asks_for(inv: Inventory, tmp_path: Path) -> None:
    journal, rollout_id = journal_of(inv)
    report = report_from_journal(journal, inv, rollout_id, SETTINGS)
    assert ISO.match(report["started"]) and ISO.match(report["finished"])
    assert report["operator"] == "alice@noc1"
    assert report["options"] == {"batch": "1,25%", "max_fail": "1"}
    assert report["batches"][0]["appliances"] == ["esa1"] and ISO.match(report["batches"][0]["started"])
    assert (
        report["batches"][0]["summary"] == "batch 1 of 2 finished: 1 done" and report["batches"][1]["started"] is None
    )
    assert report["warnings"][0]["text"] == "esa2: queue high"  # sanitised
    esa1, esa2 = report["appliances"]
    assert ISO.match(esa1["started"]) and ISO.match(esa1["finished"]) and esa1["seconds"] == 60.0
    assert esa1["path"] == ["15.5.1-055", "16.0.0-123"]
    assert esa1["backups"][0]["sha256"] == "ab" * 32
    assert esa1["steps"][0]["step"] == "upgrade" and esa1["steps"][0]["ok"] is True
    assert {"hostname", "serial", "unrecognized_questions", "update_settings", "listeners"} <= set(esa1)
    assert esa2["error"] == "upgrade failed" and esa2["listeners"] == "suspended"
    assert [a["action"] for a in report["operator_actions"]] == ["created", "start", "skip"]
    assert report["operator_actions"][2]["who"] == "bob@noc2"
    person = [n for n in report["needs_a_person"] if n["appliance"] == "esa2"]
    assert any("resumelistener" in n["command"] and "ssh -p 2202 admin@127.0.0.1" in n["command"] for n in person)
    md = markdown(report)
    assert "## Needs a person" in md and "## Operator actions" in md and "## Steps" in md and "## Backups" in md


def test_no_empty_headings(inv: Inventory) -> None:
    journal, rollout_id = journal_of(inv)
    md = markdown(report_from_journal(journal, inv, rollout_id, SETTINGS))
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#"):
            following = next((ln for ln in lines[i + 1 :] if ln.strip()), "")
            assert following and not following.startswith("#"), f"empty heading {line!r}"
    assert "## Notification" not in md and "## Questions" not in md


def test_hostile_appliance_text_cannot_break_the_report(inv: Inventory, tmp_path: Path) -> None:
    journal, rollout_id = journal_of(inv, error=HOSTILE)
    report = report_from_journal(journal, inv, rollout_id, SETTINGS)
    write_report(report, tmp_path / "r")
    for name in ("r.json", "r.md"):
        text = (tmp_path / name).read_text()
        assert "\x1b" not in text and "\x07" not in text, name
        assert PASSWORD not in text, name
    md = (tmp_path / "r.md").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| appliance | hostname"))
    row = next(ln for ln in md.splitlines() if ln.startswith("| esa2 |"))
    unescaped = re.compile(r"(?<!\\)\|")
    assert len(unescaped.findall(row)) == len(unescaped.findall(header))  # the `|` stayed inside its cell
    assert "\\`tick\\`" in md and "\\*bold\\*" in md and "\\<b\\>" in md
    assert oct((tmp_path / "r.json").stat().st_mode & 0o777) == "0o600"


def segtui(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGTUI_")}
    env["SEGTUI_PASSWORD"] = PASSWORD
    return subprocess.run(
        [sys.executable, "-m", "segtui", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_history_and_report_from_another_directory(inv: Inventory, tmp_path: Path) -> None:
    journal, first = journal_of(inv, outcome="failed")
    second = journal.begin(str(inv.path), "16.0.0-200", {}, "carol@noc3")
    journal.action("created", "target 16.0.0-200", who="carol@noc3")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = segtui(["history", "--inventory", str(inv.path)], elsewhere)
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()[1:]
    assert len(rows) == 2
    assert f"{first:>4}" in rows[0] and "16.0.0-123" in rows[0] and "failed" in rows[0] and "alice@noc1" in rows[0]
    assert "done 1" in rows[0] and "failed 1" in rows[0]
    assert "16.0.0-200" in rows[1] and "unfinished" in rows[1] and "carol@noc3" in rows[1]
    assert ISO.match(rows[0].split()[1])

    proc = segtui(["report", "--inventory", str(inv.path), "--rollout", str(first), "--out", "again"], elsewhere)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((elsewhere / "again.json").read_text())
    assert data["rollout_id"] == first and data["outcome"] == "failed" and data["operator"] == "alice@noc1"
    assert (elsewhere / "again.md").read_text().startswith(f"# segtui rollout {first}:")
    proc = segtui(["report", "--inventory", str(inv.path), "--out", "latest"], elsewhere)
    assert proc.returncode == 0 and json.loads((elsewhere / "latest.json").read_text())["rollout_id"] == second

    proc = segtui(["report", "--inventory", str(inv.path), "--rollout", "99", "--out", "x"], elsewhere)
    assert proc.returncode == 2 and "--rollout 99" in proc.stderr and "Traceback" not in proc.stderr
