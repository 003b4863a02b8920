"""Signs of another operator at work: refused as needs-attention before anything is changed; what this rollout's
own operator did (listeners suspended from segtui) is not a sign."""

from __future__ import annotations

from pathlib import Path

from segtui.rollout.events import State
from segtui.sim.fleet import SimFleet
from tests.conftest import start_fleet
from tests.procedure_helpers import Harness

READS = {"version", "status detail", "updateconfig"}


def changed_commands(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {k for k, v in after.items() if v != before.get(k, 0)}


async def _fleet(tmp_path: Path) -> SimFleet:
    fleet = await start_fleet(tmp_path, 2, clusters=False)
    for node in fleet.nodes.values():
        node.appliance.version = (15, 5, 1, 55)
    return fleet


async def test_listeners_suspended_by_someone_else_refused(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path)
    try:
        a = fleet.nodes["esa01"].appliance
        a.suspended = True  # someone suspended receiving by hand
        h = Harness(fleet, tmp_path)
        before = dict(a.command_counts)
        assert await h.procedure("esa01").run() == State.NEEDS_ATTENTION
        rec = h.rollout.records["esa01"]
        assert rec.error is not None and "another operator" in rec.error and "suspended" in rec.error
        assert rec.listeners == "suspended" and not rec.suspended_by_us  # the truth, and not ours to resume
        assert changed_commands(before, a.command_counts) <= READS
        assert a.suspended and a.upgrades_done == [] and a.committed.images == "cisco"
        # the other appliance is untouched by this and upgrades normally
        assert await h.procedure("esa02").run() == State.DONE
    finally:
        await fleet.stop()


async def test_update_settings_already_on_our_server_refused(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path)
    try:
        a = fleet.nodes["esa01"].appliance
        h = Harness(fleet, tmp_path)
        ours = h.ctx.local_upgrade_source(h.ctx.target)  # another run pointed it (at some manifest of ours)
        a.committed.images = ours.images
        a.committed.listing = ours.manifest
        before = dict(a.command_counts)
        assert await h.procedure("esa01").run() == State.NEEDS_ATTENTION
        rec = h.rollout.records["esa01"]
        assert rec.error is not None and "another operator" in rec.error and "update settings" in rec.error
        assert changed_commands(before, a.command_counts) <= READS
        assert not a.suspended and a.upgrades_done == [] and a.committed.listing == ours.manifest
        assert not rec.pointed and not rec.suspended_by_us
    finally:
        await fleet.stop()


async def test_suspended_by_this_rollouts_operator_is_not_a_sign(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path)
    try:
        a = fleet.nodes["esa01"].appliance
        a.suspended = True
        h = Harness(fleet, tmp_path)
        # The operator suspends them from segtui (the engine journals it) before the rollout reaches it.
        a.suspended = False
        assert await h.rollout.change_listeners(["esa01"], suspend=True) == {"esa01": "suspended"}
        assert a.suspended
        state = await h.procedure("esa01").run()
        assert state == State.DONE, h.rollout.records["esa01"].error
        assert a.version == (16, 0, 0, 123)
        assert a.suspended  # theirs: left suspended
        rec = h.rollout.records["esa01"]
        assert rec.suspended_elsewhere and not rec.suspended_by_us and rec.listeners == "suspended"
    finally:
        await fleet.stop()


async def test_an_upgrade_already_under_way_is_someone_elses(tmp_path: Path) -> None:
    fleet = await _fleet(tmp_path)
    try:
        a = fleet.nodes["esa01"].appliance
        a.upgrade_busy = True  # another operator's `upgrade` runs on it (not visible to a cheap pre-check)
        h = Harness(fleet, tmp_path)
        assert await h.procedure("esa01").run() == State.NEEDS_ATTENTION
        rec = h.rollout.records["esa01"]
        assert rec.error is not None and "another upgrade is under way" in rec.error
        # What we had done is undone: receiving again, update settings put back; not upgraded by us.
        assert not a.suspended and a.committed.images == "cisco" and a.upgrades_done == []
        assert not rec.suspended_by_us and not rec.pointed and rec.confirmed_upgrade_to is None
    finally:
        await fleet.stop()
