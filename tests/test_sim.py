"""The simulator over real SSH and HTTP: dialogues, commits, mail, reboots, clusters, faults, OpenSSH."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from segtui.sim.fleet import FaultSpecError, SimFleet, parse_faults
from tests.conftest import TEST_PASSWORD, start_fleet
from tests.tmux import TmuxSession


def connect(fleet: SimFleet, name: str) -> Any:
    """A plain asyncssh login, awaitable or `async with` (the driver is not used here)."""
    return asyncssh.connect(
        "127.0.0.1",
        fleet.nodes[name].port,
        username="admin",
        password=TEST_PASSWORD,
        known_hosts=str(fleet.known_hosts_path),
        config=None,
        agent_path=None,
        client_keys=None,
    )


class RawCLI:
    """A minimal client that types like a person: no driver code, so the simulator is tested on its own."""

    def __init__(self, conn: asyncssh.SSHClientConnection, proc: asyncssh.SSHClientProcess[str]) -> None:
        self.conn = conn
        self.proc = proc
        self.buf = ""

    @classmethod
    async def open(cls, fleet: SimFleet, name: str) -> RawCLI:
        conn = await connect(fleet, name)
        proc = await conn.create_process(term_type="vt100", term_size=(200, 50))
        cli = cls(conn, proc)
        await cli.until("> ")
        return cli

    async def until(self, marker: str, timeout: float = 10) -> str:
        end = time.monotonic() + timeout
        while marker not in self.buf:
            try:
                chunk = await asyncio.wait_for(self.proc.stdout.read(4096), max(0.01, end - time.monotonic()))
            except TimeoutError:
                raise AssertionError(f"{marker!r} never came; got {self.buf[-600:]!r}") from None
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        text, _, self.buf = self.buf.partition(marker)
        return text + marker

    async def say(self, line: str, marker: str = "> ", timeout: float = 10) -> str:
        self.proc.stdin.write(line + "\r")
        return await self.until(marker, timeout)

    def close(self) -> None:
        self.conn.close()


async def test_fleet_layout_inventory_and_http(fleet6: SimFleet) -> None:
    text = fleet6.inventory_path.read_text()
    assert 'environment = "lab"' in text and 'password_env = "SEGTUI_PASSWORD"' in text
    assert "esa01" in text and "esa06" in text and 'group = "dc2"' in text and 'cluster = "mailcluster"' in text
    versions = {n.appliance.version for n in fleet6.nodes.values()}
    assert len(versions) >= 2
    assert fleet6.update_server is not None
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{fleet6.update_server.url}/asyncos/phoebe-15-0-0-104.xml")
        assert r.status_code == 200 and b'version="16.0.0-123"' in r.content
        missing = await http.get(f"{fleet6.update_server.url}/asyncos/phoebe-9-9-9-999.xml")
        assert missing.status_code == 404


async def test_walk_dialogues_by_hand(fleet6: SimFleet) -> None:
    cli = await RawCLI.open(fleet6, "esa02")
    node = fleet6.nodes["esa02"]
    try:
        out = await cli.say("version")
        assert "Version: 15.0.0-104" in out and "Serial #:" in out
        out = await cli.say("frobnicate")
        assert "Unknown command or missing feature key: frobnicate" in out
        # status detail pages whatever the terminal size.
        out = await cli.say("status detail", "-Press Any Key For More-")
        cli.proc.stdin.write(" ")
        out = await cli.until("> ")
        assert "Messages In Work Queue" in out
        # updateconfig SETUP takes effect only at commit.
        await cli.say("updateconfig", "[]> ")
        chunk = await cli.say("SETUP", "]> ")
        previous = ""
        while True:
            if "AsyncOS upgrades, please select where the system will download updates from (images)" in chunk:
                cli.proc.stdin.write("2\r")
            elif "hostname and port" in chunk and "(images)" in previous:
                cli.proc.stdin.write("updates.lab:80\r")
            elif "AsyncOS upgrades, please select where the system will download the list" in chunk:
                cli.proc.stdin.write("2\r")
            elif "full HTTP URL" in chunk:
                cli.proc.stdin.write("http://updates.lab/asyncos/phoebe-15-0-0-104.xml\r")
            elif "Choose the operation" in chunk:
                cli.proc.stdin.write("\r")
                await cli.until("> ")
                break
            else:
                cli.proc.stdin.write("\r")  # every other service keeps its setting
            previous = chunk
            chunk = await cli.until("]> ")
        assert node.appliance.committed.feature_keys == "keys.lab.example.com:80"
        assert node.appliance.committed.listing == "cisco"
        assert node.appliance.pending is not None
        await cli.say("commit", "[]> ")
        await cli.say("maintenance", "[Y]> ")
        out = await cli.say("Y")
        assert "Changes committed" in out
        assert node.appliance.committed.listing.endswith("phoebe-15-0-0-104.xml")
        assert node.appliance.committed.images == "updates.lab:80"
        out = await cli.say("commit")
        assert "There is no data to commit." in out
        # Suspend: listeners first (when there are several), then the delay.
        out = await cli.say("suspendlistener", "]> ")
        if "Choose the listener(s)" in out:
            out = await cli.say("1", "]> ")
        assert "seconds to wait before abruptly closing" in out
        out = await cli.say("1")
        assert "Receiving suspended for" in out and node.appliance.suspended
        for _ in range(50):
            out = await cli.say("workqueue status")
            if "Messages: 0" in out:
                break
            await asyncio.sleep(0.05)
        assert "Messages: 0" in out
        # saveconfig writes a file SCP can fetch.
        await cli.say("saveconfig", "[1]> ")
        out = await cli.say("2")
        assert 'to the location "/configuration/' in out
        remote = out.split('location "', 1)[1].split('"', 1)[0]
        local = Path(fleet6.workdir) / "fetched.xml"
        await asyncssh.scp((cli.conn, remote), str(local))
        assert 'mode="encrypted"' in local.read_text()
    finally:
        cli.close()


async def test_exec_readonly_and_refuse_changes(fleet6: SimFleet) -> None:
    node = fleet6.nodes["esa01"]
    async with connect(fleet6, "esa01") as conn:
        r = await conn.run("workqueue status")
        assert "Messages:" in str(r.stdout)
        r = await conn.run("suspendlistener")
        assert r.exit_status != 0 and not node.appliance.suspended


async def test_mail_drains_only_when_suspended(fleet6: SimFleet) -> None:
    a = fleet6.nodes["esa01"].appliance
    before = a.tick_mail(fleet6.time_scale, fleet6.durations.drain_rate)
    assert before > 0
    await asyncio.sleep(0.2)
    assert a.tick_mail(fleet6.time_scale, fleet6.durations.drain_rate) > 0
    a.suspended = True
    await asyncio.sleep(1.0)
    assert a.tick_mail(fleet6.time_scale, fleet6.durations.drain_rate) == 0


async def test_upgrade_reboot_refuses_port_then_new_version(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, clusters=False)
    try:
        node = fleet.nodes["esa01"]
        url = f"{fleet.update_server.url}/asyncos/phoebe-15-0-0-104.xml"  # type: ignore[union-attr]
        # Not pointed at a local server: nothing to upgrade to.
        cli = await RawCLI.open(fleet, "esa01")
        await cli.say("upgrade", "[Y]> ", timeout=20)
        await cli.say("Y", "[]> ")
        out = await cli.say("DOWNLOADINSTALL")
        assert "No available upgrades" in out
        node.appliance.committed.listing = url
        node.appliance.committed.images = url.split("/")[2]
        await cli.say("upgrade", "[Y]> ", timeout=20)
        await cli.say("Y", "[]> ")
        out = await cli.say("DOWNLOADINSTALL", "]> ")
        assert "Upgrades available." in out and "16.0.0 build 123 upgrade For Email" in out
        out = await cli.say("2", "[Y]> ")
        out = await cli.say("Y", "[1]> ")
        assert "Choose the passphrase option" in out
        await cli.say("2", "[N]> ")
        out = await cli.say("N", "[Y]> ")
        assert "Do you wish to proceed with the upgrade?" in out
        out = await cli.say("Y", "[30]> ", timeout=30)
        assert "Installing application..." in out and "% complete)" in out
        cli.proc.stdin.write("1\r")
        out = await cli.until("Rebooting the system...")
        for _ in range(100):
            if node.appliance.state == "rebooting":
                break
            await asyncio.sleep(0.02)
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", node.port)
        for _ in range(300):
            if node.appliance.state == "up":
                break
            await asyncio.sleep(0.02)
        cli2 = await RawCLI.open(fleet, "esa01")
        out = await cli2.say("version")
        assert "Version: 16.0.0-123" in out
        cli2.close()
    finally:
        await fleet.stop()


async def test_cluster_prompts_disconnect_footgun_and_reconnect(fleet6: SimFleet) -> None:
    cli = await RawCLI.open(fleet6, "esa05")
    try:
        out = await cli.say("workqueue status", "[Y]> ")
        assert 'switch to "Machine esa05.lab.example.com" mode' in out
        out = await cli.say("Y")
        assert out.rstrip().endswith("(Machine esa05.lab.example.com)>")
        await cli.say("clusterconfig", "[]> ")
        out = await cli.say("DISCONNECT", "[]> ")
        assert "esa05.lab.example.com (group Main_Group)" in out
        number = out.split("esa05.lab.example.com")[0].rsplit("\n", 1)[1].strip().rstrip(".")
        await cli.say(number, "[Y]> ")
        out = await cli.say("Y")
        assert "is now disconnected from the cluster" in out
        esa05, esa06 = fleet6.nodes["esa05"].appliance, fleet6.nodes["esa06"].appliance
        assert not esa05.cluster_connected and esa06.cluster_connected
        # Versions differ: reconnect refused.
        esa05.version = (16, 0, 0, 123)
        await cli.say("clusterconfig", "[]> ")
        await cli.say("RECONNECT", "[]> ")
        await cli.say("1", "[Y]> ")
        out = await cli.say("Y")
        assert "different" in out and "version" in out and not esa05.cluster_connected
        esa05.version = esa06.version
        await cli.say("clusterconfig", "[]> ")
        await cli.say("RECONNECT", "[]> ")
        await cli.say("1", "[Y]> ")
        out = await cli.say("Y")
        assert "reconnected" in out and esa05.cluster_connected
    finally:
        cli.close()


async def test_fault_auth_and_flaky_and_hostkey(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 3, faults={"esa01": {"auth-fail"}, "esa02": {"flaky"}}, clusters=False)
    try:
        with pytest.raises(asyncssh.PermissionDenied):
            await RawCLI.open(fleet, "esa01")
        failures = 0
        for _ in range(5):
            try:
                cli = await RawCLI.open(fleet, "esa02")
                cli.close()
                break
            except (asyncssh.Error, OSError, EOFError):
                failures += 1
        assert failures == fleet.nodes["esa02"].flaky_refusals
    finally:
        await fleet.stop()


def test_fault_spec_parsing() -> None:
    assert parse_faults("esa03=reboot-hang,esa05=drain-stuck") == {
        "esa03": {"reboot-hang"},
        "esa05": {"drain-stuck"},
    }
    assert parse_faults("esa01=drop@saveconfig#2") == {"esa01": {"drop@saveconfig#2"}}
    for bad in ("esa01", "esa01=explode", "=reboot-hang", "esa01=drop@x#y"):
        with pytest.raises(FaultSpecError):
            parse_faults(bad)


def test_openssh_client_walks_the_cli(tmp_path: Path) -> None:
    """A real OpenSSH client, typed into by tmux like a person would."""
    sim = subprocess.Popen(
        ["segtui", "sim", "--appliances", "2", "--time-scale", "0.002", "--workdir", str(tmp_path / "sim")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    term: TmuxSession | None = None
    try:
        port = None
        assert sim.stdout is not None
        for line in sim.stdout:
            if line.strip().startswith("esa01"):
                port = int(line.split("127.0.0.1:")[1].split()[0])
            if "Ctrl+C" in line:
                break
        assert port
        askpass = tmp_path / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho '{TEST_PASSWORD}'\n")
        askpass.chmod(0o700)
        cmd = (
            f"SSH_ASKPASS={askpass} SSH_ASKPASS_REQUIRE=force ssh -tt -F /dev/null -p {port} "
            f"-o UserKnownHostsFile={tmp_path / 'sim' / 'known_hosts'} -o StrictHostKeyChecking=yes "
            f"admin@127.0.0.1"
        )
        term = TmuxSession("segtui-ssh", cmd, 150, 50)
        term.wait_for("esa01.lab.example.com>")
        term.keys("version", "Enter")
        term.wait_for("Version: 15.0.0-104")
        term.keys("suspendlistener", "Enter")
        s = term.wait_for("]>")
        if "Choose the listener(s)" in s:
            term.keys("Enter")
            term.wait_for("abruptly closing")
        term.keys("Enter")
        term.wait_for("Receiving suspended for")
        term.keys("status detail", "Enter")
        term.wait_for("-Press Any Key For More-")
        term.keys("Space")
        term.wait_for("Kilobytes Free")
        term.keys("resumelistener", "Enter")
        if "Choose the listener(s)" in s:  # several listeners: the same list is asked again
            term.wait_for("you wish to resume")
            term.keys("Enter")
        term.wait_for("Receiving resumed for")
        term.keys("exit", "Enter")
    finally:
        if term is not None:
            term.kill()
        sim.terminate()
        sim.wait(10)
