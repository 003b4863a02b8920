"""What the dashboard shows, folded from rollout events; cheap per event, read by the repaint timer."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from segtui.rollout.engine import Rollout
from segtui.rollout.events import (
    ApplianceStateChanged,
    BatchStarted,
    ListenersChanged,
    Note,
    RebootProbed,
    RolloutEvent,
    RolloutStateChanged,
    StagingChanged,
    State,
    StepFinished,
    StepStarted,
    UpgradeProgressed,
    WorkQueueDepth,
)

HISTORY = 120


@dataclass
class Row:
    name: str
    group: str
    cluster: str
    version: str
    state: str = "pending"
    listeners: str = "active"
    depth: int | None = None
    draining: bool = False
    percent: float = 0.0
    phase: str = ""
    started: float | None = None
    finished: float | None = None
    message: str = ""
    image: str = "-"  # staged, dl NN%, other, installed
    depth_history: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY))


@dataclass
class RebootStatus:
    since: float
    deadline: float
    stage: str
    attempts: int
    error: str | None


class FleetModel:
    def __init__(self, rollout: Rollout, clock: Callable[[], float] = time.time) -> None:
        self.rollout = rollout
        self.clock = clock
        self.rows: dict[str, Row] = {}
        for spec in rollout.inventory.appliances:
            rec = rollout.records.get(spec.name)
            row = Row(spec.name, spec.group, spec.cluster or "", rec.current if rec and rec.current else "?")
            if rec is not None:
                row.state = rec.state if rec.state != "running" else (rec.step or "running")
                row.listeners = rec.listeners
                row.message = rec.error or rec.message
            self.rows[spec.name] = row
        for name in rollout.ctx.staged:
            if name in self.rows:
                self.rows[name].image = "staged"
        self.dirty: set[str] = set(self.rows)
        self.reboots: dict[str, RebootStatus] = {}
        self.fleet_depth: deque[int] = deque(maxlen=HISTORY)
        self.batch = (0, rollout.batch_total)
        self.batch_members: tuple[str, ...] = ()
        self.log: deque[str] = deque(maxlen=200)
        self.events_seen = 0
        self.header_dirty = True
        rollout.subscribe(self.on_event)

    def on_event(self, event: RolloutEvent) -> None:
        """Called for every event: only bookkeeping here, never a widget call."""
        self.events_seen += 1
        name = getattr(event, "appliance", None)
        row = self.rows.get(name) if name else None
        if row is not None:
            self.dirty.add(row.name)
            rec = self.rollout.records.get(row.name)
            if rec is not None and rec.current:
                row.version = rec.current
        if isinstance(event, StepStarted) and row:
            row.state = event.step.value
            row.started = row.started or event.ts
            if event.step.value != "reboot":
                self.reboots.pop(row.name, None)
        elif isinstance(event, StepFinished) and row and not event.ok:
            row.message = event.message
        elif isinstance(event, ApplianceStateChanged) and row:
            if event.state != State.RUNNING:
                row.state = event.state.value
                row.finished = event.ts
                self.reboots.pop(row.name, None)
                row.draining = False
                if event.state == State.DONE:
                    row.percent = 100.0
            else:
                row.started = row.started or event.ts
            if event.version:
                row.version = event.version
            if event.error:
                row.message = event.error
            self.header_dirty = True
        elif isinstance(event, ListenersChanged) and row:
            row.listeners = event.listeners
        elif isinstance(event, WorkQueueDepth) and row:
            row.depth = event.depth
            row.draining = event.draining
            row.depth_history.append(event.depth)
        elif isinstance(event, UpgradeProgressed) and row:
            row.percent = event.percent
            row.phase = event.phase
            if event.line:
                row.message = event.line
        elif isinstance(event, StagingChanged) and row:
            row.image = {"staged": "staged", "other-image": "other", "not-staged": "-"}.get(
                event.status, f"dl {event.percent or 0}%"
            )
        elif isinstance(event, RebootProbed) and row:
            self.reboots[row.name] = RebootStatus(event.since, event.deadline, event.stage, event.attempt, event.error)
        elif isinstance(event, Note):
            self.log.append(f"{event.appliance or 'fleet'}: {event.text}")
            if row:
                row.message = event.text
        elif isinstance(event, BatchStarted):
            self.batch = (event.index, event.total)
            self.batch_members = event.appliances
            self.header_dirty = True
        elif isinstance(event, RolloutStateChanged):
            self.header_dirty = True
            self.log.append(f"rollout {event.state.value} {event.reason}".strip())

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def sample_fleet_depth(self) -> None:
        self.fleet_depth.append(sum(r.depth or 0 for r in self.rows.values()))

    def counts(self) -> dict[str, int]:
        c = {"done": 0, "in flight": 0, "failed": 0, "pending": 0, "needs-attention": 0, "skipped": 0}
        for row in self.rows.values():
            if row.state in ("done", "failed", "pending", "needs-attention", "skipped"):
                c[row.state] += 1
            else:
                c["in flight"] += 1
        return c

    def in_flight(self) -> list[Row]:
        final = {"done", "failed", "pending", "needs-attention", "skipped"}
        return [r for r in self.rows.values() if r.state not in final]

    def eta(self) -> float | None:
        """Seconds left, from the mean duration of finished appliances and the concurrency seen."""
        finished = [r for r in self.rows.values() if r.finished and r.started and r.state == "done"]
        started_at = self.rollout.started_at
        if not finished or not started_at:
            return None
        remaining = sum(
            1 for r in self.rows.values() if r.state not in ("done", "failed", "skipped", "needs-attention")
        )
        elapsed = self.clock() - started_at
        rate = len(finished) / max(elapsed, 1e-6)
        return remaining / rate if rate > 0 else None
