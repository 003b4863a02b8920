"""Pre-flight, plan and stage against appliances that misbehave (real SSH) and manifests we cannot read (real HTTP).

Only certain problems refuse; each appliance's trouble is one line for that appliance, never a traceback. An
appliance echoing its password, and inventory names carrying terminal control sequences, reach no output; `stage`
leaves an appliance alone while another segtui holds its machine-wide lock.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncssh
import pytest

from segtui.asyncos.commands import Appliance
from segtui.asyncos.errors import ApplianceError, ParseError
from segtui.asyncos.versions import Version
from segtui.inventory import load_inventory
from segtui.rollout.applock import ApplianceLocks
from segtui.rollout.context import RolloutContext
from segtui.rollout.engine import RolloutOptions
from segtui.rollout.journal import Journal
from segtui.rollout.preflight import appliance_problem, plan_batches, preflight
from segtui.rollout.render import render_plan, render_preflight, render_refusal
from segtui.rollout.staging import stage_fleet
from segtui.textsafe import Redactor
from tests.conftest import TEST_PASSWORD, make_settings
from tests.scripted import ScriptedAppliance, serve

TARGET = Version.parse("16.0.0-123")


def version_out(version: str, serial: str = "4229F1C3E7A9-ABCD1234EFGH") -> str:
    return (
        "\nCurrent Version\n===============\nProduct: Cisco C300V Secure Email Gateway Virtual\n"
        f"Model: C300V\nVersion: {version}\nSerial #: {serial}\n"
    )


GARBLED = "\n\x1b]0;pwned\x07Current Vers\x00ion\n====\nNothing you expect here\n"


class Manifests(BaseHTTPRequestHandler):
    served: dict[str, bytes] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.served.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def updates() -> Iterator[tuple[str, dict[str, bytes]]]:
    served: dict[str, bytes] = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (Manifests,), {"served": served}))
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


@dataclass
class Lab:
    inventory: Path
    appliances: dict[str, ScriptedAppliance]
    update_server: str
    served: dict[str, bytes]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


async def make_lab(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], outputs: dict[str, str | None], credentials: str = ""
) -> tuple[Lab, list[asyncssh.SSHAcceptor]]:
    """One scripted appliance per entry (`None`: nothing listens there), one inventory for them all."""
    server, served = updates
    if credentials:
        server = server.replace("http://", f"http://{credentials}@")
    acceptors: list[asyncssh.SSHAcceptor] = []
    appliances: dict[str, ScriptedAppliance] = {}
    entries = []
    for name, out in outputs.items():
        if out is None:
            entries.append((name, _closed_port(), tmp_path / "known_hosts_none"))
            (tmp_path / "known_hosts_none").write_text("")
            continue
        sa = ScriptedAppliance(password=TEST_PASSWORD, script={"version": [(out, None)]})
        acceptor, port, kh, _ = await serve(sa, tmp_path)
        acceptors.append(acceptor)
        appliances[name] = sa
        entries.append((name, port, kh))
    text = (
        f'[fleet]\nname = "lab"\nenvironment = "lab"\nupdate_server = "{server}"\n'
        '[defaults]\nusername = "admin"\npassword_env = "SEGTUI_PASSWORD"\n'
    )
    for i, (name, port, kh) in enumerate(entries):
        text += (
            f'\n[[appliance]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\n'
            f'group = "g{i % 2}"\nknown_hosts = "{kh}"\n'
        )
    inv = tmp_path / "fleet.toml"
    inv.write_text(text)
    return Lab(inv, appliances, server, served), acceptors


@pytest.fixture
async def acceptors() -> AsyncIterator[list[asyncssh.SSHAcceptor]]:
    items: list[asyncssh.SSHAcceptor] = []
    yield items
    for a in items:
        a.close()


def context(lab: Lab, tmp_path: Path) -> RolloutContext:
    settings = make_settings(tmp_path / "state")
    journal = Journal(settings.state_dir / "journal.sqlite")
    return RolloutContext(load_inventory(lab.inventory), settings, TARGET, journal, lambda e: None)


def _cli(lab: Lab, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGTUI_")}
    env["SEGTUI_PASSWORD"] = TEST_PASSWORD
    env["SEGTUI_STATE_DIR"] = str(tmp_path / "state")
    return subprocess.run(
        [sys.executable, "-m", "segtui", *args, "--inventory", str(lab.inventory), "--target", str(TARGET)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def cli(lab: Lab, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the scripted appliances answer on this test's event loop.
    return await asyncio.to_thread(_cli, lab, tmp_path, *args)


def _manifest(path: str, body: bytes, lab: Lab) -> None:
    lab.served[path] = body


BASE_PATH = "/asyncos/phoebe-15-0-0-104.xml"
HOP_PATH = "/asyncos/phoebe-15-5-1-055.xml"


async def test_every_appliance_problem_is_one_line(
    tmp_path: Path,
    updates: tuple[str, dict[str, bytes]],
    acceptors: list[asyncssh.SSHAcceptor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab, accs = await make_lab(
        tmp_path,
        updates,
        {
            "good": version_out("15.0.0-104"),
            "garbled": GARBLED,
            "newer": version_out("16.5.0-010"),
            "gone": None,
            "boom": version_out("15.0.0-104"),
        },
    )
    acceptors += accs
    _manifest(BASE_PATH, b"<m><v>16.0.0-123</v></m>", lab)
    real_version = Appliance.version

    async def version(self: Appliance) -> object:
        if self.name == "boom":
            raise RuntimeError("something nobody foresaw\nsecond line")
        return await real_version(self)

    monkeypatch.setattr(Appliance, "version", version)
    result = await preflight(context(lab, tmp_path))
    by_name = {a.name: a for a in result.appliances}
    assert not result.ok
    assert by_name["good"].ok and by_name["good"].path == [TARGET] and by_name["good"].expected_upgrades == 1
    assert "output not understood" in (by_name["garbled"].problem or "")
    assert "newer than the target" in (by_name["newer"].problem or "")
    assert by_name["gone"].problem and not by_name["gone"].ok
    assert by_name["boom"].problem == "unexpected error: RuntimeError: something nobody foresaw second line"
    lines = render_preflight(result, TARGET)
    assert len([line for line in lines if line.startswith("BAD ")]) == 4
    assert all("\n" not in line and "\x1b" not in line for line in lines)
    assert render_refusal(result)[-1] == "pre-flight refused: nothing was changed"
    named = sorted(line.split(":")[1].strip() for line in render_refusal(result)[:-1])
    assert named == ["boom", "garbled", "gone", "newer"]


async def test_check_refuses_garbled_and_unreachable_without_traceback(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], acceptors: list[asyncssh.SSHAcceptor]
) -> None:
    lab, accs = await make_lab(tmp_path, updates, {"good": version_out("15.0.0-104"), "garbled": GARBLED, "gone": None})
    acceptors += accs
    _manifest(BASE_PATH, b"<m><v>16.0.0-123</v></m>", lab)
    for command in ("check", "plan", "prepare"):
        proc = await cli(lab, tmp_path, command)
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        assert proc.returncode == {"check": 3, "plan": 0, "prepare": 1}[command], proc.stdout + proc.stderr
        assert "\x1b" not in proc.stdout
    assert "BAD garbled" in (await cli(lab, tmp_path, "check")).stdout


async def test_unrecognised_manifest_warns_and_the_appliance_decides(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], acceptors: list[asyncssh.SSHAcceptor]
) -> None:
    lab, accs = await make_lab(tmp_path, updates, {"a": version_out("15.0.0-104"), "b": version_out("16.0.0-123")})
    acceptors += accs
    _manifest(BASE_PATH, b'<catalogue owner="somebody"><entry>latest</entry></catalogue>', lab)
    check = await cli(lab, tmp_path, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "path decided by the appliance's list" in check.stdout
    assert "WARN" in check.stdout and "shape not recognised: the appliance's own list decides" in check.stdout
    assert "pre-flight passed with 1 warning(s)" in check.stdout
    plan = await cli(lab, tmp_path, "plan")
    assert plan.returncode == 0 and "15.0.0-104 -> 16.0.0-123 (path decided by the appliance's list)" in plan.stdout
    at_target = plan.stdout.split("  b (")[1].split("\n  a (")[0]
    assert "16.0.0-123: at the target, only `version` is read" in at_target and "upgrade >" not in at_target
    result = await preflight(context(lab, tmp_path))
    assert result.ok and result.expected_upgrades == {"a": 1, "b": 0} and result.expected_paths == {}
    prepare = await cli(lab, tmp_path, "prepare")
    assert prepare.returncode == 0, prepare.stdout
    assert "no image reference recognised in" in prepare.stdout and "check by hand" in prepare.stdout


async def test_missing_manifest_refuses(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], acceptors: list[asyncssh.SSHAcceptor]
) -> None:
    lab, accs = await make_lab(tmp_path, updates, {"a": version_out("15.0.0-104")})
    acceptors += accs
    check = await cli(lab, tmp_path, "check")
    assert check.returncode == 3 and "BAD manifest" in check.stdout and "HTTP 404" in check.stdout
    run = await cli(lab, tmp_path, "run", "--headless")
    assert run.returncode == 3 and "HTTP 404" in run.stderr and "Traceback" not in run.stderr


async def test_hops_are_planned_and_counted(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], acceptors: list[asyncssh.SSHAcceptor]
) -> None:
    lab, accs = await make_lab(tmp_path, updates, {"a": version_out("15.0.0-104"), "b": version_out("15.5.1-055")})
    acceptors += accs
    _manifest(BASE_PATH, b'<list><phoebe-15-5-1-055 href="asyncos/img/x.img"/></list>', lab)
    _manifest(HOP_PATH, b"<list><r>AsyncOS 16.0.0 build 123</r></list>", lab)
    ctx = context(lab, tmp_path)
    result = await preflight(ctx)
    assert result.ok and result.expected_upgrades == {"a": 2, "b": 1}
    assert result.expected_paths == {"a": [Version.parse("15.5.1-055"), TARGET], "b": [TARGET]}
    # Handed to the rollout: `upgrade` confirms nothing outside it (the hard rule), the engine orders by it.
    assert ctx.expected_paths == result.expected_paths
    checks = {a.name: a for a in result.appliances}
    lines = render_plan(ctx, RolloutOptions(batch="1"), plan_batches(ctx, RolloutOptions(batch="1")), checks)
    text = "\n".join(lines)
    assert "a (127.0.0.1" in text and "15.0.0-104 -> 15.5.1-055 -> 16.0.0-123" in text
    block = text.split("  a (")[1].split("batch 2")[0]
    assert block.count("upgrade > DOWNLOADINSTALL") == 2
    assert "list: " + lab.update_server + HOP_PATH in block


UPDATECONFIG_WITHOUT_ROW = (
    "\nService (images):                        Update URL:\n"
    "--------------------------------------------------------\n"
    "Feature Key updates                     Cisco Servers\n"
    "\nChoose the operation you want to perform:\n- SETUP - Edit update configuration.\n[]> "
)
UPGRADE_MENU = (
    "\nChoose the operation you want to perform:\n"
    "- DOWNLOADINSTALL - Downloads and installs the upgrade image (needs reboot).\n"
    "- DOWNLOAD - Downloads the upgrade image.\n[]> "
)


async def test_stage_survives_an_updateconfig_without_the_upgrade_row(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], acceptors: list[asyncssh.SSHAcceptor]
) -> None:
    lab, accs = await make_lab(tmp_path, updates, {"odd": version_out("15.0.0-104"), "gone": None})
    acceptors += accs
    sa = lab.appliances["odd"]
    sa.script["upgrade"] = [(UPGRADE_MENU, ".*")]
    sa.script["updateconfig"] = [(UPDATECONFIG_WITHOUT_ROW, ".*")]
    results = {r.name: r for r in await stage_fleet(context(lab, tmp_path), concurrency=2)}
    assert results["odd"].status == "failed" and "AsyncOS upgrades" in results["odd"].note
    assert "\n" not in results["odd"].note
    assert results["gone"].status == "failed"
    proc = await cli(lab, tmp_path, "stage")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "odd" in proc.stdout and "failed" in proc.stdout


async def test_prepare_walks_the_same_way_and_checks_the_images_it_finds(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], acceptors: list[asyncssh.SSHAcceptor]
) -> None:
    lab, accs = await make_lab(
        tmp_path, updates, {"a": version_out("15.0.0-104", "SERIAL-A"), "b": version_out("15.0.0-104", "SERIAL-B")}
    )
    acceptors += accs
    _manifest(BASE_PATH, b'<list><phoebe-15-5-1-055 href="asyncos/img/hop.img"/></list>', lab)
    _manifest(HOP_PATH, b"<list><r>AsyncOS 16.0.0 build 123</r><file>asyncos/img/target.img</file></list>", lab)
    _manifest("/asyncos/img/hop.img", b"\0" * 4096, lab)  # this server answers GET only: the ranged fallback
    proc = await cli(lab, tmp_path, "prepare")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "Base release tag: phoebe-15-0-0-104  (2 appliances)" in out and "SERIAL-A, SERIAL-B" in out
    assert f"manifest {lab.update_server}{BASE_PATH}: offers a hop to 15.5.1-055" in out
    assert f"manifest {lab.update_server}{HOP_PATH}: offers the target 16.0.0-123" in out
    assert "ok   15.0.0-104 -> 15.5.1-055 -> 16.0.0-123" in out
    assert f"ok   image 15.5.1-055 {lab.update_server}/asyncos/img/hop.img" in out
    assert re.search(r"image 16\.0\.0-123\s+\S+/asyncos/img/target\.img\s+HTTP 404", out), out
    assert "not ready" in out
    _manifest("/asyncos/img/target.img", b"\0" * 4096, lab)
    proc = await cli(lab, tmp_path, "prepare")
    assert proc.returncode == 0 and "ready: nothing is missing" in proc.stdout, proc.stdout
    check = await cli(lab, tmp_path, "check")  # the pre-flight walks the same way
    assert check.returncode == 0 and "15.0.0-104   15.5.1-055 -> 16.0.0-123" in check.stdout, check.stdout


async def test_update_server_credentials_never_printed(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], acceptors: list[asyncssh.SSHAcceptor]
) -> None:
    lab, accs = await make_lab(
        tmp_path, updates, {"a": version_out("15.0.0-104"), "b": version_out("15.5.1-055")}, "ops:Upd4te-S3cret"
    )
    acceptors += accs
    _manifest(BASE_PATH, b"<m><v>16.0.0-123</v><f>asyncos/img/t.img</f></m>", lab)  # no image, no hop manifest
    for command, code in (("check", 3), ("plan", 0), ("prepare", 1), ("run", 3)):
        proc = await cli(lab, tmp_path, command, *(["--headless"] if command == "run" else []))
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert "Upd4te-S3cret" not in proc.stdout + proc.stderr
        assert "ops:********@127.0.0.1" in proc.stdout + proc.stderr


@pytest.mark.parametrize("ramp", ["1", "1,2", "1,50%", "2,25%"])
async def test_plan_shows_the_batches_run_takes(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], ramp: str
) -> None:
    from segtui.rollout.engine import Rollout

    lab, _ = await make_lab(tmp_path, updates, {f"esa{i}": None for i in range(7)})
    # Uneven groups, listed one after the other: the run interleaves them, and so must the plan.
    text = lab.inventory.read_text()
    for i in range(7):
        text = text.replace(
            f'name = "esa{i}"\nhost = "127.0.0.1"', f'name = "esa{i}"\ngroup = "{"ab"[i >= 4]}"\nhost = "127.0.0.1"'
        )
    lab.inventory.write_text(re.sub(r'\ngroup = "g[01]"', "", text))
    ctx = context(lab, tmp_path)
    assert [a.group for a in ctx.inventory.appliances] == ["a"] * 4 + ["b"] * 3
    options = RolloutOptions(batch=ramp)
    rollout = Rollout(ctx.inventory, ctx.settings, TARGET, ctx.journal, options)
    rollout.begin()
    assert plan_batches(ctx, options) == rollout.journal.batches()


# --- hostile appliances and inventories in check, plan, prepare; stage and the appliance locks ---------------

OSC_TITLE = "\\u001b]0;PWNED\\u0007"  # as written in the TOML file: ESC ] 0 ; PWNED BEL
URL_SECRET = "Upd4te-Secret"


def _hostile_inventory(inventory: Path) -> None:
    # Control sequences in inventory names are refused when the inventory loads (tests/test_bad_input.py); what
    # may stand there, markup-like text, is printed as written.
    text = inventory.read_text()
    text = text.replace('name = "lab"', 'name = "emea [/] [bold]"', 1)
    text = text.replace('group = "g0"', 'group = "g0[/]"\ncluster = "c1[bold]"')
    inventory.write_text(text)


def test_control_sequences_in_inventory_names_are_refused_at_load(tmp_path: Path) -> None:
    from segtui.errors import InputError
    from segtui.inventory import load_inventory

    inv = tmp_path / "fleet.toml"
    (tmp_path / "known_hosts").write_text("")
    inv.write_text(
        f'[fleet]\nname = "emea{OSC_TITLE}"\nupdate_server = "http://u.example.com"\n[defaults]\n'
        'password_env = "SEGTUI_PASSWORD"\n[[appliance]]\nname = "esa1"\nhost = "127.0.0.1"\n'
    )
    with pytest.raises(InputError) as refused:
        load_inventory(inv)
    assert any("fleet.name: must be printable" in line for line in refused.value.problems)


@pytest.mark.parametrize("command", ["check", "plan", "prepare"])
async def test_no_password_and_no_control_sequence_reaches_the_output(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], acceptors: list[asyncssh.SSHAcceptor], command: str
) -> None:
    lab, accs = await make_lab(
        tmp_path,
        updates,
        {
            # Findings 6 and 8: the password echoed in the version line and in the serial, markup around it.
            "echo": version_out(f"[/]{TEST_PASSWORD}[bold]"),
            "serial": version_out("15.0.0-104", serial=f"{TEST_PASSWORD}\x1b]52;c;cHduZWQ=\x07"),
            "plain": version_out("15.0.0-104"),
        },
        credentials=f"user:{URL_SECRET}",
    )
    acceptors += accs
    _manifest(BASE_PATH, f"<m><v>16.0.0-123</v><i>{TEST_PASSWORD}.img</i></m>".encode(), lab)
    _hostile_inventory(lab.inventory)
    proc = await cli(lab, tmp_path, command)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert "echo" in proc.stdout and "plain" in proc.stdout, out
    assert TEST_PASSWORD not in out, out
    assert URL_SECRET not in out, out
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    if command != "check":
        assert "emea [/] [bold]" in proc.stdout, out


def test_appliance_problem_masks_the_fleets_secrets() -> None:
    redactor = Redactor([TEST_PASSWORD])
    exc = ApplianceError("esa01", f"Version: [/]{TEST_PASSWORD}[bold]\x1b]0;x\x07 not understood")
    text = appliance_problem(exc, redactor)
    assert TEST_PASSWORD not in text and "\x1b" not in text and "\n" not in text
    assert TEST_PASSWORD not in appliance_problem(RuntimeError(f"boom {TEST_PASSWORD}"), redactor)
    garbled = appliance_problem(ParseError(f"not an AsyncOS version: '[/]{TEST_PASSWORD}[bold]'", "esa01"), redactor)
    assert garbled.startswith("output not understood") and TEST_PASSWORD not in garbled


# --- stage respects the machine-wide appliance locks (finding 9) ---------------------------------------------------

HOLDER = """
import sys
from segtui.rollout.applock import ApplianceLocks
from segtui.settings import Settings
locks = ApplianceLocks(Settings(), "the other operator's run")
print(locks.acquire("x", sys.argv[1], int(sys.argv[2])), flush=True)
sys.stdin.readline()
"""


async def test_stage_leaves_an_appliance_locked_by_another_segtui_alone(
    tmp_path: Path, updates: tuple[str, dict[str, bytes]], acceptors: list[asyncssh.SSHAcceptor]
) -> None:
    lab, accs = await make_lab(
        tmp_path, updates, {"held": version_out("15.0.0-104"), "free": version_out("16.0.0-123")}
    )
    acceptors += accs
    ctx = context(lab, tmp_path)
    held = ctx.inventory.by_name("held")
    # A second process (another segtui) holds the appliance's lock, as `segtui run` does while upgrading it.
    other = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        held.host,
        str(held.port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert other.stdout is not None
        assert (await asyncio.wait_for(other.stdout.readline(), 30)).strip() == b"None", "the holder took the lock"
        results = {r.name: r for r in await stage_fleet(ctx, concurrency=2)}
        cli_run = await cli(lab, tmp_path, "stage")
    finally:
        assert other.stdin is not None
        other.stdin.close()
        await asyncio.wait_for(other.wait(), 10)
    assert results["held"].status == "locked", results["held"]
    assert "another segtui" in results["held"].note and f"pid {other.pid}" in results["held"].note
    assert "\n" not in results["held"].note
    assert lab.appliances["held"].received == [], "nothing may be sent to an appliance another segtui works on"
    assert results["free"].status == "at-target"
    assert cli_run.returncode == 1 and "Traceback" not in cli_run.stderr, cli_run.stderr
    assert "locked" in cli_run.stdout and f"pid {other.pid}" in cli_run.stdout, cli_run.stdout
    # Once the other segtui is done, stage works on it again.
    results = {r.name: r for r in await stage_fleet(ctx, concurrency=2)}
    assert results["held"].status != "locked"


async def test_stage_holds_the_appliance_lock_for_its_whole_work(
    tmp_path: Path,
    updates: tuple[str, dict[str, bytes]],
    acceptors: list[asyncssh.SSHAcceptor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab, accs = await make_lab(tmp_path, updates, {"a": version_out("16.0.0-123")})
    acceptors += accs
    ctx = context(lab, tmp_path)
    spec = ctx.inventory.by_name("a")
    seen: list[str | None] = []
    real_version = Appliance.version

    async def version(self: Appliance) -> object:
        # A second lock holder (another segtui's run) tries to take the appliance while stage is at work on it.
        probe = ApplianceLocks(ctx.settings, "second holder")
        seen.append(probe.acquire("a", spec.host, spec.port))
        probe.release_all()
        return await real_version(self)

    monkeypatch.setattr(Appliance, "version", version)
    results = await stage_fleet(ctx, concurrency=1)
    assert results[0].status == "at-target"
    assert len(seen) == 1 and seen[0] is not None and "another segtui" in seen[0], seen
    after = ApplianceLocks(ctx.settings, "after")
    assert after.acquire("a", spec.host, spec.port) is None, "stage gives the lock back when done"
    after.release_all()
