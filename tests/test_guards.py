"""Mail-flow guards: the capacity guard before an appliance goes out of service, the bake after it is back.

The verdict rules are checked on samples; the guard and the bake themselves over real SSH against the simulator.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from segtui.asyncos.parsers import StatusDetail
from segtui.rollout.events import (
    BakeFinished,
    BakeSampled,
    GuardTimedOut,
    GuardWaiting,
    Note,
    State,
    Step,
    StepStarted,
)
from segtui.rollout.guards import BakeSample, judge, peer_problem
from segtui.settings import GuardSettings
from segtui.sim.fleet import SimFleet
from tests.conftest import start_fleet
from tests.procedure_helpers import Harness, wait_for

MAX = 1000


def s(queue: int, received: int | None = None, completed: int | None = None, status: str = "Online") -> BakeSample:
    return BakeSample(t=0.0, status=status, queue=queue, received=received, completed=completed)


# --- verdicts ------------------------------------------------------------------------------------------------


def test_bake_passes_when_mail_moves() -> None:
    samples = [s(120, 1000, 900), s(130, 1100, 1010), s(110, 1200, 1105)]
    assert judge(samples, MAX, final=False) is None
    verdict = judge(samples, MAX, final=True)
    assert verdict is not None and verdict[0] == "passed"


def test_bake_without_traffic_says_so() -> None:
    verdict = judge([s(0, 500, 500), s(0, 500, 500)], MAX, final=True)
    assert verdict is not None and verdict[0] == "no-traffic" and "no traffic to judge" in verdict[1]


def test_bake_fails_when_counters_stand_still_while_mail_arrives() -> None:
    verdict = judge([s(10, 1000, 900), s(40, 1300, 900)], MAX, final=True)
    assert verdict is not None and verdict[0] == "failed"
    # the evidence: first and last samples
    assert "first: Online, queue 10" in verdict[1] and "last: Online, queue 40" in verdict[1]


def test_bake_fails_at_once_when_the_queue_keeps_growing_past_the_threshold() -> None:
    samples = [s(900), s(1100), s(1400), s(1800)]
    verdict = judge(samples, MAX, final=False)
    assert verdict is not None and verdict[0] == "failed" and "keeps growing" in verdict[1]
    # a queue that hovers at a level above the threshold is not growing
    assert judge([s(1372), s(1384), s(1361), s(1379)], MAX, final=False) is None


def test_bake_fails_when_the_system_leaves_online() -> None:
    verdict = judge([s(10), s(10, status="Receiving Suspended")], MAX, final=False)
    assert verdict is not None and verdict[0] == "failed" and "Receiving Suspended" in verdict[1]


def test_peer_problems_name_the_peer_and_the_numbers() -> None:
    assert peer_problem("gw7", StatusDetail("Online", 12340), 5000) == "gw7 work queue 12,340 > 5,000"
    assert peer_problem("gw7", StatusDetail("Resource Conservation", 3), 5000) is not None
    assert peer_problem("gw7", StatusDetail("Online", 4999), 5000) is None


# --- over SSH --------------------------------------------------------------------------------------------------


def peers_of(h: Harness) -> None:
    """Every other appliance of the group is in service (what the engine knows)."""
    specs = h.rollout.specs

    def peers(name: str) -> list:  # type: ignore[type-arg]
        return [p for n, p in specs.items() if n != name and p.group == specs[name].group]

    h.ctx.in_service_peers = peers


async def _fleet(tmp_path: Path, faults: dict[str, set[str]] | None = None) -> SimFleet:
    # esa01 and esa03 are in dc1, esa02 in dc2; the simulator's traffic model moves mail in each group.
    fleet = await start_fleet(tmp_path, 3, faults=faults, clusters=False)
    for node in fleet.nodes.values():
        node.appliance.version = (15, 5, 1, 55)
    return fleet


def relieve(fleet: SimFleet, name: str) -> None:
    """The overloaded peer recovers: its queue drains at its own delivery rate."""
    fleet.nodes[name].appliance.faults.discard("peer-overload")


async def test_guard_waits_on_a_backed_up_peer_and_proceeds_when_it_drains(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path, {"esa03": {"peer-overload"}})
    try:
        h = Harness(fleet, tmp_path, guards=GuardSettings(wait=120, bake=0))
        peers_of(h)
        task = asyncio.create_task(h.procedure("esa01").run())
        await wait_for(lambda: bool(h.of(GuardWaiting, "esa01")))
        waiting = h.of(GuardWaiting, "esa01")[0]
        assert re.fullmatch(r"esa03 work queue 1\d,\d{3} > 5,000", waiting.reason), waiting.reason
        rec = h.rollout.records["esa01"]
        assert rec.guard_waits and rec.guard_waits[0]["outcome"] == "waiting"
        assert h.rollout.journal.records()["esa01"].message.startswith("waiting: esa03")
        # Not out of service while it waits.
        assert not fleet.nodes["esa01"].appliance.suspended and not rec.suspended_by_us
        relieve(fleet, "esa03")
        assert await asyncio.wait_for(task, 60) == State.DONE
        assert rec.guard_waits[0]["outcome"] == "passed" and rec.guard_waits[0]["until"] is not None
        steps = [e.step for e in h.of(StepStarted, "esa01")]
        assert steps.index(Step.GUARD) < steps.index(Step.SUSPEND)
    finally:
        await fleet.stop()


async def test_guard_past_its_wait_puts_the_appliance_back_to_pending(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path, {"esa03": {"peer-overload"}})
    try:
        h = Harness(fleet, tmp_path, guards=GuardSettings(wait=1.0, bake=0))
        peers_of(h)
        assert await h.procedure("esa01").run() == State.PENDING
        timed_out = h.of(GuardTimedOut, "esa01")
        assert timed_out and "esa03 work queue" in timed_out[0].reason
        rec = h.rollout.records["esa01"]
        assert rec.guard_waits[-1]["outcome"] == "timed-out"
        a = fleet.nodes["esa01"].appliance
        # Nothing left changed: never suspended, update settings put back.
        assert not a.suspended and a.upgrades_done == []
        assert a.committed.images == "cisco" and not rec.pointed
        assert "suspendlistener" not in a.command_counts
    finally:
        await fleet.stop()


async def test_override_lets_a_waiting_guard_pass(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path, {"esa03": {"peer-overload"}})
    try:
        h = Harness(fleet, tmp_path, guards=GuardSettings(wait=120, bake=0))
        peers_of(h)
        proc = h.procedure("esa01")
        assert not proc.override_guard()  # nothing waits yet
        task = asyncio.create_task(proc.run())
        await wait_for(lambda: bool(h.of(GuardWaiting, "esa01")))
        assert proc.override_guard()
        assert await asyncio.wait_for(task, 60) == State.DONE
        assert h.rollout.records["esa01"].guard_waits[-1]["outcome"] == "overridden"
    finally:
        await fleet.stop()


async def test_a_group_of_one_has_no_peers_to_check(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path, {"esa01": {"peer-overload"}})  # dc1: not esa02's peer
    try:
        h = Harness(fleet, tmp_path, guards=GuardSettings(bake=0))
        peers_of(h)
        assert await h.procedure("esa02").run() == State.DONE
        assert h.rollout.records["esa02"].guard_waits == []
        assert not h.of(GuardWaiting, "esa02")
    finally:
        await fleet.stop()


async def test_bake_passes_on_a_healthy_appliance(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path)
    try:
        h = Harness(fleet, tmp_path, guards=GuardSettings(bake=1.0))
        assert await h.procedure("esa01").run() == State.DONE
        rec = h.rollout.records["esa01"]
        # The simulator's group moves mail: its counters rise, its queue stays low.
        assert rec.bake is not None
        assert rec.bake["verdict"] == "passed", rec.bake["message"]
        assert len(rec.bake["samples"]) >= 2
        assert h.of(BakeFinished, "esa01")[0].verdict == rec.bake["verdict"]
        sampled = h.of(BakeSampled, "esa01")
        assert sampled and sampled[-1].sample.startswith("Online, queue") and sampled[-1].until > sampled[0].ts
        steps = [e.step for e in h.of(StepStarted, "esa01")]
        assert steps[-1] == Step.BAKE and steps.index(Step.RESTORE) < steps.index(Step.BAKE)
        assert not h.rollout.needs_a_person()  # a bake that ran to its verdict leaves nothing for a person
    finally:
        await fleet.stop()


async def test_bake_fails_when_the_queue_keeps_growing(tmp_path: Path) -> None:
    # bake-fail: back on the new version it accepts mail and delivers none, so its queue climbs.
    fleet = await _fleet(tmp_path, {"esa01": {"bake-fail"}})
    try:
        h = Harness(fleet, tmp_path, guards=GuardSettings(bake=20.0))
        a = fleet.nodes["esa01"].appliance
        assert await h.procedure("esa01").run() == State.FAILED
        rec = h.rollout.records["esa01"]
        assert rec.bake is not None and rec.bake["verdict"] == "failed"
        assert rec.error is not None and "bake failed" in rec.error and "first:" in rec.error and "last:" in rec.error
        # Left in service: upgraded, receiving, settings restored.
        assert a.version == (16, 0, 0, 123) and not a.suspended and a.committed.images == "cisco"
        assert rec.listeners == "active"
        # the other appliances are untouched
        assert fleet.nodes["esa02"].appliance.upgrades_done == [] and not fleet.nodes["esa02"].appliance.suspended
    finally:
        await fleet.stop()


async def test_a_bake_whose_appliance_stops_answering_fails_with_the_reason(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path)
    try:
        h = Harness(fleet, tmp_path, guards=GuardSettings(bake=600.0))
        task = asyncio.create_task(h.procedure("esa01").run())
        await wait_for(lambda: len(h.of(BakeSampled, "esa01")) >= 2, 60)
        await fleet.nodes["esa01"].stop()  # gone mid-bake: its kept session and any new login fail
        assert await asyncio.wait_for(task, 60) == State.FAILED
        rec = h.rollout.records["esa01"]
        assert rec.error is not None and "bake: the appliance stopped answering (esa01 unreachable:" in rec.error
        assert rec.bake is None or rec.bake.get("verdict") != "passed"
    finally:
        await fleet.stop()


async def test_abort_during_a_bake_ends_it_skipped_and_done(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path)
    try:
        from segtui.rollout.procedure import Aborted

        h = Harness(fleet, tmp_path, guards=GuardSettings(bake=600.0))
        proc = h.procedure("esa01")
        task = asyncio.create_task(proc.run())
        await wait_for(lambda: any(e.step == Step.BAKE for e in h.of(StepStarted, "esa01")), 60)
        assert proc.request_stop(Aborted(State.PENDING, "aborted by operator before its upgrade"))
        assert await asyncio.wait_for(task, 10) == State.DONE
        rec = h.rollout.records["esa01"]
        assert rec.bake is not None and rec.bake["verdict"] == "skipped"
        assert not fleet.nodes["esa01"].appliance.suspended
    finally:
        await fleet.stop()


async def test_pause_during_a_bake_ends_it_skipped_and_done(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path)
    try:
        from segtui.rollout.procedure import ApplianceProcedure

        h = Harness(fleet, tmp_path, guards=GuardSettings(bake=600.0))
        unpaused = asyncio.Event()
        unpaused.set()
        proc = ApplianceProcedure(h.ctx, h.rollout.specs["esa01"], h.rollout.records["esa01"], unpaused=unpaused)
        task = asyncio.create_task(proc.run())
        await wait_for(lambda: any(e.step == Step.BAKE for e in h.of(StepStarted, "esa01")), 60)
        unpaused.clear()  # the operator pauses the rollout: the appliance is in service already
        assert await asyncio.wait_for(task, 10) == State.DONE
        rec = h.rollout.records["esa01"]
        assert rec.bake is not None and rec.bake["verdict"] == "skipped" and "paused" in rec.bake["message"]
        # Done, but its mail flow was never judged: the end-of-rollout summary says so, with what to look at.
        left = [h for h in h.rollout.needs_a_person() if h.appliance == "esa01"]
        assert len(left) == 1 and left[0].what.startswith("mail flow not verified: bake stopped"), left
        assert "status detail" in left[0].command
        # The verdict is said once (BakeFinished), not again as a note.
        assert len(h.of(BakeFinished, "esa01")) == 1
        assert not [e for e in h.events if isinstance(e, Note) and "bake" in e.text], h.events
    finally:
        await fleet.stop()


async def test_give_up_while_a_guard_waits(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path, {"esa03": {"peer-overload"}})
    try:
        h = Harness(fleet, tmp_path, guards=GuardSettings(wait=120, bake=0))
        peers_of(h)
        proc = h.procedure("esa01")
        task = asyncio.create_task(proc.run())
        await wait_for(lambda: bool(h.of(GuardWaiting, "esa01")))
        assert proc.give_up("peers will not recover tonight")
        assert await asyncio.wait_for(task, 10) == State.NEEDS_ATTENTION
        rec = h.rollout.records["esa01"]
        # Left as it is, and said so: never suspended; its update settings still point at the local server.
        assert not fleet.nodes["esa01"].appliance.suspended and rec.pointed
        assert "updateconfig" in rec.left_by_hand and "resumelistener" not in rec.left_by_hand
        assert rec.guard_waits[-1]["outcome"] == "stopped"
    finally:
        await fleet.stop()


async def test_peer_readings_are_shared_and_keep_their_session(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path)
    try:
        h = Harness(fleet, tmp_path)
        spec = h.rollout.specs["esa02"]
        first, second = await asyncio.gather(h.ctx.peers.read(spec), h.ctx.peers.read(spec))
        assert not isinstance(first, str) and first is second  # one reading for both guards
        client = h.ctx.peers._clients["esa02"]
        await h.ctx.peers.close()  # forgets the reading; the next one opens a session again
        assert h.ctx.peers._clients == {}
        third = await h.ctx.peers.read(spec)
        assert not isinstance(third, str) and h.ctx.peers._clients["esa02"] is not client
        fresh = h.ctx.peers._clients["esa02"]
        # A kept session that died meanwhile (the appliance's idle timeout): the reading tries once more, anew.
        session = await fresh.session()
        await session.close()
        h.ctx.peers._readings.clear()  # not within the polling interval any more
        again = await h.ctx.peers.read(spec)
        assert not isinstance(again, str), again
        assert h.ctx.peers._clients["esa02"] is not fresh
        fresh = h.ctx.peers._clients["esa02"]
        await h.ctx.peers.keep_only({"esa02"})
        assert h.ctx.peers._clients == {"esa02": fresh}  # kept while it is a peer to read
        await h.ctx.peers.keep_only(set())
        assert h.ctx.peers._clients == {}  # closed once it is out of service itself
        assert h.commands("esa02") == []  # peer readings are not the appliance's transcript
    finally:
        await h.ctx.peers.close()
        await fleet.stop()
