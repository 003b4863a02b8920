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
    DONE = "done"


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


@dataclass(frozen=True, kw_only=True)
class BatchFinished(RolloutEvent):
    index: int
    failures: int


@dataclass(frozen=True, kw_only=True)
class RolloutStateChanged(RolloutEvent):
    state: RolloutState
    reason: str = ""


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
    """The capacity guard holds this appliance in service: `reason` names the peer and what is wrong."""

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
    ends: float  # epoch seconds the bake ends


@dataclass(frozen=True, kw_only=True)
class BakeFinished(ApplianceEvent):
    verdict: str  # passed, failed, skipped, no-traffic
    message: str = ""
