"""A way past every stuck state: give up (also mid-reboot), re-probe and continue from the truth, reboot
deadlines that survive a restart of segtui."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from segtui.rollout.events import ApplianceStateChanged, State, Step, StepStarted
from tests.conftest import start_fleet
from tests.procedure_helpers import Harness, wait_for

TARGET_SIM = (16, 0, 0, 123)


async def test_give_up_on_a_hung_reboot_then_reprobe(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, faults={"esa01": {"reboot-hang"}}, clusters=False)
    try:
        node = fleet.nodes["esa01"]
        a = node.appliance
        a.version = (15, 5, 1, 55)
        # A reboot deadline far beyond the test: only the give-up can end the wait.
        h = Harness(fleet, tmp_path)
        h.ctx.settings = h.ctx.settings.model_copy(
            update={"deadlines": h.ctx.settings.deadlines.model_copy(update={"reboot": 3600.0})}
        )
        proc = h.procedure("esa01")
        task = asyncio.create_task(proc.run())
        await wait_for(lambda: any(e.step == Step.REBOOT for e in h.of(StepStarted, "esa01")))
        began = time.monotonic()
        assert proc.give_up("operator gave up on the hung reboot")
        state = await asyncio.wait_for(task, 10)
        assert time.monotonic() - began < 5
        assert state == State.NEEDS_ATTENTION
        rec = h.rollout.records["esa01"]
        assert rec.state == State.NEEDS_ATTENTION
        # What is left to do by hand, with the commands, naming the appliance by its own name.
        assert "resumelistener" in rec.left_by_hand and "updateconfig" in rec.left_by_hand
        assert a.hostname in rec.left_by_hand and "16.0.0-123" in rec.left_by_hand
        assert rec.error is not None and "operator gave up" in rec.error
        assert h.rollout.journal.records()["esa01"].left_by_hand == rec.left_by_hand
        assert not proc.give_up("again")  # finished: nothing to give up

        await wait_for(lambda: a.state == "down")  # the simulated reboot hangs after installing
        # A person brings the appliance back; re-probe continues from the truth: on the target, so it resumes
        # the listeners and puts the settings back, without a second upgrade.
        assert a.version == TARGET_SIM and a.suspended and a.committed.images != "cisco"
        a.faults.discard("reboot-hang")
        await node.start()
        # ... two hours later: the journaled reboot deadline has long passed; the re-probe reads the truth.
        assert rec.reboot_started is not None
        rec.reboot_started -= 7200
        rec.reprobe = True
        rec.state = State.PENDING
        assert await h.procedure("esa01").run() == State.DONE
        assert not rec.reprobe and rec.left_by_hand == ""
        assert not a.suspended and a.committed.images == "cisco" and a.committed.listing == "cisco"
        assert a.upgrades_done == [TARGET_SIM]
        assert rec.current == "16.0.0-123" and rec.confirmed_upgrade_to is None
    finally:
        await fleet.stop()


async def test_reprobe_of_an_appliance_given_up_before_its_upgrade_retries(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, faults={"esa01": {"drain-stuck"}}, clusters=False)
    try:
        a = fleet.nodes["esa01"].appliance
        a.version = (15, 5, 1, 55)
        h = Harness(fleet, tmp_path)
        proc = h.procedure("esa01")
        task = asyncio.create_task(proc.run())
        await wait_for(lambda: any(e.step == Step.DRAIN for e in h.of(StepStarted, "esa01")))
        assert proc.give_up("drain will not finish")
        assert await asyncio.wait_for(task, 10) == State.NEEDS_ATTENTION
        rec = h.rollout.records["esa01"]
        # Given up means left as it is: still suspended, still pointed, and the note says how to undo it.
        assert a.suspended and a.committed.images != "cisco"
        assert "resumelistener" in rec.left_by_hand and "confirmed" not in rec.left_by_hand
        # The operator fixes the stuck queue and re-probes: the procedure picks up where the truth is.
        a.faults.discard("drain-stuck")
        rec.reprobe = True
        rec.state = State.PENDING
        assert await h.procedure("esa01").run() == State.DONE
        assert a.version == TARGET_SIM and a.upgrades_done == [TARGET_SIM]
        assert not a.suspended and a.committed.images == "cisco"
    finally:
        await fleet.stop()


async def test_reboot_deadline_counts_from_the_journaled_confirmation(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 1, faults={"esa01": {"reboot-hang"}}, clusters=False)
    try:
        a = fleet.nodes["esa01"].appliance
        a.version = (15, 5, 1, 55)
        h = Harness(fleet, tmp_path)
        deadline = h.ctx.settings.deadlines.reboot
        proc = h.procedure("esa01")
        task = asyncio.create_task(proc.run())
        await wait_for(lambda: any(e.step == Step.REBOOT for e in h.of(StepStarted, "esa01")))
        # segtui stops mid-reboot (the journal keeps the confirmation and when it happened) ...
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        rec = h.rollout.journal.records()["esa01"]
        assert rec.confirmed_upgrade_to == "16.0.0-123" and rec.reboot_started is not None
        # ... and comes back most of a deadline later: the wait is what is left, not a new deadline.
        rec.reboot_started -= deadline - 1.0
        h.rollout.records["esa01"] = rec
        began = time.monotonic()
        assert await h.procedure("esa01").run() == State.NEEDS_ATTENTION
        assert time.monotonic() - began < deadline / 2
        assert rec.error is not None and "did not come back" in rec.error
        states = [e.state for e in h.of(ApplianceStateChanged, "esa01")]
        assert states[-1] == State.NEEDS_ATTENTION
    finally:
        await fleet.stop()
