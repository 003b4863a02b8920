"""The rollout engine end to end against the simulated fleet: procedure, invariants, controls, clusters."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from segtui.asyncos.versions import Version
from segtui.rollout.engine import RolloutOptions
from segtui.rollout.events import RolloutEvent, State, StepStarted, WorkQueueDepth
from segtui.rollout.report import build_report, write_report
from tests.conftest import TARGET, TEST_PASSWORD, make_rollout, start_fleet


def run_cli(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEGTUI_PASSWORD": TEST_PASSWORD}
    return subprocess.run(
        [sys.executable, "-m", "segtui", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_headless_20_upgrades_everything(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = run_cli(
        "demo",
        "--headless",
        "--appliances",
        "20",
        "--time-scale",
        "0.002",
        "--max-unavailable",
        "5",
        "--report",
        str(report),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["outcome"] == "completed" and data["target"] == "16.0.0-123"
    assert len(data["appliances"]) == 20
    for a in data["appliances"]:
        assert a["state"] == "done" and a["version_after"] == "16.0.0-123", a
        assert a["listeners"] == "active"
        assert a["error"] is None
        kinds = [b["kind"] for b in a["backups"]]
        assert kinds[0] == "config"
        for b in a["backups"]:
            path = Path(b["path"])
            assert path.stat().st_mode & 0o777 == 0o600
            assert hashlib.sha256(path.read_bytes()).hexdigest() == b["sha256"]
    before = {a["version_before"] for a in data["appliances"]}
    assert {"14.2.1-015", "15.0.0-104", "15.5.1-055"} <= before
    hopped = [a for a in data["appliances"] if a["version_before"] == "14.2.1-015"]
    assert hopped and all(a["hops"] == ["15.0.0-104"] for a in hopped)
    md = report.with_suffix(".md").read_text()
    assert "Outcome: completed" in md and "esa20" in md
    assert "cluster mailcluster: every machine reconnected" in md
    assert TEST_PASSWORD not in proc.stdout + proc.stderr + md + report.read_text()


async def test_no_upgrade_while_mail_in_queue_and_listeners_resumed(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 4, clusters=False)
    try:
        rollout = make_rollout(fleet, tmp_path, options=RolloutOptions(max_unavailable=2))
        depth_at_upgrade: dict[str, int] = {}
        depth_at_suspend: dict[str, int] = {}
        reported: list[int] = []

        def watch(ev: RolloutEvent) -> None:
            if isinstance(ev, WorkQueueDepth) and ev.draining:
                reported.append(ev.depth)
            if isinstance(ev, StepStarted) and ev.step.value == "suspend":
                a = fleet.nodes[ev.appliance].appliance
                depth_at_suspend[ev.appliance] = a.tick_mail(fleet.time_scale, fleet.durations.drain_rate)
            if isinstance(ev, StepStarted) and ev.step.value == "upgrade":
                # Read the simulator's own truth at the moment the upgrade step starts.
                a = fleet.nodes[ev.appliance].appliance
                depth_at_upgrade[ev.appliance] = a.tick_mail(fleet.time_scale, fleet.durations.drain_rate)

        rollout.subscribe(watch)
        outcome = await rollout.run(autostart=True)
        assert outcome == "completed"
        assert depth_at_upgrade and all(d == 0 for d in depth_at_upgrade.values())
        # The drain was live, not assumed: there was mail when receiving stopped, and segtui read the work queue
        # (until zero) before each upgrade. (How many non-zero readings it catches depends on the machine's speed.)
        assert any(d > 0 for d in depth_at_suspend.values()), depth_at_suspend
        for name in fleet.nodes:
            polled = [c for _, c, _ in rollout.journal.commands_of(name) if c == "workqueue status"]
            assert polled, name
        for node in fleet.nodes.values():
            a = node.appliance
            assert not a.suspended and a.version == (16, 0, 0, 123)
            assert a.upgrades_done == [(16, 0, 0, 123)]  # exactly one upgrade each
            # update settings put back as they were (Cisco servers)
            assert a.committed.listing == "cisco" and a.committed.images == "cisco"
            assert a.pending is None
        # the journal has every step and command, without the password
        db = rollout.journal.db
        steps = db.execute("SELECT COUNT(*) FROM steps WHERE ok = 1").fetchone()[0]
        assert steps >= 4 * 9
        dump = "\n".join(str(r) for r in db.execute("SELECT * FROM commands"))
        assert "suspendlistener" in dump and "upgrade" in dump
        assert TEST_PASSWORD not in dump
        assert oct(os.stat(rollout.journal.path).st_mode & 0o777) == "0o600"
    finally:
        await fleet.stop()


async def test_original_own_server_settings_are_restored(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, clusters=False)
    try:
        a = fleet.nodes["esa01"].appliance
        a.committed.images = "mirror.corp:8080"
        a.committed.listing = "http://mirror.corp:8080/asyncos/old.xml"
        rollout = make_rollout(fleet, tmp_path)
        assert await rollout.run(autostart=True) == "completed"
        assert a.committed.images == "mirror.corp:8080"
        assert a.committed.listing == "http://mirror.corp:8080/asyncos/old.xml"
        # the feature-key service that uses its own server was never touched
        assert fleet.nodes["esa02"].appliance.committed.feature_keys == "keys.lab.example.com:80"
    finally:
        await fleet.stop()


async def test_capacity_groups_and_cluster_one_at_a_time(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 8)
    try:
        rollout = make_rollout(fleet, tmp_path, options=RolloutOptions(batch="100%", max_unavailable=2))
        concurrent: dict[str, int] = {}
        peak: dict[str, int] = {}
        cluster_peak = [0]
        active_cluster: set[str] = set()
        from segtui.rollout.events import ApplianceStateChanged

        def watch(ev: RolloutEvent) -> None:
            if isinstance(ev, ApplianceStateChanged):
                spec = rollout.specs[ev.appliance]
                if ev.state.value == "running":
                    concurrent[spec.group] = concurrent.get(spec.group, 0) + 1
                    if spec.cluster:
                        active_cluster.add(ev.appliance)
                else:
                    concurrent[spec.group] = concurrent.get(spec.group, 0) - 1
                    active_cluster.discard(ev.appliance)
                peak[spec.group] = max(peak.get(spec.group, 0), concurrent[spec.group])
                cluster_peak[0] = max(cluster_peak[0], len(active_cluster))

        rollout.subscribe(watch)
        last: dict[str, RolloutEvent] = {}

        def remember(ev: RolloutEvent) -> None:
            if isinstance(ev, StepStarted | ApplianceStateChanged):
                last[ev.appliance] = ev

        rollout.subscribe(remember)
        assert await rollout.run(autostart=True) == "completed"
        assert max(peak.values()) <= 2 and cluster_peak[0] == 1
        # after the cluster reconnect the members are shown done again, not stuck on that step
        for name in ("esa07", "esa08"):
            ev = last[name]
            assert isinstance(ev, ApplianceStateChanged) and ev.state.value == "done", ev
        assert all(n.appliance.cluster_connected for n in fleet.nodes.values() if n.appliance.cluster)
    finally:
        await fleet.stop()


async def test_abort_makes_in_flight_safe(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 4, clusters=False, faults={"esa01": {"drain-stuck"}})
    try:
        rollout = make_rollout(fleet, tmp_path, options=RolloutOptions(batch="100%", max_unavailable=4))
        task = asyncio.create_task(rollout.run(autostart=True))
        # wait until esa01 is draining (suspended, queue stuck)
        for _ in range(400):
            if rollout.records["esa01"].step == "drain":
                break
            await asyncio.sleep(0.02)
        assert fleet.nodes["esa01"].appliance.suspended
        rollout.abort()
        outcome = await asyncio.wait_for(task, 60)
        assert outcome == "aborted"
        rec = rollout.records["esa01"]
        assert rec.state == "pending" and rec.listeners == "active"
        assert not fleet.nodes["esa01"].appliance.suspended
        assert fleet.nodes["esa01"].appliance.committed.listing == "cisco"
        for name, r in rollout.records.items():
            # nothing half-done: either upgraded and resumed, or untouched and resumed
            assert r.state in ("done", "pending"), (name, r.state)
            assert not fleet.nodes[name].appliance.suspended
        assert rollout.journal.db.execute("SELECT COUNT(*) FROM actions WHERE action='abort'").fetchone()[0] == 1
    finally:
        await fleet.stop()


async def test_pause_skip_retry_and_listener_controls(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 4, clusters=False, faults={"esa02": {"upgrade-fail"}})
    try:
        rollout = make_rollout(
            fleet,
            tmp_path,
            exit_on_pause=False,
            options=RolloutOptions(batch="1", max_unavailable=1, max_fail="0"),
        )
        # operator suspends and resumes esa04's listeners before anything runs
        result = await rollout.change_listeners(["esa04"], suspend=True)
        assert result == {"esa04": "suspended"} and fleet.nodes["esa04"].appliance.suspended
        result = await rollout.change_listeners(["esa04"], suspend=False)
        assert result == {"esa04": "active"} and not fleet.nodes["esa04"].appliance.suspended
        assert rollout.skip("esa03") == "esa03: skipped"
        task = asyncio.create_task(rollout.run(autostart=True))
        for _ in range(1000):
            if rollout.state.value == "paused":
                break
            await asyncio.sleep(0.02)
        assert rollout.state.value == "paused" and "failure budget" in rollout.pause_reason
        assert rollout.records["esa02"].state == "failed"
        assert not fleet.nodes["esa02"].appliance.suspended  # resumed after the failure
        assert rollout.records["esa04"].state == "pending"  # nothing new started while paused
        # fix the appliance and retry it; unpause
        fleet.nodes["esa02"].appliance.faults.clear()
        assert rollout.retry("esa02") == "esa02: queued again"
        rollout.unpause()
        outcome = await asyncio.wait_for(task, 120)
        assert outcome == "finished-with-failures"  # one was skipped: not every appliance is done
        assert {n: r.state for n, r in rollout.records.items()} == {
            "esa01": "done",
            "esa02": "done",
            "esa03": "skipped",
            "esa04": "done",
        }
        actions = [r[0] for r in rollout.journal.db.execute("SELECT action FROM actions ORDER BY id")]
        for a in ("suspend-listeners", "resume-listeners", "skip", "retry", "unpause"):
            assert a in actions
        report = build_report(rollout, outcome)
        write_report(report, tmp_path / "r.json")
        assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o600
    finally:
        await fleet.stop()


async def test_failure_budget_counts_whole_rollout(tmp_path: Path) -> None:
    faults = {"esa01": {"upgrade-fail"}, "esa03": {"no-manifest"}}
    fleet = await start_fleet(tmp_path, 6, clusters=False, faults=faults)
    try:
        # batches of 2: one failure per batch never exceeds a per-batch count, but the total does
        rollout = make_rollout(fleet, tmp_path, options=RolloutOptions(batch="2", max_fail="1", max_unavailable=2))
        outcome = await rollout.run(autostart=True)
        assert outcome == "paused"
        assert "failure budget spent: 2 failed, 1 allowed" in rollout.pause_reason
        assert sum(1 for r in rollout.records.values() if r.state == "pending") >= 2
    finally:
        await fleet.stop()


async def test_target_check_and_plan_via_cli(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 3, clusters=False, faults={"esa02": {"auth-fail"}})
    try:
        inv = str(fleet.inventory_path)
        check = await asyncio.to_thread(run_cli, "check", "--inventory", inv, "--target", str(TARGET), cwd=tmp_path)
        assert check.returncode == 3, check.stdout + check.stderr
        assert "BAD esa02" in check.stdout and "authentication failed" in check.stdout
        assert "ok  manifest" in check.stdout
        plan = await asyncio.to_thread(
            run_cli, "plan", "--inventory", inv, "--target", str(TARGET), "--batch", "1,50%", cwd=tmp_path
        )
        assert plan.returncode == 0, plan.stderr
        assert "batch 1: esa01" in plan.stdout
        assert "suspendlistener > 1. All" in plan.stdout and "phoebe-15-0-0-104.xml" in plan.stdout
        run = await asyncio.to_thread(
            run_cli, "run", "--headless", "--inventory", inv, "--target", str(TARGET), cwd=tmp_path
        )
        assert run.returncode == 3 and "nothing was changed" in run.stderr
        assert all(n.appliance.committed.listing == "cisco" for n in fleet.nodes.values())
        assert not any(n.appliance.suspended for n in fleet.nodes.values())
    finally:
        await fleet.stop()


async def test_resume_trusts_the_appliance_over_the_journal(tmp_path: Path) -> None:
    """Journaled 'suspended' but killed before the appliance heard it: resume suspends it for real."""
    from segtui.rollout.engine import Rollout
    from segtui.rollout.journal import Journal

    fleet = await start_fleet(tmp_path, 2, clusters=False)
    try:
        first = make_rollout(fleet, tmp_path)
        rec = first.records["esa01"]
        rec.state, rec.step, rec.suspended_by_us, rec.listeners = State.RUNNING, "suspend", True, "suspended"
        first.journal.save(rec)
        rollout_id = first.journal.rollout_id
        assert rollout_id is not None and not fleet.nodes["esa01"].appliance.suspended
        journal = Journal(first.settings.state_dir / "journal.sqlite")
        again = Rollout(first.inventory, first.settings, TARGET, journal, first.options, exit_on_pause=True)
        again.attach(rollout_id)
        upgraded_while: list[bool] = []

        def watch(ev: RolloutEvent) -> None:
            if isinstance(ev, StepStarted) and ev.step.value == "upgrade" and ev.appliance == "esa01":
                upgraded_while.append(fleet.nodes["esa01"].appliance.suspended)

        again.subscribe(watch)
        assert await again.run(autostart=True) == "completed"
        assert upgraded_while == [True]
        assert not fleet.nodes["esa01"].appliance.suspended
        assert fleet.nodes["esa01"].appliance.upgrades_done == [(16, 0, 0, 123)]
    finally:
        await fleet.stop()


async def test_longest_procedures_start_first_within_a_batch(tmp_path: Path) -> None:
    from tests.test_tui import static_rollout

    rollout = static_rollout(tmp_path, n=4)
    hop = Version.parse("15.5.1-055")
    rollout.ctx.expected_paths = {"esa03": [hop, TARGET], "esa01": [TARGET], "esa02": [TARGET], "esa04": [TARGET]}
    rollout.options.max_unavailable = 1
    rollout.options.concurrency = 1
    rollout.state = rollout.state.RUNNING
    launched: list[str] = []

    def fake_launch(name: str) -> None:  # the procedure itself is tested elsewhere
        launched.append(name)
        rollout.records[name].state = State.DONE
        rollout._wake.set()

    rollout._launch = fake_launch  # type: ignore[method-assign]
    await rollout._run_batch(["esa01", "esa02", "esa03", "esa04"])
    assert launched[0] == "esa03" and sorted(launched) == ["esa01", "esa02", "esa03", "esa04"]


async def test_abort_survives_a_lost_cancellation() -> None:
    """Python 3.11's wait_for can swallow a cancellation; an abort must still stop the step."""
    import time as _time

    from segtui.rollout.procedure import _cancel_and_wait

    async def stubborn() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass  # the lost cancellation
        await asyncio.sleep(30)

    work = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    start = _time.monotonic()
    await _cancel_and_wait(work)
    assert work.cancelled() and _time.monotonic() - start < 2


async def test_a_resumed_rollout_keeps_the_pre_flight_plan(tmp_path: Path) -> None:
    """`resume` runs no pre-flight: the plan (the hard rule's allowed releases, the launch order) comes from the
    journal; an entry that does not read as versions is left unplanned, never guessed."""
    from segtui.inventory import load_inventory
    from segtui.rollout.engine import Rollout
    from segtui.rollout.journal import Journal
    from tests.conftest import make_settings

    fleet = await start_fleet(tmp_path, 3, clusters=False)
    try:
        inventory = load_inventory(fleet.inventory_path)
        settings = make_settings(tmp_path / "state")
        journal = Journal(settings.state_dir / "journal.sqlite")
        first = Rollout(inventory, settings, TARGET, journal, RolloutOptions(), exit_on_pause=True)
        hop = Version.parse("15.5.1-055")
        first.ctx.expected_paths = {"esa01": [hop, TARGET], "esa02": [TARGET]}
        first.begin()
        rollout_id = journal.rollout_id
        assert rollout_id is not None

        def resumed() -> Rollout:
            again = Rollout(
                inventory, settings, TARGET, Journal(settings.state_dir / "journal.sqlite"), RolloutOptions()
            )
            again.attach(rollout_id)
            return again

        again = resumed()
        assert again.ctx.expected_paths == {"esa01": [hop, TARGET], "esa02": [TARGET]}
        assert again.ctx.upgrades_left("esa01") == 2
        # A damaged entry: that appliance is unplanned (the driver's own rule), the others keep theirs.
        options = dict(journal.rollout_info(rollout_id).options)  # type: ignore[union-attr]
        options["_paths"] = {"esa01": ["not-a-version"], "esa02": [str(TARGET)], "esa03": 7}
        journal.update_options(options)
        assert resumed().ctx.expected_paths == {"esa02": [TARGET]}
    finally:
        await fleet.stop()
