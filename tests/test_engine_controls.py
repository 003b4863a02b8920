"""The engine's controls over real SSH against the simulator: abort, budget, capacity, stuck states, locks, window."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from segtui.errors import InputError
from segtui.inventory import load_inventory
from segtui.rollout.engine import BudgetSpent, Rollout, RolloutOptions
from segtui.rollout.events import (
    ApplianceStateChanged,
    BatchStarted,
    OperatorActed,
    Outcome,
    RolloutEvent,
    State,
)
from segtui.rollout.journal import Journal
from segtui.rollout.report import build_report
from segtui.settings import Deadlines, LockSettings
from segtui.sim.fleet import SimFleet
from tests.conftest import TARGET, make_rollout, make_settings, start_fleet

UP = (16, 0, 0, 123)


def lockdir(tmp_path: Path) -> LockSettings:
    return LockSettings(dir=tmp_path / "locks")


def slow_reboot(tmp_path: Path) -> Deadlines:
    """A reboot deadline far beyond the test's own wait: nothing may wait for it."""
    return make_settings(tmp_path / "x").deadlines.model_copy(update={"reboot": 900.0})


async def until(condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_abort_is_final_and_never_waits_for_a_reboot(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 4, clusters=False, faults={"esa01": {"reboot-hang"}})
    try:
        rollout = make_rollout(
            fleet,
            tmp_path,
            options=RolloutOptions(batch="100%", max_unavailable=4, max_fail="100%"),
            deadlines=slow_reboot(tmp_path),
            locks=lockdir(tmp_path),
        )
        task = asyncio.create_task(rollout.run(autostart=True))
        await until(lambda: rollout.records["esa01"].step == "reboot", what="esa01 rebooting")
        started = time.monotonic()
        rollout.abort(who="alice@noc")
        outcome = await asyncio.wait_for(task, 60)
        assert outcome == Outcome.ABORTED and outcome.exit_code == 1
        assert time.monotonic() - started < 60
        rec = rollout.records["esa01"]
        assert rec.state == State.NEEDS_ATTENTION and "aborted while rebooting" in (rec.error or "")
        assert any(w.appliance == "esa01" and "needs attention" in w.what for w in rollout.needs_a_person())
        # final in the journal: not offered for resume, and resume is told who aborted it and when
        inv = str(rollout.inventory.path)
        assert rollout.journal.unfinished(inv) is None
        last = rollout.journal.last_rollout(inv)
        assert last is not None and last.outcome == "aborted"
        assert re.search(r"aborted by alice@noc at \d{4}-\d\d-\d\d", last.describe())
        again = Rollout(
            rollout.inventory, rollout.settings, TARGET, Journal.in_dir(rollout.settings.state_dir), rollout.options
        )
        with pytest.raises(InputError, match="aborted by alice@noc"):
            again.attach(last.id)
        # looked at, not resumed: what is left for a person, nothing journaled
        actions_before = len(rollout.journal.actions_of(last.id))
        assert again.review(last.id) == last and again.state.value == "aborted"
        assert again.outcome() == Outcome.ABORTED
        assert any(w.appliance == "esa01" for w in again.needs_a_person())
        assert len(again.journal.actions_of(last.id)) == actions_before
        texts = [e.text for e in rollout.journal.events()]
        assert "alice@noc: abort" in texts and any(t.startswith("aborted") for t in texts)
    finally:
        await fleet.stop()


async def test_unpause_from_a_spent_budget_needs_a_larger_budget(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 3, clusters=False, faults={"esa01": {"upgrade-fail"}})
    try:
        rollout = make_rollout(
            fleet,
            tmp_path,
            exit_on_pause=False,
            options=RolloutOptions(batch="1", max_fail="0"),
            locks=lockdir(tmp_path),
        )
        task = asyncio.create_task(rollout.run(autostart=True))
        await until(lambda: rollout.state.value == "paused", what="the budget pause")
        assert rollout.pause_reason.startswith("failure budget spent: 1 failed, 0 allowed")
        refusal = rollout.can("unpause")
        assert refusal is not None and "failure budget spent" in refusal and "\n" not in refusal
        with pytest.raises(BudgetSpent, match="failure budget spent: 1 failed, 0 allowed"):
            rollout.unpause(who="bob")
        with pytest.raises(BudgetSpent, match="still spent"):
            rollout.unpause(who="bob", max_fail="0")
        assert rollout.state.value == "paused"
        assert fleet.nodes["esa02"].appliance.upgrades_done == []  # nothing moved
        rollout.unpause(who="bob", max_fail="1")
        outcome = await asyncio.wait_for(task, 120)
        assert outcome == Outcome.FINISHED_WITH_FAILURES
        actions = [(a[1], a[2]) for a in rollout.journal.actions_of()]
        assert ("bob", "raise-budget") in actions and ("bob", "unpause") in actions
        saved = rollout.journal.rollout_info(rollout.journal.rollout_id or 0)
        assert saved is not None and saved.options["max_fail"] == "1"
    finally:
        await fleet.stop()


async def test_suspended_listeners_count_against_max_unavailable(tmp_path: Path) -> None:
    # dc1: esa01, esa03, esa05; dc2: esa02, esa04, esa06
    fleet = await start_fleet(tmp_path, 6, clusters=False)
    try:
        rollout = make_rollout(
            fleet, tmp_path, options=RolloutOptions(batch="100%", max_unavailable=2), locks=lockdir(tmp_path)
        )
        assert await rollout.change_listeners(["esa02", "esa06"], suspend=True) == {
            "esa02": "suspended",
            "esa06": "suspended",
        }
        dc2 = [fleet.nodes[n].appliance for n in ("esa02", "esa04", "esa06")]
        peak = [0]

        def watch(_ev: RolloutEvent) -> None:
            peak[0] = max(peak[0], sum(1 for a in dc2 if a.suspended))

        rollout.subscribe(watch)
        outcome = await asyncio.wait_for(rollout.run(autostart=True), 120)
        assert peak[0] <= 2
        # esa04 could never go: two of dc2 stay out of service; the rollout says so instead of waiting for ever
        assert outcome == Outcome.PAUSED and rollout.records["esa04"].state == State.PENDING
        assert "group dc2: 2 out of service (esa02, esa06 with listeners suspended)" in rollout.pause_reason
        hand = {w.appliance for w in rollout.needs_a_person() if w.what.startswith("listeners suspended")}
        assert {"esa02", "esa06"} <= hand, rollout.needs_a_person()
        assert any(w.appliance == "esa06" and "resumelistener" in w.command for w in rollout.needs_a_person())
        assert fleet.nodes["esa04"].appliance.upgrades_done == []
    finally:
        await fleet.stop()


async def test_give_up_on_a_hung_reboot_then_re_probe(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 4, clusters=False, faults={"esa01": {"reboot-hang"}})
    try:
        rollout = make_rollout(
            fleet,
            tmp_path,
            exit_on_pause=False,
            options=RolloutOptions(batch="100%", max_unavailable=4, max_fail="100%"),
            deadlines=slow_reboot(tmp_path),
            locks=lockdir(tmp_path),
        )
        task = asyncio.create_task(rollout.run(autostart=True))
        await until(lambda: rollout.records["esa01"].step == "reboot", what="esa01 rebooting")
        assert rollout.can("skip", "esa01") is None
        assert (
            rollout.skip("esa01", who="carol") == "esa01: given up while rebooting: needs attention, the rest continues"
        )
        outcome = await asyncio.wait_for(task, 60)  # far less than the 900 s reboot deadline
        assert outcome == Outcome.FINISHED_WITH_FAILURES
        rec = rollout.records["esa01"]
        assert rec.state == State.NEEDS_ATTENTION and "given up by the operator while rebooting" in (rec.error or "")
        assert all(rollout.records[n].state == State.DONE for n in ("esa02", "esa03", "esa04"))
        # Which version it runs is not known: the confirmed upgrade may or may not have happened. Nothing says the
        # old one: not the record's known version, not the report (which names both).
        assert rec.confirmed_upgrade_to == "16.0.0-123" and rec.current != "16.0.0-123"
        assert rec.known_version is None
        about = {a["name"]: a for a in build_report(rollout, "finished-with-failures")["appliances"]}["esa01"]
        assert about["version_after"] is None
        assert about["version_unknown_between"] == [rec.current, "16.0.0-123"], about
        # needs-attention is not a dead end: give up on it (left for a person), or re-probe it
        gave_up = rollout.skip("esa01")
        assert (
            gave_up.startswith("esa01: given up, left for a person: needs attention") and "listeners may be" in gave_up
        )
        assert rollout.records["esa01"].given_up and rollout.can("skip", "esa01") == "esa01: already given up"
        assert rollout.retry("esa01", who="carol") == "esa01: queued to be re-probed"
        rec = rollout.journal.records()["esa01"]
        assert rec.reprobe and rec.state == State.PENDING and not rec.given_up
        assert rollout.state.value == "running"  # taken up again after its end
        assert rollout.journal.unfinished(str(rollout.inventory.path)) is not None
        actions = [a[2] for a in rollout.journal.actions_of()]
        assert actions[-3:] == ["give-up", "give-up", "re-probe"]
    finally:
        await fleet.stop()


async def test_a_retry_does_not_add_a_batch(tmp_path: Path) -> None:
    # plan: esa01, esa02, esa03 one per batch; esa03 (the last batch) fails
    fleet = await start_fleet(tmp_path, 3, clusters=False, faults={"esa03": {"upgrade-fail"}})
    try:
        rollout = make_rollout(
            fleet,
            tmp_path,
            exit_on_pause=False,
            options=RolloutOptions(batch="1", max_fail="100%"),
            locks=lockdir(tmp_path),
        )
        assert rollout.batch_total == 3  # right from the start
        batches: list[BatchStarted] = []
        acted: list[OperatorActed] = []

        def watch(ev: RolloutEvent) -> None:
            if isinstance(ev, BatchStarted):
                batches.append(ev)
            if isinstance(ev, OperatorActed):
                acted.append(ev)

        rollout.subscribe(watch)
        first = await asyncio.wait_for(rollout.run(autostart=True), 120)
        assert first == Outcome.FINISHED_WITH_FAILURES and rollout.status() == "finished-with-failures"
        assert rollout.journal.unfinished(str(rollout.inventory.path)) is None
        fleet.nodes["esa03"].appliance.faults.clear()
        assert rollout.retry("esa03", who="dave") == "esa03: queued again"
        outcome = await asyncio.wait_for(rollout.run(), 120)  # the dashboard runs it again
        assert outcome == Outcome.COMPLETED and outcome.exit_code == 0 and rollout.status() == "completed"
        assert [(b.index, b.total, b.retries) for b in batches] == [
            (1, 3, False),
            (2, 3, False),
            (3, 3, False),
            (3, 3, True),
        ]
        assert rollout.batch_total == 3 and rollout.batch_index == 3
        assert fleet.nodes["esa03"].appliance.upgrades_done == [UP]
        assert [a.action for a in acted if a.who == "dave"] == ["retry"]
        kinds = [e.kind for e in rollout.journal.events()]
        assert kinds.count("batch-start") == 4 and kinds.count("batch-end") == 4 and "action" in kinds
        assert [len(b) for b in rollout.journal.batches()] == [1, 1, 1]
        last = rollout.journal.last_rollout(str(rollout.inventory.path))
        assert last is not None and last.outcome == "completed" and last.counts == {"done": 3}
    finally:
        await fleet.stop()


HOLDER = """
import sys, time
from pathlib import Path
from segtui.rollout.applock import ApplianceLocks
from segtui.settings import Deadlines, LockSettings, Settings
s = Settings().model_copy(update={"locks": LockSettings(dir=Path(sys.argv[1]))})
assert ApplianceLocks(s, "other").acquire("x", sys.argv[2], int(sys.argv[3])) is None
print("held", flush=True)
time.sleep(300)
"""


async def test_an_appliance_locked_by_another_process_is_left_alone(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 3, clusters=False)
    port = fleet.nodes["esa01"].port
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(tmp_path / "locks"), "127.0.0.1", str(port), stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None and (await holder.stdout.readline()).strip() == b"held"
        rollout = make_rollout(
            fleet,
            tmp_path,
            options=RolloutOptions(batch="100%", max_unavailable=3, max_fail="100%"),
            locks=lockdir(tmp_path),
        )
        outcome = await asyncio.wait_for(rollout.run(autostart=True), 120)
        assert outcome == Outcome.FINISHED_WITH_FAILURES
        rec = rollout.records["esa01"]
        assert rec.state == State.NEEDS_ATTENTION
        assert (rec.error or "").startswith(f"another segtui (pid {holder.pid}, ")
        a = fleet.nodes["esa01"].appliance
        assert a.upgrades_done == [] and not a.suspended and a.committed.listing == "cisco"  # nothing done
        assert all(fleet.nodes[n].appliance.upgrades_done == [UP] for n in ("esa02", "esa03"))
    finally:
        holder.kill()
        await holder.wait()
        await fleet.stop()


async def test_two_rollouts_with_different_state_dirs_share_the_fleet_safely(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 4, clusters=False)
    try:
        inventory = load_inventory(fleet.inventory_path)
        rollouts = []
        for who in ("a", "b"):
            settings = make_settings(tmp_path / who / "state", locks=lockdir(tmp_path))
            r = Rollout(
                inventory,
                settings,
                TARGET,
                Journal.in_dir(settings.state_dir),
                RolloutOptions(batch="100%", max_unavailable=4, max_fail="100%"),
                exit_on_pause=True,
            )
            r.begin()
            rollouts.append(r)
        outcomes = await asyncio.wait_for(asyncio.gather(*(r.run(autostart=True) for r in rollouts)), 120)
        assert set(outcomes) <= {Outcome.COMPLETED, Outcome.FINISHED_WITH_FAILURES}
        for name, node in fleet.nodes.items():
            assert node.appliance.upgrades_done == [UP], name  # exactly once
            states = [r.records[name].state for r in rollouts]
            assert State.DONE in states, (name, states)
            for r in rollouts:
                if r.records[name].state == State.NEEDS_ATTENTION:
                    assert f"another segtui (pid {os.getpid()}" in (r.records[name].error or "")
    finally:
        await fleet.stop()


async def test_the_window_closes_and_resume_finishes_the_rest(tmp_path: Path) -> None:
    fleet: SimFleet = await start_fleet(tmp_path, 4, clusters=False)
    try:
        rollout = make_rollout(
            fleet,
            tmp_path,
            options=RolloutOptions(batch="100%", max_unavailable=1, max_fail="0"),
            locks=lockdir(tmp_path),
        )
        # Before anything has finished, the estimate is the guess; then durations are learned.
        assert rollout.eta(time.time()) is None
        closing: list[float] = []

        def watch(ev: RolloutEvent) -> None:
            if isinstance(ev, ApplianceStateChanged) and ev.state == State.DONE and not closing:
                # The first appliance took d seconds: a window ending in d/2 fits nothing more.
                rec = rollout.records[ev.appliance]
                assert rec.started and rec.finished
                closing.append(time.time() + (rec.finished - rec.started) / 2)
                rollout.options.until = closing[0]

        rollout.subscribe(watch)
        outcome = await asyncio.wait_for(rollout.run(autostart=True), 120)
        assert outcome == Outcome.WINDOW_CLOSED and outcome.exit_code == 1
        assert re.fullmatch(r"window closes at \d\d:\d\d: \d appliances left for the next window", rollout.pause_reason)
        states = [r.state for r in rollout.records.values()]
        assert State.RUNNING not in states  # appliances under way finished
        done = states.count(State.DONE)
        assert 1 <= done < 4 and f": {4 - done} appliances left" in rollout.pause_reason
        eta = rollout.eta(time.time())
        assert eta is not None and eta > 0 and rollout.eta(time.time() + 100) == eta  # stopped while paused
        assert rollout.window_left(closing[0] + 5) == 0.0
        # the next window: resume continues with the rest
        found = rollout.journal.unfinished(str(rollout.inventory.path))
        assert found is not None
        again = Rollout(
            rollout.inventory,
            rollout.settings,
            TARGET,
            Journal.in_dir(rollout.settings.state_dir),
            RolloutOptions(batch="100%", max_unavailable=1, max_fail="0"),
            exit_on_pause=True,
        )
        again.attach(found[0])
        assert await asyncio.wait_for(again.run(autostart=True), 120) == Outcome.COMPLETED
        assert all(n.appliance.upgrades_done == [UP] for n in fleet.nodes.values())
    finally:
        await fleet.stop()


async def test_an_aborted_rollout_cut_short_is_made_safe_and_stays_aborted(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 4, clusters=False, faults={"esa01": {"drain-stuck"}})
    try:
        rollout = make_rollout(
            fleet, tmp_path, options=RolloutOptions(batch="1", max_unavailable=4), locks=lockdir(tmp_path)
        )
        task = asyncio.create_task(rollout.run(autostart=True))
        await until(lambda: rollout.records["esa01"].step == "drain", what="esa01 draining")
        a = fleet.nodes["esa01"].appliance
        assert a.suspended and a.committed.listing != "cisco"
        # the operator aborted, and segtui died before esa01 was made safe
        rollout.journal.action("abort", None, "erin@noc")
        rollout.journal.finish("aborted")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert a.suspended
        again = Rollout(
            rollout.inventory, rollout.settings, TARGET, Journal.in_dir(rollout.settings.state_dir), rollout.options
        )
        rid = rollout.journal.rollout_id or 0
        with pytest.raises(InputError, match="aborted by erin@noc"):
            again.attach(rid)
        again.attach(rid, who="erin@noc", make_safe=True)
        outcome = await asyncio.wait_for(again.run(autostart=True), 60)
        assert outcome == Outcome.ABORTED
        assert not a.suspended and a.committed.listing == "cisco" and a.upgrades_done == []
        assert again.records["esa01"].state == State.PENDING and again.records["esa01"].listeners == "active"
        for name in ("esa02", "esa03", "esa04"):  # nothing new started
            assert fleet.nodes[name].appliance.upgrades_done == [] and again.records[name].state == State.PENDING
        info = again.journal.rollout_info(rid)
        assert (
            info is not None
            and info.outcome == "aborted"
            and again.journal.unfinished(str(again.inventory.path)) is None
        )
    finally:
        await fleet.stop()
