"""Bad inventories, settings and arguments: exit 2 and one clear line naming the file and field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """
[fleet]
name = "emea-prod"
environment = "production"
update_server = "http://updates.example.com"

[defaults]
username = "admin"
password_env = "SEGTUI_PASSWORD"
known_hosts = "known_hosts"
port = 22

[[appliance]]
name = "esa1"
host = "esa1.example.com"
port = 22
group = "dc1"
cluster = "mailcluster"
"""

# (what is wrong, inventory text or None for a missing file, env changes, expected fragment of the line)
CASES: list[tuple[str, str | None, dict[str, str | None], str]] = [
    ("file missing", None, {}, "inventory file not found"),
    ("bad TOML", "[fleet\nname=", {}, "not valid TOML"),
    (
        "missing fleet",
        GOOD.replace(
            '[fleet]\nname = "emea-prod"\nenvironment = "production"\nupdate_server = "http://updates.example.com"\n',
            "",
        ),
        {},
        "fleet: required key",
    ),
    (
        "missing fleet name",
        GOOD.replace('name = "emea-prod"\n', ""),
        {},
        "fleet.name: required key is missing",
    ),
    ("bad environment", GOOD.replace('"production"', '"prod"'), {}, "fleet.environment"),
    (
        "bad update_server",
        GOOD.replace('"http://updates.example.com"', '"updates.example.com"'),
        {},
        "fleet.update_server",
    ),
    (
        "port wrong type",
        GOOD.replace("port = 22\ngroup", 'port = "22"\ngroup'),
        {},
        "appliance[0] (esa1).port",
    ),
    (
        "port out of range",
        GOOD.replace("port = 22\ngroup", "port = 70000\ngroup"),
        {},
        "appliance[0] (esa1).port",
    ),
    (
        "unknown key",
        GOOD.replace('group = "dc1"', 'group = "dc1"\ncolour = "red"'),
        {},
        "appliance[0] (esa1).colour: unknown key",
    ),
    (
        "missing host",
        GOOD.replace('host = "esa1.example.com"\n', ""),
        {},
        "appliance[0] (esa1).host: required",
    ),
    ("duplicate name", GOOD + '\n[[appliance]]\nname = "esa1"\nhost = "b"\n', {}, "duplicate name"),
    ("no appliances", GOOD.split("[[appliance]]")[0], {}, "appliance: required key is missing"),
    (
        "password env unset",
        GOOD,
        {"SEGTUI_PASSWORD": None},
        "environment variable SEGTUI_PASSWORD is not set",
    ),
    ("known_hosts missing", GOOD.replace('"known_hosts"', '"nowhere/known_hosts"'), {}, "known_hosts"),
    (
        "key_file missing",
        GOOD.replace('password_env = "SEGTUI_PASSWORD"', 'key_file = "id_missing"'),
        {},
        "key_file",
    ),
    (
        "no credentials",
        GOOD.replace('password_env = "SEGTUI_PASSWORD"\n', ""),
        {},
        "needs password_env or key_file",
    ),
    ("bad appliance name", GOOD.replace('name = "esa1"', 'name = "esa 1"'), {}, ".name"),
    ("appliance not a table", GOOD.replace("[[appliance]]", "appliance = 3\n[[x]]"), {}, "appliance"),
    ("host with spaces", GOOD.replace('host = "esa1.example.com"', 'host = "esa1 example"'), {}, ".host"),
]


def run(args: list[str], cwd: Path, env: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "SEGTUI_PASSWORD": "pw"}
    for k, v in env.items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    return subprocess.run(
        [sys.executable, "-m", "segtui", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_inventory(tmp_path: Path, case: tuple[str, str | None, dict[str, str | None], str]) -> None:
    _, text, env, expected = case
    inv = tmp_path / "inventory.toml"
    if text is not None:
        inv.write_text(text)
    (tmp_path / "known_hosts").write_text("")
    proc = run(["check", "--inventory", str(inv), "--target", "16.0.0-123"], tmp_path, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines and all(line.startswith("segtui: ") for line in lines)
    assert any(str(inv) in line and expected in line for line in lines), lines


def test_several_problems_one_line_each(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.toml"
    inv.write_text(GOOD.replace('"production"', '"prod"').replace("port = 22\ngroup", 'port = "x"\ngroup'))
    proc = run(["check", "--inventory", str(inv), "--target", "16.0.0-123"], tmp_path, {})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 2


BAD_SETTINGS = [
    ("concurrency = 0\n", "concurrency"),
    ("theme = 3\n", "theme"),
    ("[deadlines]\nreboot = -5\n", "deadlines.reboot"),
    ("nonsense = 1\n", "nonsense"),
    ("[polling\n", "not valid TOML"),
]


@pytest.mark.parametrize("text,expected", BAD_SETTINGS)
def test_bad_settings_file(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "segtui.toml").write_text(text)
    inv = tmp_path / "inventory.toml"
    inv.write_text(GOOD)
    (tmp_path / "known_hosts").write_text("")
    proc = run(["check", "--inventory", str(inv), "--target", "16.0.0-123"], tmp_path, {})
    assert proc.returncode == 2, proc.stderr
    assert "segtui.toml" in proc.stderr and expected in proc.stderr and "Traceback" not in proc.stderr


def test_bad_environment_setting(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.toml"
    inv.write_text(GOOD)
    (tmp_path / "known_hosts").write_text("")
    proc = run(["check", "--inventory", str(inv), "--target", "16.0.0-123"], tmp_path, {"SEGTUI_CONCURRENCY": "lots"})
    assert proc.returncode == 2 and "concurrency" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args,expected",
    [
        (["run", "--inventory", "INV", "--target", "sixteen"], "--target"),
        (["run", "--inventory", "INV", "--target", "16.0.0-123", "--batch", "0,x"], "--batch"),
        (["run", "--inventory", "INV", "--target", "16.0.0-123", "--max-fail", "-1"], "--max-fail"),
        (
            ["run", "--inventory", "INV", "--target", "16.0.0-123", "--max-unavailable", "0"],
            "--max-unavailable",
        ),
        (["demo", "--headless", "--faults", "esa01=explode"], "--faults"),
        (["demo", "--headless", "--faults", "esa99=flaky", "--appliances", "3"], "not in the fleet"),
        (["resume", "--inventory", "INV"], "no interrupted rollout"),
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str], expected: str) -> None:
    inv = tmp_path / "inventory.toml"
    inv.write_text(GOOD)
    (tmp_path / "known_hosts").write_text("")
    proc = run([str(inv) if a == "INV" else a for a in args], tmp_path, {})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
