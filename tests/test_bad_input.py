"""Bad inventories, settings and arguments: exit 2 and one clear line naming the file and field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    (
        "control sequence in fleet name",
        GOOD.replace('name = "emea-prod"', 'name = "emea\\u001b]0;PWNED\\u0007"'),
        {},
        "fleet.name",
    ),
    ("control sequence in group", GOOD.replace('group = "dc1"', 'group = "dc1\\u001b[2J"'), {}, ".group"),
    (
        "control character in cluster",
        GOOD.replace('cluster = "mailcluster"', 'cluster = "mail\\u0007"'),
        {},
        ".cluster",
    ),
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
        (["run", "--inventory", "INV", "--target", "16.0.0-123", "--concurrency", "0"], "--concurrency"),
        (["plan", "--offline", "--inventory", "INV", "--target", "16.0.0-123", "--concurrency", "0"], "--concurrency"),
        (["run", "--inventory", "INV", "--target", "16.0.0-123", "--notify", "ftp://h/T0K3N"], "--notify ftp://h/…"),
        (["run", "--inventory", "INV", "--target", "16.0.0-123", "--notify", "http://[::1"], "not a valid URL"),
        (["history", "--inventory", "INV"], ""),
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str], expected: str) -> None:
    inv = tmp_path / "inventory.toml"
    inv.write_text(GOOD)
    (tmp_path / "known_hosts").write_text("")
    proc = run([str(inv) if a == "INV" else a for a in args], tmp_path, {})
    if not expected:  # a command that must simply work on a fresh inventory
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        return
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert "T0K3N" not in proc.stderr


# --- untyped failures that used to end in a traceback (issues 12 and 17) --------------------------------------------


def _one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, no traceback, and one stderr line holding every fragment."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    hits = [line for line in lines if all(f in line for f in fragments)]
    assert hits, lines
    return hits[0]


def _check(tmp_path: Path, text: str, env: dict[str, str | None] | None = None, cwd: Path | None = None) -> Any:
    inv = tmp_path / "inventory.toml"
    inv.write_text(text)
    if not (tmp_path / "known_hosts").exists():
        (tmp_path / "known_hosts").write_text("")
    return run(["check", "--inventory", str(inv), "--target", "16.0.0-123"], cwd or tmp_path, env or {})


def test_encrypted_key_file_is_one_line(tmp_path: Path) -> None:
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / "id_enc").write_bytes(key.export_private_key("pkcs8-pem", passphrase="secret-passphrase"))
    text = GOOD.replace('password_env = "SEGTUI_PASSWORD"', 'key_file = "id_enc"')
    _one_line_error(_check(tmp_path, text), "defaults.key_file", "encrypted")


def test_garbage_key_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "id_bad").write_text("this is not a key\n")
    text = GOOD.replace('cluster = "mailcluster"', 'cluster = "mailcluster"\nkey_file = "id_bad"')
    _one_line_error(_check(tmp_path, text), "appliance[0] (esa1).key_file", "not a usable private key")


@pytest.mark.parametrize(
    "url,fragment",
    [("http://updates.example.com:99999", "Port out of range"), ("http://u:p@[::1", "not a valid URL")],
)
def test_update_server_that_cannot_be_a_url(tmp_path: Path, url: str, fragment: str) -> None:
    line = _one_line_error(_check(tmp_path, GOOD.replace("http://updates.example.com", url)), "fleet.update_server")
    assert fragment in line
    assert "u:p@" not in line  # the credentials are not echoed


@pytest.mark.parametrize("host", ["esa1;reboot", "$(touch pwned)", "esa1`id`", "-oProxyCommand=x", "a..b"])
def test_hosts_must_be_hostnames_or_addresses(tmp_path: Path, host: str) -> None:
    _one_line_error(_check(tmp_path, GOOD.replace("esa1.example.com", host)), "appliance[0] (esa1).host")


@pytest.mark.parametrize("host", ["10.0.0.1", "::1", "esa-1.mail.example.com", "esa_1.internal"])
def test_good_hosts_pass_the_inventory(tmp_path: Path, host: str) -> None:
    from segtui.inventory import load_inventory

    inv = tmp_path / "inventory.toml"
    inv.write_text(GOOD.replace("esa1.example.com", host))
    (tmp_path / "known_hosts").write_text("")
    assert load_inventory(inv, environ={"SEGTUI_PASSWORD": "pw"}).appliances[0].host == host


def test_appliance_known_hosts_is_named_by_its_appliance(tmp_path: Path) -> None:
    (tmp_path / "kh_bad").write_text("garbage\n")
    text = GOOD.replace('cluster = "mailcluster"', 'cluster = "mailcluster"\nknown_hosts = "kh_bad"')
    line = _one_line_error(_check(tmp_path, text), "appliance[0] (esa1).known_hosts", "cannot parse")
    assert "defaults.known_hosts" not in line


@pytest.mark.parametrize(
    "var,value,fragment",
    [("SEGTUI_DEADLINES", "not-json", "SEGTUI_DEADLINES"), ("SEGTUI_DEADLINES__REBOOT", "-5", "deadlines.reboot")],
)
def test_bad_environment_value_names_the_variable(tmp_path: Path, var: str, value: str, fragment: str) -> None:
    line = _one_line_error(_check(tmp_path, GOOD, {var: value}), f"environment variable {var}", fragment)
    assert "segtui.toml" not in line  # there is no such file here


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    env: dict[str, str | None] = {"SEGTUI_STATE_DIR": str(tmp_path / "afile")}
    _one_line_error(_check(tmp_path, GOOD, env), "state_dir", "not a directory")


def test_state_dir_without_parent(tmp_path: Path) -> None:
    env: dict[str, str | None] = {"SEGTUI_STATE_DIR": str(tmp_path / "no" / "such" / "dir")}
    _one_line_error(_check(tmp_path, GOOD, env), "state_dir", "does not exist")


def test_corrupted_journal_gives_guidance(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.toml"
    inv.write_text(GOOD)
    (tmp_path / "known_hosts").write_text("")
    state = tmp_path / ".segtui"
    state.mkdir(mode=0o700)
    (state / "journal.sqlite").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    proc = run(["resume", "--inventory", str(inv)], tmp_path, {})
    _one_line_error(proc, "journal", "move it aside")


def test_plan_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`segtui plan ... | head -1`: no BrokenPipeError traceback, no 'Exception ignored' at exit."""
    many = GOOD + "".join(
        f'\n[[appliance]]\nname = "esa{i}"\nhost = "10.0.{i // 250}.{i % 250}"\n' for i in range(2, 400)
    )
    inv = tmp_path / "inventory.toml"
    inv.write_text(many)
    (tmp_path / "known_hosts").write_text("")
    env = {**os.environ, "SEGTUI_PASSWORD": "pw"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "segtui", "plan", "--offline", "--inventory", str(inv), "--target", "16.0.0-123"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith("plan:")
    proc.stdout.close()  # the reader goes away, as `head -1` does
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, stderr
    assert stderr == "", stderr
