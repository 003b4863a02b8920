"""Helpers for the procedure tests: one appliance's procedure against the simulated fleet, events collected."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.events import RolloutEvent
from segtui.rollout.procedure import ApplianceProcedure
from segtui.sim.fleet import SimFleet
from tests.conftest import make_rollout


class Harness:
    """A rollout (for its context, journal and records) whose appliances are driven one procedure at a time."""

    def __init__(self, fleet: SimFleet, tmp_path: Path, **settings_update: Any) -> None:
        self.fleet = fleet
        self.rollout: Rollout = make_rollout(
            fleet, tmp_path, options=RolloutOptions(max_unavailable=3, max_fail="100%"), **settings_update
        )
        self.events: list[RolloutEvent] = []
        self.rollout.subscribe(self.events.append)
        self.ctx = self.rollout.ctx

    def procedure(self, name: str) -> ApplianceProcedure:
        return ApplianceProcedure(self.ctx, self.rollout.specs[name], self.rollout.records[name])

    def of(self, kind: type[Any], name: str | None = None) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and (name is None or e.appliance == name)]

    def commands(self, name: str) -> list[str]:
        return [c for _, c, _ in self.rollout.journal.commands_of(name)]

    def journal_dump(self) -> str:
        db = self.rollout.journal.db
        rows = [str(r) for table in ("appliances", "steps", "commands") for r in db.execute(f"SELECT * FROM {table}")]
        return "\n".join(rows)


async def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait on a condition (polled on the event loop), never on a fixed time."""
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)
