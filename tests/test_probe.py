"""The field kit over real SSH: `probe_fleet` against a simulated fleet, and one odd appliance among good ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segtui.asyncos.commands import Appliance, CommandTimeouts
from segtui.asyncos.probe import PROBE_COMMANDS, probe_appliance, read_output, split_transcript
from segtui.asyncos.session import ConnectOptions, Credentials
from segtui.inventory import load_inventory
from segtui.rollout.context import RolloutContext
from segtui.rollout.journal import Journal
from segtui.rollout.probe import probe_fleet
from tests.conftest import TARGET, TEST_PASSWORD, make_settings, start_fleet
from tests.scripted import ScriptedAppliance, serve


def context(inventory_path: Path, tmp_path: Path) -> RolloutContext:
    settings = make_settings(tmp_path / "state")
    journal = Journal(settings.state_dir / "journal.sqlite")
    return RolloutContext(load_inventory(inventory_path), settings, TARGET, journal, lambda e: None)


async def test_probe_fleet_reads_every_output_of_the_simulator(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 6)
    try:
        out = tmp_path / "probe"
        report = await probe_fleet(context(fleet.inventory_path, tmp_path), out)
    finally:
        await fleet.stop()
    assert report.ok, report.problems()
    data = json.loads((out / "probe.json").read_text())
    assert data["ok"] is True and len(data["appliances"]) == 6
    by_name = {a["name"]: a for a in data["appliances"]}
    clustered = [n for n, node in fleet.nodes.items() if node.appliance.cluster is not None]
    assert clustered, "the simulated fleet has a cluster"
    for name, node in fleet.nodes.items():
        entry = by_name[name]
        commands = {c["command"]: c for c in entry["commands"]}
        expected = {p.command for p in PROBE_COMMANDS if not p.clustered_only or name in clustered}
        assert set(commands) == expected
        assert all(c["ok"] for c in commands.values()), commands
        fields = commands["version"]["fields"]
        assert fields["serial"] == node.appliance.serial
        if name in clustered:
            machines = commands["clusterconfig"]["fields"]["machines"]
            assert sorted(machines) == sorted(fleet.nodes[m].appliance.hostname for m in clustered)
        for c in commands.values():
            text = (out / c["transcript"]).read_text()
            # The transcript replays to the same reading: it can become a regression test as it is.
            (command, output), *_ = split_transcript(text)
            assert command == c["command"]
            assert read_output(c["parser"], output).fields == c["fields"]
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert TEST_PASSWORD not in text and "\x1b" not in text, path


async def test_one_unreachable_appliance_is_one_line_and_the_others_carry_on(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 3, clusters=False)
    try:
        await fleet.nodes["esa02"].stop()
        report = await probe_fleet(context(fleet.inventory_path, tmp_path), tmp_path / "probe")
    finally:
        await fleet.stop()
    by_name = {a.name: a for a in report.appliances}
    down = by_name["esa02"]
    assert down.error is not None and "\n" not in down.error and down.error.startswith("connection refused")
    assert not report.ok and report.problems() == [f"esa02: {down.error}"]
    assert by_name["esa01"].ok and by_name["esa03"].ok


async def test_garbled_and_unknown_outputs_are_readings_not_exceptions(tmp_path: Path) -> None:
    """An appliance that answers oddly: each output gets its own verdict, the probe goes on to the end."""
    sa = ScriptedAppliance(
        password=TEST_PASSWORD,
        script={
            "version": [(f"\nVersion: fifteen\nEcho of the password: {TEST_PASSWORD}\n", None)],
            "workqueue status": [("\nStatus: Operational\nMessages: 1,243\n", None)],
        },
    )
    acceptor, port, kh, _ = await serve(sa, tmp_path)
    try:
        opts = ConnectOptions(
            "esa07",
            "127.0.0.1",
            port,
            Credentials("admin", TEST_PASSWORD),
            str(kh),  # a file name: asyncssh reads it, and so does a session that re-reads it per connection
        )
        client = Appliance(opts, timeouts=CommandTimeouts(default=5))
        async with client:
            probe = await probe_appliance(client, host="127.0.0.1")
    finally:
        acceptor.close()
    results = {c.command: c for c in probe.commands}
    assert probe.error is None
    version = results["version"]
    assert version.reading is not None and not version.reading.ok
    assert version.reading.error == "version output: not an AsyncOS version: 'fifteen' (expected like 15.0.0-104)"
    assert TEST_PASSWORD not in version.transcript and "********" in version.transcript
    wq = results["workqueue status"]
    assert wq.ok and wq.reading is not None and wq.reading.fields == {"status": "Operational", "messages": 1243}
    unknown = results["status detail"]
    assert unknown.reading is None and unknown.error is not None and "does not know" in unknown.error
    assert "clusterconfig" not in results  # not clustered: the prompt says so


@pytest.mark.parametrize("name", ["../evil", "a/b", ".."])
def test_probe_folder_names_stay_inside(name: str) -> None:
    from segtui.rollout.probe import dir_name

    assert "/" not in dir_name(name) and dir_name(name) not in ("", ".", "..")
