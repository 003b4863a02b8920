"""Turns for the short steps (rollout/turns.py): a large batch serves its longest procedures first, the wait for a
turn is never counted against a step's deadline, and an abort stops it like any step."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from segtui.asyncos.versions import Version
from segtui.rollout.events import Note, State, Step, StepFinished, StepStarted, UpgradeProgressed
from segtui.rollout.procedure import Aborted, ApplianceProcedure
from segtui.rollout.turns import Turns
from tests.conftest import TARGET, start_fleet
from tests.procedure_helpers import Harness, wait_for

HOP = Version.parse("15.5.1-055")


@pytest.fixture
async def one(tmp_path: Path) -> AsyncIterator[Harness]:
    """One simulated appliance, and a single turn for the test to hold or hand out."""
    fleet = await start_fleet(tmp_path, 1, clusters=False)
    h = Harness(fleet, tmp_path)
    h.ctx.turns = Turns(1)
    yield h
    await fleet.stop()


async def test_waiters_are_served_by_priority_then_in_order_of_arrival() -> None:
    turns = Turns(1)
    await turns.acquire((0,))
    served: list[str] = []

    async def want(tag: str, priority: tuple[int, ...]) -> None:
        await turns.acquire(priority)
        served.append(tag)

    tasks = [asyncio.create_task(want(t, p)) for t, p in (("a", (1, 1)), ("b", (2, 0)), ("c", (1, 1)), ("d", (1, 2)))]
    await wait_for(lambda: turns.waiting == 4)
    for n in range(4):
        turns.release()
        await wait_for(lambda n=n: len(served) == n + 1)  # type: ignore[misc]
    assert served == ["b", "d", "a", "c"]
    await asyncio.gather(*tasks)
    assert turns.held == 1


async def test_a_cancelled_waiter_neither_keeps_nor_loses_a_turn() -> None:
    turns = Turns(2)
    await turns.acquire((0,))
    await turns.acquire((0,))
    gone = asyncio.create_task(turns.acquire((5,)))
    after = asyncio.create_task(turns.acquire((1,)))
    await wait_for(lambda: turns.waiting == 2)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    turns.release()
    await asyncio.wait_for(after, 5)  # the cancelled waiter's place went to the next one
    assert turns.held == 2 and turns.waiting == 0
    # Given its turn and cancelled before it ran: the turn is passed on, not lost.
    late = asyncio.create_task(turns.acquire((0,)))
    await wait_for(lambda: turns.waiting == 1)
    turns.release()
    late.cancel()
    await asyncio.gather(late, return_exceptions=True)
    assert turns.held == 1
    await asyncio.wait_for(turns.acquire((0,)), 5)
    assert turns.held == 2


async def test_the_appliance_with_more_upgrades_ahead_takes_the_next_turn(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, clusters=False)
    try:
        h = Harness(fleet, tmp_path)
        h.ctx.turns = Turns(1)
        h.ctx.expected_paths = {"esa01": [TARGET], "esa02": [HOP, TARGET]}
        await h.ctx.turns.acquire((0,))  # the test holds the only turn
        single = asyncio.create_task(h.procedure("esa01").run())
        await wait_for(lambda: h.ctx.turns.waiting == 1)
        hop = asyncio.create_task(h.procedure("esa02").run())  # arrives second
        await wait_for(lambda: h.ctx.turns.waiting == 2)
        h.ctx.turns.release()
        await wait_for(lambda: len([e for e in h.of(StepFinished) if e.step == Step.PRECHECK]) == 2)
        order = [e.appliance for e in h.of(StepFinished) if e.step == Step.PRECHECK]
        assert order == ["esa02", "esa01"]
        for task in (single, hop):
            task.cancel()
        await asyncio.gather(single, hop, return_exceptions=True)
    finally:
        await fleet.stop()


async def test_the_critical_path_keeps_its_priority_to_the_end(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, clusters=False)
    try:
        h = Harness(fleet, tmp_path)
        h.ctx.expected_paths = {"esa01": [TARGET], "esa02": [HOP, TARGET]}
        single, hop = h.procedure("esa01"), h.procedure("esa02")
        assert hop.turn_priority() > single.turn_priority()  # before either is read: the whole path
        hop.rec.current = str(HOP)
        assert hop.turn_priority() == (0, 1, 2) and single.turn_priority() == (0, 1, 1)  # one upgrade each ahead
        single.rec.current = hop.rec.current = str(TARGET)
        # Both done upgrading (restore ahead): the one that needed a hop is still the one waited for.
        assert hop.turn_priority() == (0, 0, 2) > single.turn_priority() == (0, 0, 1)
        # Out of service (back from its reboot, to verify): before anything that only starts work.
        single.rec.suspended_by_us = True
        assert single.turn_priority() > hop.turn_priority() and single.turn_priority() > (0, 2, 2)
        # No plan for an appliance, or a version that does not parse: one upgrade, or the whole path, assumed.
        single.rec.suspended_by_us = False
        hop.rec.current = "garbled"
        assert hop.turn_priority() == (0, 2, 2)
        h.ctx.expected_paths = {}
        assert single.turn_priority() == (0, 1, 1)
    finally:
        await fleet.stop()


async def test_waiting_for_a_turn_is_not_counted_against_the_step_deadline(one: Harness) -> None:
    h = one
    deadline = 2.0
    h.ctx.settings.deadlines.precheck = deadline
    await h.ctx.turns.acquire((0,))
    task = asyncio.create_task(h.procedure("esa01").run())
    await wait_for(lambda: h.ctx.turns.waiting == 1)
    # The screen says why the step does not move.
    assert h.of(UpgradeProgressed, "esa01")[-1].phase == "precheck: waiting for a turn (1 in line)"
    held_until = time.monotonic() + deadline * 1.5
    while time.monotonic() < held_until:  # segtui's own queue, longer than the deadline
        await asyncio.sleep(0.05)
        assert not task.done()
    h.ctx.turns.release()
    await wait_for(lambda: any(e.step == Step.PRECHECK for e in h.of(StepFinished, "esa01")))
    precheck = next(e for e in h.of(StepFinished, "esa01") if e.step == Step.PRECHECK)
    assert precheck.ok, precheck.message
    assert not any("waiting" in e.phase for e in h.of(UpgradeProgressed, "esa01")[-2:])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_an_abort_stops_the_wait_for_a_turn_and_leaves_the_turns_whole(one: Harness) -> None:
    h = one
    await h.ctx.turns.acquire((0,))
    proc = h.procedure("esa01")
    task = asyncio.create_task(proc.run())
    await wait_for(lambda: h.ctx.turns.waiting == 1)
    assert proc.request_stop(Aborted(State.PENDING, "aborted by operator before its upgrade"))
    assert await asyncio.wait_for(task, 10) == State.PENDING
    assert h.ctx.turns.held == 1 and h.ctx.turns.waiting == 0
    assert h.commands("esa01") == []  # nothing was said to the appliance


async def test_bringing_an_appliance_back_into_service_never_waits_for_a_turn(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 1, faults={"esa01": {"drain-stuck"}}, clusters=False)
    try:
        a = fleet.nodes["esa01"].appliance
        h = Harness(fleet, tmp_path)
        h.ctx.turns = Turns(1)
        proc = h.procedure("esa01")
        task = asyncio.create_task(proc.run())
        await wait_for(lambda: any(e.step == Step.DRAIN for e in h.of(StepStarted, "esa01")))
        assert a.suspended
        await h.ctx.turns.acquire((0,))  # every turn taken, as in a large batch's burst
        assert proc.request_stop(Aborted(State.PENDING, "aborted by operator before its upgrade"))
        await wait_for(lambda: not a.suspended)  # resumed at once
        await wait_for(lambda: h.ctx.turns.waiting == 1)  # putting the settings back waits its turn
        assert a.committed.images != "cisco"
        h.ctx.turns.release()
        assert await asyncio.wait_for(task, 10) == State.PENDING
        assert a.committed.images == "cisco"
    finally:
        await fleet.stop()


async def test_a_pause_while_waiting_for_a_turn_holds_the_step_when_the_turn_comes(one: Harness) -> None:
    """The wait can be long: a pause that came meanwhile applies before the step acts, and the turn goes on."""
    h, turns = one, one.ctx.turns
    unpaused = asyncio.Event()
    unpaused.set()
    proc = ApplianceProcedure(h.ctx, h.rollout.specs["esa01"], h.rollout.records["esa01"], unpaused=unpaused)
    await turns.acquire((9,))
    task = asyncio.create_task(proc.run())
    await wait_for(lambda: turns.waiting == 1)  # its pre-check waits
    turns.release()  # the pre-check runs ...
    ahead = asyncio.create_task(turns.acquire((9,)))  # ... and the test is next in line, before its backup
    await wait_for(lambda: ahead.done() and turns.waiting == 1)
    assert [e.step for e in h.of(StepStarted, "esa01")][-1] == Step.BACKUP
    unpaused.clear()  # the operator pauses while the backup waits for its turn
    turns.release()
    await wait_for(lambda: any("paused before backup" in e.text for e in h.of(Note, "esa01")))
    assert not [c for c in h.commands("esa01") if c.startswith("saveconfig")]  # it did not act
    assert turns.held == 0  # and a held step does not keep its turn
    unpaused.set()
    assert await asyncio.wait_for(task, 60) == State.DONE
    assert any(c.startswith("saveconfig") for c in h.commands("esa01"))


async def test_a_turn_that_comes_as_the_procedure_is_cancelled_is_passed_on(one: Harness) -> None:
    turns = one.ctx.turns
    await turns.acquire((9,))
    task = asyncio.create_task(one.procedure("esa01").run())
    await wait_for(lambda: turns.waiting == 1)
    turns.release()
    await asyncio.sleep(0)  # the turn reaches the waiting step ...
    task.cancel()  # ... as segtui shuts down
    await asyncio.gather(task, return_exceptions=True)
    assert turns.held == 0 and turns.free
