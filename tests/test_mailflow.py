"""Mail-flow guards end to end: the simulator's bake-fail and peer-overload faults, over real SSH."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from segtui.rollout.engine import Outcome, Rollout, RolloutOptions
from segtui.rollout.events import ListenersChanged, RolloutEvent, State, WorkQueueDepth
from segtui.rollout.peers import READING_FLOOR
from tests.conftest import SCALE, fast_durations, make_rollout, start_fleet


def test_demo_with_a_bake_failure_exits_1_and_reports_every_verdict(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    proc = _demo(tmp_path, "--faults", "esa03=bake-fail", "--max-fail", "100%", "--report", str(report), appliances=8)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    data = json.loads(report.read_text())
    by_name = {a["name"]: a for a in data["appliances"]}
    failed = by_name.pop("esa03")
    assert failed["state"] == "failed" and "bake" in failed["error"], failed
    assert failed["bake"]["verdict"] == "failed", failed["bake"]
    assert failed["version_after"] == "16.0.0-123"  # upgraded, then judged by its mail flow, left in service
    assert failed["listeners"] == "active"
    for name, a in by_name.items():
        assert a["state"] == "done", (name, a)
        assert a["bake"]["verdict"] in ("passed", "no-traffic"), (name, a["bake"])


async def test_an_overloaded_peer_holds_its_group_then_the_rollout_pauses(tmp_path: Path) -> None:
    # esa01 carries an overload (its queue stays above 12,000) and the operator leaves it out of the rollout: it
    # stays in service, so its group's other appliances must not go out of service while it is backed up.
    fleet = await start_fleet(tmp_path, 4, clusters=False, faults={"esa01": {"peer-overload"}})
    try:
        rollout = make_rollout(
            fleet, tmp_path, options=RolloutOptions(batch="100%", max_unavailable=2, max_fail="100%")
        )
        assert rollout.skip("esa01").endswith("skipped")
        group = {n: s.group for n, s in rollout.specs.items()}
        peers = [n for n in rollout.specs if group[n] == group["esa01"] and n != "esa01"]
        others = [n for n in rollout.specs if group[n] != group["esa01"]]
        assert peers and others, group
        outcome = await rollout.run(autostart=True)
        assert outcome == Outcome.PAUSED, (outcome, rollout.pause_reason)
        assert "guard" in rollout.pause_reason and "esa01 work queue" in rollout.pause_reason, rollout.pause_reason
        for name in peers:
            rec = rollout.records[name]
            # held in service, never suspended, never upgraded; the wait is on record with its reason
            assert rec.state == State.PENDING, (name, rec)
            assert fleet.nodes[name].appliance.upgrades_done == [], name
            assert not fleet.nodes[name].appliance.suspended, name
            assert rec.guard_waits and "esa01" in json.dumps(rec.guard_waits), rec.guard_waits
        for name in others:  # the other group was never held by it
            assert rollout.records[name].state == State.DONE, (name, rollout.records[name])
    finally:
        await fleet.stop()


async def test_the_peers_of_an_appliance_out_of_service_are_read_while_it_is_out(tmp_path: Path) -> None:
    # One appliance at a time: while it is suspended, draining or rebooting, its in-service peers are read every
    # polling interval (the dashboard's work-queue panel shows where its mail goes), not only by the guards before.
    # Each reboots for longer than a reading lives, so the guard's reading just before cannot stand for the watch.
    reboot = (READING_FLOOR + 1.0) / SCALE
    fleet = await start_fleet(tmp_path, 4, clusters=False, durations=replace(fast_durations(), reboot=(reboot, reboot)))
    try:
        rollout = make_rollout(fleet, tmp_path, options=RolloutOptions(batch="1", max_unavailable=1, max_fail="0"))
        events: list[RolloutEvent] = []
        rollout.subscribe(events.append)
        assert await rollout.run(autostart=True) == Outcome.COMPLETED
        group = {n: s.group for n, s in rollout.specs.items()}
        seen_while_out = set()
        for name in rollout.specs:
            changes = [(e.ts, e.listeners) for e in events if isinstance(e, ListenersChanged) and e.appliance == name]
            start = next(ts for ts, listeners in changes if listeners == "suspended")
            end = next(ts for ts, listeners in changes if listeners == "active" and ts > start)
            peers = {n for n in rollout.specs if group[n] == group[name] and n != name}
            read = {
                e.appliance
                for e in events
                if isinstance(e, WorkQueueDepth) and e.appliance in peers and start < e.ts < end
            }
            if peers:
                assert read == peers, (name, peers, read)
                seen_while_out.add(name)
        assert seen_while_out, group  # the fleet had groups with peers
        # the peers' readings were only read: none of them was taken out of service by it
        assert all(rollout.records[n].state == State.DONE for n in rollout.specs)
    finally:
        await fleet.stop()


def _demo(tmp_path: Path, *flags: str, appliances: int = 2) -> subprocess.CompletedProcess[str]:
    """`segtui demo --headless` as an operator runs it, at the tests' time scale."""
    demo = [sys.executable, "-m", "segtui", "demo", "--headless", "--appliances", str(appliances)]
    return subprocess.run(
        [*demo, "--time-scale", "0.002", *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bake_0_turns_the_bake_off_and_the_report_says_so(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--bake", "0", "--report", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["options"]["bake"] == 0
    for a in data["appliances"]:
        assert a["state"] == "done" and a["bake"]["verdict"] == "skipped", a
        assert "bake off" in a["bake"]["message"] and not a["bake"]["samples"], a["bake"]


def test_a_bad_bake_duration_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    proc = _demo(tmp_path, "--bake", "10 minutes")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "segtui: --bake: '10 minutes' is not a duration (90s, 10m, 2h, 1h30m, or seconds)"
    ], proc.stderr
    assert "batch" not in proc.stdout


def test_the_guard_options_of_a_rollout_are_its_own_and_survive_a_resume(tmp_path: Path) -> None:
    import argparse

    from segtui.commands.common import options
    from tests.conftest import make_settings, offline_rollout

    settings = make_settings(tmp_path / "state")
    assert settings.guards.bake != 90 and settings.guards.peer_queue_max != 7
    given = argparse.Namespace(bake="90s", peer_queue_max=7, batch=None, max_fail=None)
    opts = options(given, settings)
    assert (opts.bake, opts.peer_queue_max) == (90.0, 7)
    rollout = offline_rollout(tmp_path, 2, opts, settings=settings)
    assert (rollout.settings.guards.bake, rollout.settings.guards.peer_queue_max) == (90.0, 7)
    assert rollout.ctx.settings.guards.bake == 90.0  # what the guards read
    rollout.begin()
    # `segtui resume` (no --bake there) rebuilds the options from the journal: the rollout keeps its own
    found = rollout.journal.unfinished(str(rollout.inventory.path))
    assert found is not None
    resumed = options(argparse.Namespace(max_fail=None), settings, found[2])
    again = Rollout(rollout.inventory, settings, rollout.target, rollout.journal, resumed)
    assert (again.settings.guards.bake, again.settings.guards.peer_queue_max) == (90.0, 7)


def test_the_demo_runs_the_pre_flight_as_run_does(tmp_path: Path) -> None:
    # A fault the pre-flight sees refuses the whole demo before anything is changed, as `segtui run` would.
    proc = _demo(tmp_path, "--faults", "esa02=auth-fail", appliances=3)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "pre-flight: esa02: authentication failed" in proc.stderr
    assert "pre-flight refused: nothing was changed" in proc.stderr
    assert "precheck" not in proc.stdout  # no appliance's procedure began
