"""What the dashboard shows, folded from rollout events; cheap per event, read by the repaint timer.

Every cell is derived from the latest known state of its appliance: the message of a finished appliance is its
outcome, the progress follows the state, a work-queue reading carries its age. Nothing here touches a widget.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import median

from segtui.rollout.engine import Rollout
from segtui.rollout.events import (
    FINAL_STATES,
    STEP_SPAN,
    ApplianceStateChanged,
    BatchFinished,
    BatchStarted,
    ListenersChanged,
    Note,
    RebootProbed,
    RolloutEvent,
    RolloutState,
    RolloutStateChanged,
    StagingChanged,
    State,
    Step,
    StepFinished,
    StepStarted,
    UpgradeProgressed,
    WorkQueueDepth,
)
from segtui.rollout.journal import ApplianceRecord
from segtui.textsafe import one_line

HISTORY = 120
FINAL = frozenset(s.value for s in FINAL_STATES)
LOG_SIZE = 2000
# Steps the mail-flow guards add (issue 15); written as strings so the dashboard needs no newer engine.
GUARD_STEP = "guard"
BAKE_STEP = "bake"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}:{seconds % 60:02d}"


def fmt_age(seconds: float) -> str:
    """`12s`, `5m`, `2h`: the age of a reading, short enough for a table cell."""
    s = int(seconds)
    return f"{s}s" if s < 60 else (f"{s // 60}m" if s < 3600 else f"{s // 3600}h")


def fmt_took(seconds: float) -> str:
    """`6m12s`, `48s`, `1h02m`: for outcomes."""
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


@dataclass
class Row:
    name: str
    group: str
    cluster: str
    host: str = ""
    port: int = 22
    version: str | None = None  # the version last read (survey, journal or event); None: not known
    version_before: str | None = None
    state: str = "pending"  # a final state, `pending`, or the step under way
    listeners: str = "active"
    depth: int | None = None
    depth_ts: float | None = None
    draining: bool = False
    percent: float = 0.0
    phase: str = ""
    started: float | None = None
    finished: float | None = None
    message: str = ""  # the latest line while under way
    error: str | None = None
    image: str = "-"  # staged, dl NN%, other, installed
    unreachable: str | None = None  # why the survey could not read it
    system_status: str = ""
    serial: str | None = None
    hostname: str | None = None
    guard_reason: str = ""
    bake_until: float | None = None
    bake_sample: str = ""
    batch: int | None = None
    depth_history: deque[int] = field(default_factory=lambda: deque(maxlen=HISTORY))

    @property
    def final(self) -> bool:
        return self.state in FINAL

    @property
    def in_flight(self) -> bool:
        return not self.final and self.state != "pending"


@dataclass(frozen=True)
class LogEntry:
    ts: float
    kind: str  # state, failure, rollout, batch, operator, note, guard, listeners
    text: str
    appliance: str | None = None
    level: str = "info"  # info, warning, error

    def line(self) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.ts))
        who = self.appliance or "fleet"
        return f"{stamp} {self.kind:<9} {who:<10} {self.text}"


@dataclass
class BatchInfo:
    index: int
    members: tuple[str, ...]
    started: float
    finished: float | None = None
    failures: int | None = None
    retries: bool = False  # the final pass of retried appliances


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
        self.reboots: dict[str, RebootStatus] = {}
        for spec in rollout.inventory.appliances:
            row = Row(spec.name, spec.group, spec.cluster or "", host=spec.host, port=spec.port)
            rec = rollout.records.get(spec.name)
            if rec is not None:
                self.apply_record(row, rec)
            self.rows[spec.name] = row
        for name in rollout.ctx.staged:
            if name in self.rows and self.rows[name].image == "-":
                self.rows[name].image = "staged"
        self.dirty: set[str] = set(self.rows)
        self.fleet_depth: deque[int] = deque(maxlen=HISTORY)
        self.batch = (rollout.batch_index, rollout.batch_total)
        self.batch_members: tuple[str, ...] = ()
        self.batches: list[BatchInfo] = []
        self.log: deque[LogEntry] = deque(maxlen=LOG_SIZE)
        self.log_version = 0
        self.events_seen = 0
        self.header_dirty = True
        self.paused_since: float | None = None
        self.bell_pending = 0
        self.survey_running = False
        self.external_log = False
        rollout.subscribe(self.on_event)

    # --- state of one appliance ---------------------------------------------------------------------
    @staticmethod
    def _version(row: Row, rec: ApplianceRecord) -> str | None:
        """The record's version, unless it has none yet (then what the survey read). An appliance that stopped with
        an upgrade confirmed and never seen back shows `?`: it runs one version or the other, nobody knows which."""
        if rec.current is not None and rec.known_version is None:
            return None
        return rec.current or row.version

    def apply_record(self, row: Row, rec: ApplianceRecord) -> None:
        """The journal's record is the latest known truth for a resumed (or watched) appliance."""
        row.version = self._version(row, rec)
        row.version_before = rec.version_before or row.version_before
        row.listeners = rec.listeners
        row.error = rec.error
        row.started = rec.started or row.started
        row.finished = rec.finished if rec.state in FINAL_STATES else None
        if rec.state == State.RUNNING:
            row.state = rec.step or "running"
            try:
                row.percent = max(row.percent, STEP_SPAN[Step(rec.step)][0]) if rec.step else row.percent
            except ValueError:
                pass
        else:
            row.state = rec.state.value
        if rec.state == State.DONE:
            row.percent = 100.0
        if rec.message and not row.final:
            row.message = rec.message
        if row.final:
            self._clear_live(row)

    def _clear_live(self, row: Row) -> None:
        row.draining = False
        row.depth = None  # no longer polled: a frozen figure would lie
        row.depth_ts = None
        row.guard_reason = ""
        row.bake_until = None
        self.reboots.pop(row.name, None)

    def outcome(self, row: Row) -> str:
        """The message a row shows: its outcome once finished, else the latest line."""
        if row.state == State.DONE.value:
            took = f" in {fmt_took(row.finished - row.started)}" if row.finished and row.started else ""
            before = row.version_before
            if before and row.version and before != row.version:
                text = f"upgraded {before} -> {row.version}{took}"
            else:
                text = f"on {row.version or self.rollout.target}{took}"
            return f"{text}; {row.error}" if row.error else text
        if row.state in (State.FAILED.value, State.NEEDS_ATTENTION.value, State.SKIPPED.value):
            return row.error or row.message or row.state
        if row.state == GUARD_STEP and row.guard_reason:
            return f"waiting: {row.guard_reason}"
        if row.state == BAKE_STEP and row.bake_until is not None:
            left = fmt_duration(row.bake_until - self.clock())
            return f"baking, {left} left" + (f"; {row.bake_sample}" if row.bake_sample else "")
        if row.unreachable and row.state == "pending":
            return f"unreachable: {row.unreachable}"
        return row.message

    def progress(self, row: Row) -> float | None:
        """None: no bar (pending, skipped, failed before it started)."""
        if row.state == State.DONE.value:
            return 100.0
        if row.state == "pending" or row.state == State.SKIPPED.value:
            return None
        if row.final and not row.started:
            return None  # finished without ever starting (refused, given up on)
        return min(row.percent, 99.0)

    def depth_age(self, row: Row) -> float | None:
        return None if row.depth_ts is None else self.clock() - row.depth_ts

    def stale_after(self) -> float:
        return max(30.0, 3 * self.rollout.settings.polling.workqueue)

    def fresh_depth(self, row: Row) -> int | None:
        age = self.depth_age(row)
        return row.depth if age is not None and age <= self.stale_after() else None

    # --- events -------------------------------------------------------------------------------------
    def journal_entry(self, ts: float, kind: str, text: str, appliance: str | None, level: str) -> None:
        """`segtui watch`: the driver's own event log, read from the journal, replaces the one folded here."""
        self.external_log = True
        self._log(kind, text, appliance, level, ts, external=True)

    def _log(
        self,
        kind: str,
        text: str,
        appliance: str | None = None,
        level: str = "info",
        ts: float = 0,
        *,
        external: bool = False,
    ) -> None:
        if self.external_log and not external:
            return
        self.log.append(LogEntry(ts or self.clock(), kind, one_line(text), appliance, level))
        self.log_version += 1

    def operator_acted(self, action: str, target: str | None, who: str) -> None:
        """Logged by the dashboard when the engine does not emit its own OperatorActed event."""
        self._log("operator", f"{who}: {action}" + (f" {target}" if target else ""), target)

    def on_event(self, event: RolloutEvent) -> None:
        """Called for every event: only bookkeeping here, never a widget call."""
        self.events_seen += 1
        name = getattr(event, "appliance", None)
        row = self.rows.get(name) if name else None
        if row is not None:
            self.dirty.add(row.name)
            rec = self.rollout.records.get(row.name)
            if rec is not None:
                row.version = self._version(row, rec)
                row.version_before = rec.version_before or row.version_before
        kind = type(event).__name__
        if isinstance(event, StepStarted) and row:
            row.state = event.step.value
            row.started = row.started or event.ts
            span = STEP_SPAN.get(event.step)
            if span:
                row.percent = max(row.percent, span[0])
            if event.step.value != "reboot":
                self.reboots.pop(row.name, None)
            if event.step.value not in (GUARD_STEP, BAKE_STEP):
                row.guard_reason = ""
                row.bake_until = None
        elif isinstance(event, StepFinished) and row and not event.ok:
            row.message = event.message
            self._log("failure", f"{event.step.value}: {event.message}", row.name, "error", event.ts)
        elif isinstance(event, ApplianceStateChanged) and row:
            self._appliance_state(row, event)
        elif isinstance(event, ListenersChanged) and row:
            row.listeners = event.listeners
            self._log("listeners", f"listeners {event.listeners}", row.name, ts=event.ts)
        elif isinstance(event, WorkQueueDepth) and row:
            row.depth = event.depth
            row.depth_ts = event.ts
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
            self._log("note", event.text, event.appliance, event.level, event.ts)
            if row and not row.final:
                row.message = event.text
        elif isinstance(event, BatchStarted):
            self._batch_started(event)
        elif isinstance(event, BatchFinished):
            self._batch_finished(event)
        elif isinstance(event, RolloutStateChanged):
            self.header_dirty = True
            if event.state == RolloutState.PAUSED:
                self.paused_since = event.ts
            else:
                self.paused_since = None
            level = "warning" if event.state in (RolloutState.PAUSED, RolloutState.ABORTED) else "info"
            self._log("rollout", f"{event.state.value} {event.reason}".strip(), None, level, event.ts)
        elif kind == "OperatorActed":
            who = getattr(event, "who", "")
            action = getattr(event, "action", "")
            target = getattr(event, "target", None)
            # The target names the appliance (skip, retry, listeners...) or what changed (a budget, a window).
            on = target if target in self.rows else name
            self._log("operator", f"{who}: {action}" + (f" {target}" if target else ""), on, ts=event.ts)
        elif kind == "GuardWaiting" and row:
            row.state = GUARD_STEP if not row.final else row.state
            row.guard_reason = str(getattr(event, "reason", ""))
            self._log("guard", f"waiting: {row.guard_reason}", row.name, "warning", event.ts)
            self.header_dirty = True
        elif kind == "BakeSampled" and row:
            row.state = BAKE_STEP if not row.final else row.state
            ends = getattr(event, "until", getattr(event, "ends", None))
            row.bake_until = float(ends) if ends is not None else row.bake_until
            sample = str(getattr(event, "sample", "") or "")
            if not sample:
                sample = f"{getattr(event, 'status', '?')}, queue {getattr(event, 'queue', '?')}"
                completed = getattr(event, "completed", None)
                sample += f", completed {completed}" if completed is not None else ""
            row.bake_sample = sample
            queue = getattr(event, "queue", None)
            if isinstance(queue, int):
                row.depth, row.depth_ts, row.draining = queue, event.ts, False
                row.depth_history.append(queue)
        elif kind == "BakeFinished" and row:
            verdict = str(getattr(event, "verdict", ""))
            message = str(getattr(event, "message", ""))
            row.bake_until = None
            level = "error" if verdict == "failed" else "info"
            self._log("bake", f"bake {verdict}" + (f": {message}" if message else ""), row.name, level, event.ts)
        elif kind == "GuardTimedOut" and row:
            self._log("guard", f"guard timed out: {getattr(event, 'reason', '')}", row.name, "warning", event.ts)
        elif kind == "IdentityLearned" and row:
            row.hostname = getattr(event, "hostname", None) or row.hostname
            row.serial = getattr(event, "serial", None) or row.serial

    def _appliance_state(self, row: Row, event: ApplianceStateChanged) -> None:
        self.header_dirty = True
        if event.version:
            row.version = event.version
        if event.state == State.RUNNING:
            row.started = row.started or event.ts
            return
        if event.state == State.PENDING:  # queued again (retry): a fresh start, not its time in the queue
            row.state = "pending"
            row.started = row.finished = None
            row.percent = 0.0
            row.error = None
            row.message = ""
            self._log("state", "queued again", row.name, ts=event.ts)
            return
        row.state = event.state.value
        row.finished = event.ts
        row.error = event.error
        self._clear_live(row)
        level = "info" if event.state == State.DONE else "error"
        self._log("state", f"{row.state}: {self.outcome(row)}", row.name, level, event.ts)
        if event.state == State.NEEDS_ATTENTION:
            self.bell_pending += 1

    def _batch_started(self, event: BatchStarted) -> None:
        retries = bool(getattr(event, "retries", False))
        self.batch_members = event.appliances
        self.header_dirty = True
        if not retries:  # the pass of retried appliances is not a batch: the numbering stays
            self.batch = (event.index, event.total)
        self.batches = [b for b in self.batches if (b.index, b.retries) != (event.index, retries)]
        self.batches.append(BatchInfo(event.index, event.appliances, event.ts, retries=retries))
        for n in event.appliances:
            if n in self.rows:
                self.rows[n].batch = event.index
                self.dirty.add(n)
        what = "retries" if retries else f"batch {event.index} of {event.total}"
        self._log("batch", f"{what} started: {', '.join(event.appliances)}", ts=event.ts)

    def _batch_finished(self, event: BatchFinished) -> None:
        retries = bool(getattr(event, "retries", False))
        for b in self.batches:
            if (b.index, b.retries) == (event.index, retries):
                b.finished = event.ts
                b.failures = event.failures
                self._log("batch", self.batch_summary(b), None, "error" if event.failures else "info", event.ts)

    def batch_summary(self, b: BatchInfo) -> str:
        states = [self.rows[n].state for n in b.members if n in self.rows]
        done = states.count(State.DONE.value)
        took = fmt_took(b.finished - b.started) if b.finished else ""
        parts = [f"{'retries' if b.retries else f'batch {b.index}'}: {done}/{len(b.members)} done"]
        for s in (State.FAILED.value, State.NEEDS_ATTENTION.value, State.SKIPPED.value):
            if states.count(s):
                parts.append(f"{states.count(s)} {s}")
        if took:
            parts.append(f"in {took}")
        return ", ".join(parts)

    # --- the survey ---------------------------------------------------------------------------------
    def surveyed(
        self,
        name: str,
        *,
        version: str | None = None,
        serial: str | None = None,
        status: str | None = None,
        depth: int | None = None,
        listeners: str | None = None,
        problem: str | None = None,
    ) -> None:
        row = self.rows.get(name)
        if row is None:
            return
        self.dirty.add(name)
        if problem is not None:
            row.unreachable = one_line(problem)
            return
        row.unreachable = None
        if row.in_flight:
            return  # the procedure's own readings are newer
        row.version = version or row.version
        row.serial = serial or row.serial
        row.system_status = status or row.system_status
        if depth is not None and not row.final:
            row.depth = depth
            row.depth_ts = self.clock()
            row.depth_history.append(depth)
        if listeners is not None and not row.final:
            row.listeners = listeners

    # --- reading ------------------------------------------------------------------------------------
    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def tick(self) -> None:
        """Once a second: rows whose elapsed time, bake countdown or queue age moves."""
        for row in self.rows.values():
            if row.in_flight or row.depth_ts is not None:
                self.dirty.add(row.name)

    def sample_fleet_depth(self) -> None:
        self.fleet_depth.append(sum(self.fresh_depth(r) or 0 for r in self.rows.values()))

    def counts(self) -> dict[str, int]:
        c = {"done": 0, "in flight": 0, "failed": 0, "pending": 0, "needs-attention": 0, "skipped": 0, "guard": 0}
        for row in self.rows.values():
            if row.state in c:
                c[row.state] += 1
            else:
                c["in flight"] += 1
            if row.state in (GUARD_STEP,):
                c["in flight"] += 1
        return c

    def to_start(self) -> int:
        """Appliances a start would upgrade (skipped and finished ones excluded)."""
        return sum(1 for r in self.rows.values() if not r.final)

    def state_label(self) -> str:
        r = self.rollout
        if r.state == RolloutState.DONE:
            bad = sum(1 for row in self.rows.values() if row.state != State.DONE.value)
            return "finished with failures" if bad else "done"
        return r.state.value

    def in_flight(self) -> list[Row]:
        return [r for r in self.rows.values() if r.in_flight]

    def eta(self) -> float | None:
        """Seconds left; None when unknown or paused (a paused rollout does not move)."""
        r = self.rollout
        if r.state != RolloutState.RUNNING:
            return None
        engine_eta = getattr(r, "eta", None)
        if callable(engine_eta):
            value = engine_eta(self.clock())
            return float(value) if value is not None else None
        took = [
            row.finished - row.started
            for row in self.rows.values()
            if row.state == "done" and row.finished and row.started
        ]
        if not took:
            return None
        remaining = [row for row in self.rows.values() if not row.final]
        if not remaining:
            return 0.0
        groups = len({row.group for row in self.rows.values()})
        slots = max(1, min(r.options.concurrency, r.settings.concurrency, r.options.max_unavailable * groups))
        per = median(took)
        waves = -(-len(remaining) // slots)
        under_way = [self.clock() - row.started for row in remaining if row.started]
        head = max(0.0, per - max(under_way)) if under_way else per
        return head + (waves - 1) * per

    def window_left(self) -> float | None:
        fn = getattr(self.rollout, "window_left", None)
        if callable(fn):
            value = fn(self.clock())
            return float(value) if value is not None else None
        return None

    def guard_waiting(self) -> int:
        return sum(1 for row in self.rows.values() if row.state == GUARD_STEP)

    def peers_of_out_of_service(self) -> list[Row]:
        """In-service peers (same group) of appliances that are out of service: where their mail goes."""
        out_groups = {row.group for row in self.rows.values() if row.in_flight or row.listeners == "suspended"}
        return [
            row
            for row in self.rows.values()
            if row.group in out_groups and not row.in_flight and row.listeners != "suspended"
        ]
