"""The simulator over real SSH and HTTP: dialogues, commits, mail, reboots, clusters, faults, OpenSSH."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import asyncssh
import httpx
import pytest

from segtui.inventory import load_inventory
from segtui.sim.fleet import PLAIN, FaultSpecError, SimFleet, parse_faults
from segtui.sim.model import RELEASES, vdotted, vtag
from segtui.sim.updateserver import SHAPES, read_manifest
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


PAGER = "-Press Any Key For More-"
ERASES = ("\r\x1b[K", "\r" + " " * len(PAGER) + "\r")


async def eventually(condition: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    """Wait until the condition holds (checked on every turn of the loop), or fail naming it."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"{what} never held within {timeout}s")
        await asyncio.sleep(0.01)


class RawCLI:
    """A minimal client that types like a person: no driver code, so the simulator is tested on its own.

    It answers every pager stop with a space, as a person would, and remembers the lines each stop
    interrupted (`stops`: the lines since the last input when the pager came).
    """

    def __init__(self, conn: asyncssh.SSHClientConnection, proc: asyncssh.SSHClientProcess[str]) -> None:
        self.conn = conn
        self.proc = proc
        self.buf = ""
        self.raw = ""  # everything received, control sequences and all
        self.since_input = ""
        self.after_input = False
        self.stops: list[list[str]] = []
        self.banner = ""

    @classmethod
    async def open(cls, fleet: SimFleet, name: str) -> RawCLI:
        conn = await connect(fleet, name)
        proc = await conn.create_process(term_type="vt100", term_size=(200, 50))
        cli = cls(conn, proc)
        cli.banner = await cli.until("> ")
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
            self.raw += chunk
            self.buf += chunk
            self.since_input += chunk
            if PAGER in self.buf:
                before, _, after = self.buf.partition(PAGER)
                stopped = self.since_input.partition(PAGER)[0]
                for erase in ERASES:
                    stopped = stopped.replace(erase, "")
                lines = stopped.replace("\r\n", "\n").split("\n")[:-1]
                self.stops.append(lines[1:] if self.after_input else lines)  # without the echo of the input
                self.buf = before + after
                self.since_input = ""
                self.after_input = False
                self.proc.stdin.write(" ")
        text, _, self.buf = self.buf.partition(marker)
        for erase in ERASES:
            text = text.replace(erase, "")
        return text + marker

    async def say(self, line: str, marker: str = "> ", timeout: float = 10) -> str:
        self.since_input = ""
        self.after_input = True
        self.proc.stdin.write(line + "\r")
        return await self.until(marker, timeout)

    def close(self) -> None:
        self.conn.close()


def _n(text: str) -> int:
    return int(text.replace(",", ""))


def point_at_update_server(fleet: SimFleet, name: str) -> None:
    """What `updateconfig` SETUP + commit would do (walked by hand in test_walk_dialogues_by_hand)."""
    a = fleet.nodes[name].appliance
    assert fleet.update_server is not None
    a.committed = replace(
        a.committed,
        listing=f"{fleet.update_server.url}/asyncos/{vtag(a.version)}.xml",
        images=f"127.0.0.1:{fleet.update_server.port}",
    )


async def upgrade_by_hand(cli: RawCLI, target: str = "16.0.0 build 123") -> str:
    """Answer `upgrade`'s questions by their words, as a person reading the screen would."""
    chunk = await cli.say("upgrade", "]> ", timeout=20)
    said = chunk
    while True:
        if "Are you sure you want to proceed with upgrade" in chunk:
            answer = "Y"
        elif "Choose the operation" in chunk:
            answer = "DOWNLOADINSTALL"
        elif "Upgrades available." in chunk:
            item = next(line for line in chunk.splitlines() if target in line)
            answer = item.split(".", 1)[0].strip()
        elif "passphrase option" in chunk or "password option" in chunk:
            answer = "2"
        elif "forcibly closing connections" in chunk:
            return said + await cli.say("1", "Rebooting the system...", timeout=30)
        elif "notification email" in chunk or "email the current configuration" in chunk:
            answer = "N"
        else:
            answer = ""  # the appliance's default
        chunk = await cli.say(answer, "]> ", timeout=30)
        said += chunk


async def test_fleet_layout_inventory_and_http(fleet6: SimFleet) -> None:
    text = fleet6.inventory_path.read_text()
    assert 'environment = "lab"' in text and 'password_env = "SEGTUI_PASSWORD"' in text
    assert "esa01" in text and "esa06" in text and 'group = "dc2"' in text and 'cluster = "mailcluster"' in text
    versions = {n.appliance.version for n in fleet6.nodes.values()}
    assert len(versions) >= 2
    assert fleet6.update_server is not None
    async with httpx.AsyncClient() as http:
        missing = await http.get(f"{fleet6.update_server.url}/asyncos/phoebe-9-9-9-999.xml")
        assert missing.status_code == 404


async def test_manifests_come_in_shapes_the_driver_was_not_written_for(fleet6: SimFleet) -> None:
    assert fleet6.update_server is not None
    shapes = set(fleet6.manifest_shapes.values())
    assert shapes == set(SHAPES), "one fleet serves every shape (one per base release)"
    seen_forms = set()
    async with httpx.AsyncClient() as http:
        for base, rel in RELEASES.items():
            r = await http.get(f"{fleet6.update_server.url}/asyncos/{vtag(base)}.xml")
            assert r.status_code == 200
            ElementTree.fromstring(r.content)  # well-formed
            body = r.text
            # Not the shape the driver's reader was first written against.
            assert "<manifest" not in body and "<release version=" not in body
            read = read_manifest(r.content)
            assert read is not None
            got_base, offers = read
            assert got_base == base
            assert [o.version for o in offers] == list(rel.offers)
            for o in offers:
                # Each image reference (a path or a full URL) is served.
                url = o.image if "://" in o.image else f"{fleet6.update_server.url}/{o.image.lstrip('/')}"
                assert (await http.head(url)).status_code == 200
            for v in (base, *rel.offers):
                for form in (vdotted(v), vtag(v), vtag(v).removeprefix("phoebe-")):
                    if re.search(rf"[>\"]{re.escape(form)}[<\"]", body):
                        seen_forms.add(form.count("-"))
            if fleet6.manifest_shapes[base] == "namespaced":
                assert ElementTree.fromstring(r.content).tag.startswith("{")
    assert seen_forms == {1, 3, 4}, "dotted, dashed and build-tag versions all appear"


def test_manifest_shape_can_be_pinned_and_is_checked(tmp_path: Path) -> None:
    fleet = SimFleet(2, workdir=tmp_path, manifest_shapes="nested")
    assert set(fleet.manifest_shapes.values()) == {"nested"}
    with pytest.raises(ValueError):
        SimFleet(2, workdir=tmp_path, manifest_shapes="manifest")
    assert len({tuple(sorted(SimFleet(2, workdir=tmp_path, seed=s).manifest_shapes.items())) for s in range(4)}) == 4
    for seed in range(6):
        # The bases most fleets run spell versions differently, whatever the seed.
        forms = SimFleet(2, workdir=tmp_path, seed=seed).version_forms
        assert len({forms[(14, 2, 1, 15)], forms[(15, 0, 0, 104)], forms[(15, 5, 1, 55)]}) == 3


async def test_plain_fleet_for_benchmarks(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 4, clusters=False, plain_printouts=True, hostnames="inventory")
    try:
        assert {n.appliance.printing for n in fleet.nodes.values()} == {PLAIN}
        assert fleet.hostnames["esa01"] == "esa01.lab.example.com"
        cli = await RawCLI.open(fleet, "esa01")
        try:
            await cli.say("version")
            await cli.say("updateconfig", "[]> ")
            await cli.say("")
            assert not cli.stops
            await cli.say("status detail")
            assert len(cli.stops) == 1
        finally:
            cli.close()
    finally:
        await fleet.stop()


async def test_hostnames_are_the_appliances_own_and_serials_unique(fleet6: SimFleet) -> None:
    hostnames = fleet6.hostnames
    assert len(set(hostnames.values())) == len(hostnames)
    assert len(set(fleet6.serials.values())) == len(hostnames)
    for name, host in hostnames.items():
        assert not host.startswith(name) and name not in host.split(".")[0], (name, host)
        assert "." in host
    summary = "\n".join(fleet6.summary())
    for name, host in hostnames.items():
        assert re.search(rf"^  {name}  127\.0\.0\.1:\d+ .* hostname={re.escape(host)} serial=", summary, re.M)
    cli = await RawCLI.open(fleet6, "esa01")
    try:
        assert cli.banner.rstrip().endswith(f"{hostnames['esa01']}>")
        out = await cli.say("saveconfig", "[1]> ")
        out = await cli.say("2")
        assert f'File written on machine "{hostnames["esa01"]}"' in out
        out = await cli.say("version")
        assert f"Serial #: {fleet6.serials['esa01']}" in out
    finally:
        cli.close()
    # The same seed gives the same names; "inventory" style is available for those who want it.
    again = SimFleet(6, workdir=fleet6.workdir / "again", seed=fleet6.seed)
    assert again.hostname_style == "unrelated"
    assert SimFleet(2, workdir=fleet6.workdir / "x", hostnames="inventory").hostname_style == "inventory"


async def test_walk_dialogues_by_hand(fleet6: SimFleet) -> None:
    node = fleet6.nodes["esa02"]
    node.appliance.printing = replace(node.appliance.printing, extra_setup_question=True)
    cli = await RawCLI.open(fleet6, "esa02")
    extra_seen = False
    try:
        out = await cli.say("version")
        assert "Version: 15.0.0-104" in out and "Serial #:" in out
        out = await cli.say("frobnicate")
        assert "Unknown command or missing feature key: frobnicate" in out
        out = await cli.say("status detail")
        assert "Messages In Work Queue" in out and cli.stops, "status detail pages whatever the terminal size"
        # updateconfig SETUP takes effect only at commit.
        await cli.say("updateconfig", "[]> ")
        chunk = await cli.say("SETUP", "]> ")
        previous = ""
        while True:
            if "AsyncOS upgrades, please select where the system will download updates from (images)" in chunk:
                answer = "2"
            elif "hostname and port" in chunk and "(images)" in previous:
                answer = "updates.lab:80"
            elif "AsyncOS upgrades, please select where the system will download the list" in chunk:
                answer = "2"
            elif "full HTTP URL" in chunk:
                answer = "http://updates.lab/asyncos/phoebe-15-0-0-104.xml"
            elif "Choose the operation" in chunk:
                await cli.say("")
                break
            else:
                extra_seen |= "For Cisco Talos Intelligence Services, please select" in chunk
                answer = ""  # every other service keeps its setting
            previous = chunk
            chunk = await cli.say(answer, "]> ")
        assert extra_seen, "an extra question nobody told us about, whose default is right"
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
            n = len(node.appliance.listeners) + 1
            out = await cli.say(str(n + 1), "]> ")  # out of range: said so, and asked again
            assert f"You must enter a number from 1 to {n}." in out and out.endswith("[1]> ")
            out = await cli.say("1", "]> ")
        assert "seconds to wait before abruptly closing" in out
        out = await cli.say("soon", "]> ")
        assert "You must enter a number." in out and out.endswith("[30]> ") and not node.appliance.suspended
        out = await cli.say("1")
        assert "Receiving suspended for" in out and node.appliance.suspended
        drained: list[str] = []

        async def queue_empty() -> bool:
            drained.append(await cli.say("workqueue status"))
            return bool(re.search(r"Messages: 0\r?\n", drained[-1]))

        end = time.monotonic() + 20
        while not await queue_empty():
            assert time.monotonic() < end, drained[-1]
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


async def test_updateconfig_printouts_vary_as_real_ones_do(fleet6: SimFleet) -> None:
    labels, columns = set(), set()
    trailing = False
    for name, node in fleet6.nodes.items():
        p = node.appliance.printing
        cli = await RawCLI.open(fleet6, name)
        try:
            if node.appliance.cluster is not None:
                await cli.say("updateconfig", "[Y]> ")
                out = await cli.say("Y", "[]> ")
            else:
                out = await cli.say("updateconfig", "[]> ")
            await cli.say("")
        finally:
            cli.close()
        rows = [line for line in out.replace("\r\n", "\n").split("\n") if "asyncos upgrades" in line.lower()]
        assert len(rows) == 2, out  # images, then the list
        table = out.replace("\r", "").split("Service (images):")[1].split("\n\n")[0]
        widest = max(len(re.split(r"\s{2,}", line)[0]) for line in table.splitlines() if not line.startswith("-"))
        for row in rows:
            m = re.match(r"^(.*?upgrades)(\s+)(\S+)", row, re.I)
            assert m, row
            assert m[1] == p.upgrades_label
            assert len(m[1]) + len(m[2]) == widest + p.label_gap  # the value column: widest label + a gap
            labels.add(m[1])
            columns.add(len(m[1]) + len(m[2]))
        trailing |= any(line.endswith(" ") for line in out.replace("\r", "").splitlines() if "Update URL" in line)
    assert any(label.startswith("Cisco ") for label in labels) and any(label.startswith("AsyncOS") for label in labels)
    assert {label.split()[-1] for label in labels} == {"upgrades", "Upgrades"}
    assert len(columns) >= 2 and trailing


async def test_pager_stops_anywhere_also_inside_the_upgrade_list(fleet6: SimFleet) -> None:
    node = fleet6.nodes["esa02"]
    point_at_update_server(fleet6, "esa02")
    offers = await node.fetch_offers() or []
    assert len(offers) == 4
    total = 2 + len(offers)  # "", "Upgrades available.", the items; then the question "[4]> "
    for page in range(1, total + 1):
        node.appliance.printing = replace(node.appliance.printing, page_lines=page, erase_csi=page % 2 == 0)
        cli = await RawCLI.open(fleet6, "esa02")
        try:
            await cli.say("upgrade", "[Y]> ", timeout=20)
            await cli.say("Y", "[]> ")
            before = len(cli.stops)
            out = await cli.say("DOWNLOADINSTALL", "]> ")
            assert "Upgrades available." in out and "16.0.0 build 123 upgrade For Email" in out
            assert out.endswith(f"[{len(offers)}]> "), "the default is the newest, whatever was planned"
            stops = cli.stops[before:]
            assert [len(s) for s in stops] == [page] * ((total - 1) // page), (page, stops)
            inside = any(re.match(r"\d\. AsyncOS", s[-1]) for s in stops)
            assert inside == (page < total), "a stop inside the list, before the question"
            assert ("\x1b[K" in cli.raw) == (page % 2 == 0 and bool(stops)), "ESC [ K erases the pager line on some"
            cli.proc.stdin.write("\x03")  # ctrl+c: not this time
            await cli.until("> ")
        finally:
            cli.close()


async def test_listenerconfig_lists_and_leaves_without_changes(fleet6: SimFleet) -> None:
    a = fleet6.nodes["esa03"].appliance
    a.listeners = ["IncomingMail", "OutgoingMail", "RelayDMZ", "BulkMail"]
    a.printing = replace(a.printing, page_lines=3)
    cli = await RawCLI.open(fleet6, "esa03")
    try:
        out = await cli.say("listenerconfig", "[]> ")
        for i, name in enumerate(a.listeners, start=1):
            assert re.search(rf"^{i}\. {name} \(on ", out, re.M), out
        assert "Choose the operation you want to perform:" in out and "- NEW - " in out
        assert any(s and re.match(r"\d\. ", s[-1]) for s in cli.stops), "the pager stopped inside the list"
        out = await cli.say("")
        assert out.rstrip().endswith(f"{a.hostname}>") and not a.suspended
    finally:
        cli.close()


async def test_status_detail_counters_and_gauges(fleet6: SimFleet) -> None:
    cli = await RawCLI.open(fleet6, "esa01")
    try:
        out = await cli.say("status detail")
        assert re.search(r"^System status:\s+Online\s*$", out, re.M)
        counters = out.split("Counters:", 1)[1]
        assert re.search(r"Counters:\s+Reset\s+Uptime\s+Lifetime", out)
        rec = re.search(r"Messages Received\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)", counters)
        done = re.search(r"Completed Recipients\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)", counters)
        assert rec and done and "," in rec[3]
        gauge = re.search(r"^\s+Messages In Work Queue\s+([\d,]+)\s*$", out, re.M)
        assert gauge and _n(gauge[1]) > 0
        first_received, first_done = _n(rec[2]), _n(done[2])
        a = fleet6.nodes["esa01"].appliance
        await eventually(
            lambda: _tick(fleet6, "esa01") >= 0 and a.received - a.received_at_boot > first_received + 5000,
            what="mail arriving",
        )
        out = await cli.say("status detail")
        rec2 = re.search(r"Messages Received\s+([\d,]+)\s+([\d,]+)", out)
        done2 = re.search(r"Completed Recipients\s+([\d,]+)\s+([\d,]+)", out)
        assert rec2 and done2
        assert _n(rec2[2]) > first_received and _n(done2[2]) > first_done, "the counters move with the mail"
    finally:
        cli.close()


def _tick(fleet: SimFleet, name: str) -> int:
    return fleet.nodes[name].appliance.tick_mail(fleet.time_scale, fleet.durations.drain_rate)


async def test_traffic_moves_to_peers_while_one_is_out(fleet6: SimFleet) -> None:
    group = fleet6.nodes["esa01"].appliance.group
    assert group is not None and [m.name for m in group.members] == ["esa01", "esa03", "esa05"]
    out_name = max(("esa01", "esa03"), key=lambda n: fleet6.nodes[n].appliance.base_rate)
    peer = "esa03" if out_name == "esa01" else "esa01"
    before = group.shares()
    cli = await RawCLI.open(fleet6, out_name)
    try:
        out = await cli.say("suspendlistener", "]> ")
        if "Choose the listener(s)" in out:
            await cli.say("1", "]> ")
        await cli.say("1")
        after = group.shares()
        assert after[out_name] == 0 and after[peer] > before[peer] * 1.2
        assert sum(after.values()) == pytest.approx(sum(before.values()))  # the group's mail still arrives
        mid = (before[peer] + after[peer]) / 2 * 30
        await eventually(lambda: _tick(fleet6, peer) > mid, what="the peer's queue rising")
        await eventually(lambda: _tick(fleet6, out_name) == 0, what="the suspended appliance draining")
        a = fleet6.nodes[out_name].appliance
        received = a.received
        peer_a = fleet6.nodes[peer].appliance
        mark = peer_a.received
        await eventually(lambda: _tick(fleet6, peer) >= 0 and peer_a.received > mark + 10_000, what="time passing")
        assert a.received == received, "no mail arrives while receiving is suspended"
        peer_cli = await RawCLI.open(fleet6, peer)
        try:
            out = await peer_cli.say("status detail")
        finally:
            peer_cli.close()
        rate = re.search(r"Rates.*?Messages Received\s+([\d,]+)", out, re.S)
        assert rate and _n(rate[1]) == int(after[peer] * 3600)
        out = await cli.say("resumelistener", "]> " if len(a.listeners) > 1 else "> ")
        if len(a.listeners) > 1:
            await cli.say("1")
        assert group.shares() == pytest.approx(before)
        await eventually(lambda: _tick(fleet6, peer) < mid, what="the peer's queue coming back down")
    finally:
        cli.close()


async def test_bake_fail_and_peer_overload(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, faults={"esa01": {"bake-fail"}, "esa02": {"peer-overload"}}, clusters=False)
    try:
        over = fleet.nodes["esa02"].appliance
        over.printing = replace(over.printing, thousands=True)
        baker = fleet.nodes["esa01"].appliance
        cli2 = await RawCLI.open(fleet, "esa02")
        cli1 = await RawCLI.open(fleet, "esa01")
        try:
            out = await cli2.say("workqueue status")
            depth = re.search(r"Messages: ([\d,]+)", out)
            assert depth and "," in depth[1] and _n(depth[1]) > 12_000
            for cli in (cli2, cli1):
                out = await cli.say("suspendlistener", "]> ")
                if "Choose the listener(s)" in out:
                    await cli.say("1", "]> ")
                await cli.say("1")
            # Before its upgrade the bake-fail appliance drains like any other; the overloaded one never does.
            await eventually(lambda: _tick(fleet, "esa01") == 0, what="esa01 draining")
            out = await cli2.say("workqueue status")
            depth = re.search(r"Messages: ([\d,]+)", out)
            assert depth and _n(depth[1]) > 12_000
            out = await cli2.say("status detail")
            gauge = re.search(r"Messages In Work Queue\s+([\d,]+)", out)
            assert gauge and _n(gauge[1]) > 12_000
            out = await cli1.say("resumelistener", "]> " if len(baker.listeners) > 1 else "> ")
            if len(baker.listeners) > 1:
                await cli1.say("1")
            point_at_update_server(fleet, "esa01")
            await upgrade_by_hand(cli1)
        finally:
            cli1.close()
            cli2.close()
        await eventually(lambda: baker.reboots == 1 and baker.state == "up", what="esa01 back after the upgrade")
        assert baker.version == (16, 0, 0, 123) and not baker.suspended
        await eventually(
            lambda: _tick(fleet, "esa01") >= 0 and baker.received - baker.received_at_boot > 2_000,
            what="mail arriving at esa01",
        )
        cli1 = await RawCLI.open(fleet, "esa01")
        try:
            out = await cli1.say("status detail")
        finally:
            cli1.close()
        rec = re.search(r"Messages Received\s+([\d,]+)\s+([\d,]+)", out)
        done = re.search(r"Completed Recipients\s+([\d,]+)\s+([\d,]+)", out)
        gauge = re.search(r"Messages In Work Queue\s+([\d,]+)", out)
        assert rec and done and gauge
        assert _n(rec[2]) > 2_000 and _n(done[2]) == 0, "accepts mail, delivers none"
        assert _n(gauge[1]) >= _n(rec[2]) - 1
        assert re.search(r"^System status:\s+Online", out, re.M)
    finally:
        await fleet.stop()


async def test_queue_surge_drains_at_the_appliances_own_rate(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, faults={"esa01": {"queue-surge"}}, clusters=False)
    try:
        a = fleet.nodes["esa01"].appliance
        async with connect(fleet, "esa01") as conn:
            r = await conn.run("workqueue status")
        depth = re.search(r"Messages: ([\d,]+)", str(r.stdout))
        assert depth and _n(depth[1]) > 12_000
        # In service all along, it works the surge off: faster than mail arrives, no faster than it can deliver.
        await eventually(lambda: _tick(fleet, "esa01") < 3 * a.base_rate * 30, what="the surge worked off")
        assert a.in_service and a.delivered - a.delivered_at_boot > 10_000
    finally:
        await fleet.stop()


async def test_exec_readonly_and_refuse_changes(fleet6: SimFleet) -> None:
    node = fleet6.nodes["esa01"]
    async with connect(fleet6, "esa01") as conn:
        r = await conn.run("workqueue status")
        assert "Messages:" in str(r.stdout)
        r = await conn.run("status detail")  # no pager without a person to press a key
        assert "Kilobytes Free" in str(r.stdout) and PAGER not in str(r.stdout)
        r = await conn.run("suspendlistener")
        assert r.exit_status != 0 and not node.appliance.suspended


async def test_mail_drains_only_when_suspended(fleet6: SimFleet) -> None:
    a = fleet6.nodes["esa01"].appliance
    assert _tick(fleet6, "esa01") > 0
    start = a.received
    await eventually(lambda: _tick(fleet6, "esa01") > 0 and a.received > start + 1000, what="mail flowing")
    a.tick_mail(fleet6.time_scale, fleet6.durations.drain_rate)
    a.suspended = True
    await eventually(lambda: _tick(fleet6, "esa01") == 0, what="the queue draining to zero")


async def test_upgrade_reboot_refuses_port_then_new_version(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, clusters=False)
    try:
        node = fleet.nodes["esa01"]
        serial, hostname = node.appliance.serial, node.appliance.hostname
        node.appliance.printing = replace(node.appliance.printing, extra_upgrade_question=True, banner_colour=True)
        # Not pointed at a local server: nothing to upgrade to.
        cli = await RawCLI.open(fleet, "esa01")
        await cli.say("upgrade", "[Y]> ", timeout=20)
        await cli.say("Y", "[]> ")
        out = await cli.say("DOWNLOADINSTALL")
        assert "No available upgrades" in out
        point_at_update_server(fleet, "esa01")
        out = await upgrade_by_hand(cli)
        assert "Upgrades available." in out and "16.0.0 build 123 upgrade For Email" in out
        assert "Choose the passphrase option" in out and "Do you wish to proceed with the upgrade?" in out
        assert "Do you want to send a notification email to the administrators about this upgrade? [N]> " in out
        assert cli.banner.startswith("\x1b[1;36mAsyncOS 15.0.0"), "colour in the banner"
        assert "Installing application..." in out and "% complete)" in out
        await eventually(lambda: node.appliance.state == "rebooting", what="the reboot")
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", node.port)
        await eventually(lambda: node.appliance.state == "up", what="the appliance back up")
        cli2 = await RawCLI.open(fleet, "esa01")
        out = await cli2.say("version")
        assert "Version: 16.0.0-123" in out and f"Serial #: {serial}" in out  # the same box
        assert cli2.banner.rstrip().endswith(f"{hostname}>")
        cli2.close()
    finally:
        await fleet.stop()


async def test_cluster_prompts_disconnect_footgun_and_reconnect(fleet6: SimFleet) -> None:
    host5, host6 = fleet6.hostnames["esa05"], fleet6.hostnames["esa06"]
    a5 = fleet6.nodes["esa05"].appliance
    a5.printing = replace(a5.printing, page_lines=3)
    cli = await RawCLI.open(fleet6, "esa05")
    try:
        out = await cli.say("workqueue status", "[Y]> ")
        assert f'switch to "Machine {host5}" mode' in out
        out = await cli.say("Y")
        assert out.rstrip().endswith(f"(Machine {host5})>")
        await cli.say("clusterconfig", "[]> ")
        out = await cli.say("LIST", "[]> ")
        for name, host in (("esa05", host5), ("esa06", host6)):
            assert f"Machine {host} (Serial #: {fleet6.serials[name]})" in out
        before = len(cli.stops)
        out = await cli.say("DISCONNECT", "[]> ")
        assert f"{host5} (group Main_Group)" in out and "esa05" not in out
        assert [s[-1][:3] for s in cli.stops[before:]] == ["1. "], "the pager stopped inside the machine list"
        number = out.split(host5)[0].rsplit("\n", 1)[1].strip().rstrip(".")
        await cli.say(number, "[Y]> ")
        out = await cli.say("Y", "[]> ")  # back at clusterconfig's menu
        assert "is now disconnected from the cluster" in out and "Choose the operation" in out
        out = await cli.say("")
        assert out.rstrip().endswith(f"(Machine {host5})>")
        esa05, esa06 = fleet6.nodes["esa05"].appliance, fleet6.nodes["esa06"].appliance
        assert not esa05.cluster_connected and esa06.cluster_connected
        # Versions differ: reconnect refused.
        esa05.version = (16, 0, 0, 123)
        await cli.say("clusterconfig", "[]> ")
        await cli.say("RECONNECT", "[]> ")
        await cli.say("1", "[Y]> ")
        out = await cli.say("Y", "[]> ")
        assert "different" in out and "version" in out and not esa05.cluster_connected
        await cli.say("")
        esa05.version = esa06.version
        await cli.say("clusterconfig", "[]> ")
        await cli.say("RECONNECT", "[]> ")
        await cli.say("1", "[Y]> ")
        out = await cli.say("Y", "[]> ")
        assert "reconnected" in out and esa05.cluster_connected
        await cli.say("")
    finally:
        cli.close()


async def test_fault_auth_and_flaky_and_hostkey(tmp_path: Path) -> None:
    fleet = await start_fleet(
        tmp_path, 3, faults={"esa01": {"auth-fail"}, "esa02": {"flaky"}, "esa03": {"hostkey-change"}}, clusters=False
    )
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
        # hostkey-change: after a reboot the appliance presents another key, and known_hosts catches it.
        node = fleet.nodes["esa03"]
        old_key = node.host_key.export_public_key().decode().split()[1]
        assert old_key in fleet.known_hosts_path.read_text()
        cli = await RawCLI.open(fleet, "esa03")
        await cli.say("reboot", "[30]> ")
        await cli.say("1", "Rebooting the system...")
        cli.close()
        await eventually(lambda: node.appliance.reboots == 1 and node.appliance.state == "up", what="reboot")
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            await RawCLI.open(fleet, "esa03")
        async with asyncssh.connect(
            "127.0.0.1",
            node.port,
            username="admin",
            password=TEST_PASSWORD,
            known_hosts=None,
            config=None,
            agent_path=None,
            client_keys=None,
        ) as conn:
            key = conn.get_server_host_key()
            assert key is not None
            new_key = key.export_public_key().decode().split()[1]
        assert new_key != old_key and new_key not in fleet.known_hosts_path.read_text()
    finally:
        await fleet.stop()


async def test_fault_listeners_suspended_by_hand_and_garbled_version(tmp_path: Path) -> None:
    fleet = await start_fleet(
        tmp_path, 2, faults={"esa01": {"listeners-suspended"}, "esa02": {"garbled-version"}}, clusters=False
    )
    try:
        assert fleet.nodes["esa01"].appliance.suspended and not fleet.nodes["esa02"].appliance.suspended
        cli = await RawCLI.open(fleet, "esa01")
        try:
            out = await cli.say("status detail")
            assert re.search(r"^System status:\s+Receiving Suspended", out, re.M)
            assert "Version: 15" in await cli.say("version")
        finally:
            cli.close()
        cli = await RawCLI.open(fleet, "esa02")
        try:
            out = await cli.say("version")
            assert "Current Version" in out and "Version:" not in out and "Serial #:" not in out
        finally:
            cli.close()
    finally:
        await fleet.stop()


async def test_every_drop_is_an_event(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    seen: list[tuple[str, str]] = []
    fleet = await start_fleet(
        tmp_path,
        2,
        faults={"esa01": {"drop@version#2"}, "esa02": {"drop@workqueue status"}},
        clusters=False,
        events_out=events,
        on_event=lambda name, what: seen.append((name, what)),
    )
    try:
        cli = await RawCLI.open(fleet, "esa01")
        assert "Version:" in await cli.say("version")
        with pytest.raises((EOFError, asyncssh.ConnectionLost)):
            await cli.say("version")
        cli.close()
        cli = await RawCLI.open(fleet, "esa02")
        with pytest.raises((EOFError, asyncssh.ConnectionLost)):
            await cli.say("WorkQueue   status")
        cli.close()
        assert ("esa01", "dropped:version#2") in fleet.events and ("esa01", "dropped:version#2") in seen
        assert ("esa02", "dropped:workqueue status#1") in fleet.events
        assert [w for n, w in fleet.events if w.startswith("dropped:")] == [
            "dropped:version#2",
            "dropped:workqueue status#1",
        ]
        lines = events.read_text().splitlines()
        assert any(re.fullmatch(r"esa01 dropped:version#2 \d+\.\d{3}", line) for line in lines), lines
        assert fleet.nodes["esa01"].appliance.drops == ["version#2"]
    finally:
        await fleet.stop()


async def test_inventory_written_elsewhere_is_usable(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, clusters=False)
    try:
        elsewhere = tmp_path / "elsewhere" / "fleet.toml"
        elsewhere.parent.mkdir()
        fleet.write_inventory(elsewhere)
        inventory = load_inventory(elsewhere)
        for a in inventory.appliances:
            assert a.known_hosts.is_file() and a.known_hosts.samefile(fleet.known_hosts_path)
        beside = load_inventory(fleet.inventory_path)
        assert all(a.known_hosts.samefile(fleet.known_hosts_path) for a in beside.appliances)
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


@pytest.mark.needs("tmux", "ssh")
def test_openssh_client_walks_the_cli(tmp_path: Path) -> None:
    """A real OpenSSH client, typed into by tmux like a person would; `segtui sim` run as this Python runs it."""
    out = tmp_path / "out" / "fleet.toml"
    out.parent.mkdir()
    sim = subprocess.Popen(
        [
            *(sys.executable, "-m", "segtui", "sim", "--appliances", "2", "--time-scale", "0.002"),
            *("--workdir", str(tmp_path / "sim"), "--inventory-out", str(out)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ},
    )
    term: TmuxSession | None = None
    try:
        port, hostname = None, None
        assert sim.stdout is not None
        for line in sim.stdout:
            if line.strip().startswith("esa01"):
                port = int(line.split("127.0.0.1:")[1].split()[0])
                hostname = line.split("hostname=")[1].split()[0]
            if "Ctrl+C" in line:
                break
        assert port and hostname
        assert all(a.known_hosts.is_file() for a in load_inventory(out).appliances)  # usable as written
        askpass = tmp_path / "askpass.sh"
        askpass.write_text(f"#!/bin/sh\necho '{TEST_PASSWORD}'\n")
        askpass.chmod(0o700)
        cmd = (
            f"SSH_ASKPASS={askpass} SSH_ASKPASS_REQUIRE=force ssh -tt -F /dev/null -p {port} "
            f"-o UserKnownHostsFile={tmp_path / 'sim' / 'known_hosts'} -o StrictHostKeyChecking=yes "
            f"admin@127.0.0.1"
        )
        term = TmuxSession("segtui-ssh", cmd, 150, 50)

        def wait_paging(text: str) -> str:
            """Wait for text and the prompt or question after it, pressing space at every pager stop on the way."""
            end = time.monotonic() + 30
            while time.monotonic() < end:
                shown = term.screen()
                if text in shown and shown.rstrip().endswith(">"):
                    return shown
                if shown.rstrip().endswith(PAGER):
                    term.keys("Space")
                time.sleep(0.05)
            raise AssertionError(f"{text!r} not on screen:\n{term.screen()}")

        wait_paging(f"{hostname}>")
        term.keys("version", "Enter")
        wait_paging("Version: 15.0.0-104")
        term.keys("suspendlistener", "Enter")
        s = wait_paging("]>")
        if "Choose the listener(s)" in s:
            term.keys("Enter")
            wait_paging("abruptly closing")
        term.keys("Enter")
        wait_paging("Receiving suspended for")
        term.keys("status detail", "Enter")
        wait_paging("Kilobytes Free")
        term.keys("resumelistener", "Enter")
        if "Choose the listener(s)" in s:  # several listeners: the same list is asked again
            wait_paging("you wish to resume")
            term.keys("Enter")
        wait_paging("Receiving resumed for")
        term.keys("exit", "Enter")
    finally:
        if term is not None:
            term.kill()
        sim.terminate()
        sim.wait(10)
