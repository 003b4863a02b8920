"""Typed events the rollout emits; the dashboard and the headless printer both consume them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum


class Step(StrEnum):
    PRECHECK = "precheck"
    BACKUP = "backup"
    DISCONNECT = "cluster-disconnect"
    POINT = "point-updates"
    SUSPEND = "suspend"
    DRAIN = "drain"
    UPGRADE = "upgrade"
    REBOOT = "reboot"
    VERIFY = "verify"
    RESUME_LISTENERS = "resume-listeners"
    RESTORE = "restore-updates"
    RECONNECT = "cluster-reconnect"
    GUARD = "guard"  # waiting until the peers can carry this appliance's mail
    BAKE = "bake"  # watching the appliance move mail after it is back


class State(StrEnum):
    """The report's appliance states; an appliance in flight shows its step instead of RUNNING."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    NEEDS_ATTENTION = "needs-attention"


# The one home of "finished": an appliance in one of these states needs nothing more from the rollout.
FINAL_STATES = frozenset({State.DONE, State.FAILED, State.SKIPPED, State.NEEDS_ATTENTION})
# What counts against the failure budget.
FAILURE_STATES = frozenset({State.FAILED, State.NEEDS_ATTENTION})


class RolloutState(StrEnum):
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    ABORTED = "aborted"
    DONE = "done"  # finished; `Rollout.outcome()` says how (completed only when every appliance is done)


class Outcome(StrEnum):
    """How a rollout ended (or stopped): the one mapping to exit codes, used by header, headless, report and CLI."""

    COMPLETED = "completed"  # every appliance done
    FINISHED_WITH_FAILURES = "finished-with-failures"  # any failed, needs-attention or skipped
    PAUSED = "paused"  # stopped with work left; `segtui resume` continues
    WINDOW_CLOSED = "window-closed"  # paused because nothing more fits the maintenance window
    INTERRUPTED = "interrupted"  # segtui quit while the rollout ran; `segtui resume` continues where it stopped
    ABORTED = "aborted"  # final: never resumed

    @property
    def exit_code(self) -> int:
        return 0 if self is Outcome.COMPLETED else 1

    @property
    def final(self) -> bool:
        """Journaled as finished: `segtui resume` does not offer it."""
        return self in (Outcome.COMPLETED, Outcome.FINISHED_WITH_FAILURES, Outcome.ABORTED)


# Where each step sits on an appliance's 0-100 progress bar, and its phase for the upgrade panel.
STEP_SPAN: dict[Step, tuple[int, int, str]] = {
    Step.PRECHECK: (0, 4, "backup"),
    Step.BACKUP: (4, 12, "backup"),
    Step.DISCONNECT: (12, 14, "backup"),
    Step.POINT: (14, 18, "backup"),
    Step.SUSPEND: (18, 22, "drain"),
    Step.DRAIN: (22, 32, "drain"),
    Step.UPGRADE: (32, 72, "download"),
    Step.REBOOT: (72, 92, "reboot"),
    Step.VERIFY: (92, 94, "verify"),
    Step.RESUME_LISTENERS: (94, 97, "verify"),
    Step.RESTORE: (97, 100, "verify"),
    Step.RECONNECT: (99, 100, "verify"),
}


@dataclass(frozen=True, kw_only=True)
class RolloutEvent:
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, kw_only=True)
class ApplianceEvent(RolloutEvent):
    appliance: str


@dataclass(frozen=True, kw_only=True)
class StepStarted(ApplianceEvent):
    step: Step


@dataclass(frozen=True, kw_only=True)
class StepFinished(ApplianceEvent):
    step: Step
    ok: bool
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class ApplianceStateChanged(ApplianceEvent):
    state: State
    version: str | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class ListenersChanged(ApplianceEvent):
    listeners: str  # active, suspended, unknown


@dataclass(frozen=True, kw_only=True)
class WorkQueueDepth(ApplianceEvent):
    depth: int
    draining: bool


@dataclass(frozen=True, kw_only=True)
class UpgradeProgressed(ApplianceEvent):
    phase: str  # backup, drain, download, install, reboot, verify
    percent: float  # the appliance's overall progress, 0-100
    line: str = ""


@dataclass(frozen=True, kw_only=True)
class RebootProbed(ApplianceEvent):
    stage: str  # tcp, ssh, cli, version
    attempt: int
    since: float  # when the reboot began (epoch seconds)
    deadline: float  # epoch seconds
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class StagingChanged(ApplianceEvent):
    """Image staging: staged, downloading (with percent), not-staged, other-image."""

    status: str
    version: str | None = None
    percent: int | None = None


@dataclass(frozen=True, kw_only=True)
class CommandExchanged(ApplianceEvent):
    command: str
    output: str  # already redacted


@dataclass(frozen=True, kw_only=True)
class Note(RolloutEvent):
    text: str
    appliance: str | None = None
    level: str = "info"


@dataclass(frozen=True, kw_only=True)
class BatchStarted(RolloutEvent):
    index: int  # 1-based
    total: int
    appliances: tuple[str, ...]
    retries: bool = False  # the final pass of retried appliances (does not count as a batch)


@dataclass(frozen=True, kw_only=True)
class BatchFinished(RolloutEvent):
    index: int
    failures: int
    total: int = 0
    summary: str = ""  # e.g. `batch 2 of 5 finished: 3 done, 1 failed`
    retries: bool = False


@dataclass(frozen=True, kw_only=True)
class RolloutStateChanged(RolloutEvent):
    state: RolloutState
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class OperatorActed(RolloutEvent):
    """An operator action, journaled with who did it."""

    action: str
    target: str | None = None
    who: str = ""


def log_entry(event: RolloutEvent) -> tuple[str, str | None, str] | None:
    """(kind, appliance, text) of an event for the event log, or None for the high-rate telemetry it leaves out."""
    if isinstance(event, ApplianceStateChanged):
        text = event.state.value + (f" {event.version}" if event.version else "")
        return "state", event.appliance, text + (f": {event.error}" if event.error else "")
    if isinstance(event, StepStarted):
        return "step", event.appliance, event.step.value
    if isinstance(event, StepFinished):
        return None if event.ok else ("failure", event.appliance, f"{event.step.value}: {event.message}")
    if isinstance(event, ListenersChanged):
        return "listeners", event.appliance, f"listeners {event.listeners}"
    if isinstance(event, Note):
        return ("note" if event.level == "info" else event.level), event.appliance, event.text
    if isinstance(event, BatchStarted):
        what = "retries" if event.retries else f"batch {event.index} of {event.total}"
        return "batch-start", None, f"{what}: {', '.join(event.appliances)}"
    if isinstance(event, BatchFinished):
        return "batch-end", None, event.summary or f"batch {event.index} finished: {event.failures} failure(s)"
    if isinstance(event, RolloutStateChanged):
        return "rollout", None, event.state.value + (f": {event.reason}" if event.reason else "")
    if isinstance(event, GuardWaiting):
        return "guard", event.appliance, event.reason
    if isinstance(event, GuardTimedOut):
        return "guard", event.appliance, f"guard gave up waiting: {event.reason}"
    if isinstance(event, BakeFinished):
        return "bake", event.appliance, f"bake {event.verdict}" + (f": {event.message}" if event.message else "")
    if isinstance(event, IdentityLearned):
        return "identity", event.appliance, f"hostname {event.hostname or '?'}, serial {event.serial or '?'}"
    if isinstance(event, OperatorActed):
        return "action", None, f"{event.who}: {event.action}" + (f" {event.target}" if event.target else "")
    return None


# --- appended by the procedure (d2): identity, guards, bake, give-up ---------------------------------
STEP_SPAN[Step.GUARD] = (18, 18, "drain")
STEP_SPAN[Step.BAKE] = (100, 100, "verify")


@dataclass(frozen=True, kw_only=True)
class IdentityLearned(ApplianceEvent):
    """The appliance's own hostname (its prompt) and serial (`version`), learned at pre-check."""

    hostname: str | None
    serial: str | None


@dataclass(frozen=True, kw_only=True)
class GuardWaiting(ApplianceEvent):
    """The capacity guard holds this appliance in service: `reason` names the peer and what is wrong
    (`esa03 work queue 12,340 > 5,000`); the journal's message reads `waiting: <reason>`."""

    reason: str
    since: float  # epoch seconds the wait began


@dataclass(frozen=True, kw_only=True)
class GuardTimedOut(ApplianceEvent):
    """The guard waited `guards.wait`: the appliance is pending again and the rollout should pause."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class BakeSampled(ApplianceEvent):
    """One bake sample: system status, work queue, counters (None when the release prints none)."""

    status: str
    queue: int
    received: int | None
    completed: int | None
    until: float  # epoch seconds the bake ends
    sample: str  # the sample in words, for the dashboard: `Online, queue 120, received 1,200, completed 1,105`


@dataclass(frozen=True, kw_only=True)
class BakeFinished(ApplianceEvent):
    verdict: str  # passed, failed, skipped, no-traffic
    message: str = ""
