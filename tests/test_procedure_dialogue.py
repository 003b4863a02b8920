"""Unknown questions are visible (recorded, noted; with `stop` the step fails cleanly) and the hard rule: the
upgrade is confirmed only to the target or the planned hop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from segtui.asyncos.versions import Version
from segtui.rollout.events import Note, State
from segtui.settings import DialogueSettings
from segtui.sim.shell import ApplianceShell
from tests.conftest import TARGET, start_fleet
from tests.procedure_helpers import Harness

QUESTION = "Do you want to notify the change board before suspending?"


@pytest.fixture
def extra_question(monkeypatch: pytest.MonkeyPatch) -> None:
    """suspendlistener asks one more question, after suspending, that no dialogue rule knows."""
    original: Callable[[ApplianceShell], Awaitable[None]] = ApplianceShell.cmd_suspend

    async def cmd_suspend(self: ApplianceShell) -> None:
        await original(self)
        await self.d.ask(("", QUESTION), "N")

    monkeypatch.setattr(ApplianceShell, "cmd_suspend", cmd_suspend)


@pytest.mark.usefixtures("extra_question")
async def test_unknown_question_takes_the_default_and_is_recorded(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 1, clusters=False)
    try:
        fleet.nodes["esa01"].appliance.version = (15, 5, 1, 55)
        h = Harness(fleet, tmp_path)
        assert await h.procedure("esa01").run() == State.DONE
        rec = h.rollout.journal.records()["esa01"]
        ours = [q for q in rec.unrecognized_questions if "notify the change board" in q["question"]]
        assert len(ours) == 1 and ours[0]["command"] == "suspendlistener" and ours[0]["ts"] > 0
        warnings = [n for n in h.of(Note, "esa01") if n.level == "warning" and "notify the change board" in n.text]
        assert warnings
    finally:
        await fleet.stop()


@pytest.mark.usefixtures("extra_question")
async def test_unknown_question_with_stop_fails_the_step_cleanly(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 1, clusters=False)
    try:
        a = fleet.nodes["esa01"].appliance
        a.version = (15, 5, 1, 55)
        h = Harness(fleet, tmp_path, dialogue=DialogueSettings(on_unknown_question="stop"))
        assert await h.procedure("esa01").run() == State.FAILED
        rec = h.rollout.records["esa01"]
        assert [q["command"] for q in rec.unrecognized_questions] == ["suspendlistener"]
        assert "notify the change board" in rec.unrecognized_questions[0]["question"]
        assert rec.error is not None and "suspendlistener" in rec.error
        # Cleanly: the listeners it had suspended are resumed, update settings put back, nothing upgraded.
        events = [what for name, what in fleet.events if name == "esa01" and what in ("suspended", "resumed")]
        assert events == ["suspended", "resumed"]
        assert not a.suspended and a.committed.images == "cisco" and a.upgrades_done == []
    finally:
        await fleet.stop()


async def test_allowed_versions_are_the_target_and_the_planned_hop(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 1, clusters=False)
    try:
        h = Harness(fleet, tmp_path)
        proc = h.procedure("esa01")
        hop = Version.parse("15.0.0-104")
        assert proc.allowed_versions() is None  # no plan: the driver's own rule between current and target
        h.ctx.expected_paths["esa01"] = [hop, TARGET]
        proc.rec.current = "14.2.1-015"
        assert proc.allowed_versions() == {hop, TARGET}
        proc.rec.current = "15.0.0-104"
        assert proc.allowed_versions() == {TARGET}
    finally:
        await fleet.stop()


async def test_an_offer_outside_the_plan_is_never_confirmed(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 1, clusters=False)
    try:
        a = fleet.nodes["esa01"].appliance
        a.version = (14, 2, 1, 15)  # offers only 15.0.0-104
        h = Harness(fleet, tmp_path)
        # The plan says 14.2.1 goes through 15.5.1: 15.0.0 is not ours to confirm.
        h.ctx.expected_paths["esa01"] = [Version.parse("15.5.1-055"), TARGET]
        assert await h.procedure("esa01").run() == State.FAILED
        assert a.upgrades_done == [] and a.version == (14, 2, 1, 15)
        assert not a.suspended and a.committed.images == "cisco"
    finally:
        await fleet.stop()
