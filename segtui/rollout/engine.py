"""The fleet rollout: rolling batches under capacity limits, a fleet-wide failure budget, a window, controls."""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from segtui.asyncos.connections import SharedConnections
from segtui.asyncos.errors import ApplianceError
from segtui.asyncos.versions import Version
from segtui.errors import InputError
from segtui.inventory import ApplianceSpec, Inventory
from segtui.rollout.applock import ApplianceLocks
from segtui.rollout.batches import (
    BatchStep,
    FailureBudget,
    parse_batch_spec,
    parse_failure_budget,
    plan_batches,
    plan_order,
)
from segtui.rollout.context import RolloutContext
from segtui.rollout.controls import ACTIONS
from segtui.rollout.eta import Durations
from segtui.rollout.events import (
    FAILURE_STATES,
    FINAL_STATES,
    ApplianceStateChanged,
    BatchFinished,
    BatchStarted,
    GuardTimedOut,
    IdentityLearned,
    ListenersChanged,
    Note,
    OperatorActed,
    Outcome,
    RolloutEvent,
    RolloutState,
    RolloutStateChanged,
    State,
    Step,
    log_entry,
)
from segtui.rollout.guards import watch_peers
from segtui.rollout.journal import ApplianceRecord, Journal, RolloutRow, operator
from segtui.rollout.procedure import Aborted, ApplianceProcedure
from segtui.rollout.window import clock_text
from segtui.settings import Settings

__all__ = ["BudgetSpent", "HandWork", "Outcome", "Rollout", "RolloutOptions"]


@dataclass
class RolloutOptions:
    """The rollout's options as the operator gave them (journaled so); invalid values refuse at construction."""

    batch: str = "1,25%"
    max_fail: str = "0"
    max_unavailable: int = 1
    pause_on_failure: bool = False
    concurrency: int = 50
    until: float | None = None  # end of the maintenance window (epoch seconds)
    bake: float | None = None  # seconds of bake (--bake) over the setting guards.bake; 0 turns it off
    peer_queue_max: int | None = None  # --peer-queue-max over the setting guards.peer_queue_max

    def __post_init__(self) -> None:
        self.steps()
        self.budget()
        if self.bake is not None and self.bake < 0:
            raise InputError(["--bake: must be 0 (off) or a duration"])
        if self.peer_queue_max is not None and self.peer_queue_max < 0:
            raise InputError(["--peer-queue-max: must be 0 or more"])
        if self.max_unavailable < 1:
            raise InputError(["--max-unavailable: must be at least 1"])
        if self.concurrency < 1:
            raise InputError(["--concurrency: must be at least 1"])

    def applied_to(self, settings: Settings) -> Settings:
        """The settings of this rollout: the guards' options given for it (and journaled with it) win."""
        guards = {k: v for k, v in (("bake", self.bake), ("peer_queue_max", self.peer_queue_max)) if v is not None}
        if not guards:
            return settings
        return settings.model_copy(update={"guards": settings.guards.model_copy(update=guards)})

    def steps(self) -> list[BatchStep]:
        return parse_batch_spec(self.batch)

    def budget(self) -> FailureBudget:
        return parse_failure_budget(self.max_fail)


class BudgetSpent(Exception):
    """Unpausing from a spent failure budget needs a larger budget; the message says which and how."""


@dataclass(frozen=True)
class HandWork:
    """Something the rollout left for a person, with the command that does it."""

    appliance: str
    what: str
    command: str


@dataclass
class FleetNotes:
    clusters: list[str] = field(default_factory=list)


UNAVAILABLE_LISTENERS = ("suspended", "unknown")
CONNECTION_LINGER = 30.0  # seconds an appliance's SSH connection is kept after its last session closed


class Rollout:
    """One rollout of one inventory to one target. Controls are plain methods the dashboard calls."""

    def __init__(
        self,
        inventory: Inventory,
        settings: Settings,
        target: Version,
        journal: Journal,
        options: RolloutOptions,
        *,
        exit_on_pause: bool = False,
    ) -> None:
        self.inventory = inventory
        settings = options.applied_to(settings)
        self.settings = settings
        self.target = target
        self.journal = journal
        self.options = options
        self.exit_on_pause = exit_on_pause
        self.state = RolloutState.READY
        self._subscribers: list[Callable[[RolloutEvent], None]] = []
        # A connection outlives its session a little: the pre-flight's serves the procedure, the reboot check's the
        # verification, a peer reading's the peer's own procedure (no second login to the same appliance).
        self.ctx = RolloutContext(
            inventory, settings, target, journal, self._emit, connections=SharedConnections(linger=CONNECTION_LINGER)
        )
        self.ctx.in_service_peers = self.in_service_peers
        self.records: dict[str, ApplianceRecord] = {}
        self.specs: dict[str, ApplianceSpec] = {a.name: a for a in inventory.appliances}
        self._started = asyncio.Event()
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._wake = asyncio.Event()
        self._running: dict[str, tuple[ApplianceProcedure, asyncio.Task[State]]] = {}
        self._plan: list[list[str]] = []
        self._retries: list[str] = []
        self._in_flight_first: list[str] = []
        self.batch_index = 0
        self.batch_total = 0
        self.started_at: float | None = None
        self.notes = FleetNotes()
        self.pause_reason = ""
        self._window_closed = False
        self._pending_pause: str | None = None
        self._eta_frozen: float | None = None
        self._budget = options.budget()
        self._journal_extra: dict[str, Any] = {}
        self._locks = ApplianceLocks(settings, f"{inventory.path} -> {target}")

    # --- events --------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[RolloutEvent], None]) -> None:
        self._subscribers.append(callback)

    def _emit(self, event: RolloutEvent) -> None:
        if isinstance(event, ApplianceStateChanged):
            self._wake.set()
        elif isinstance(event, GuardTimedOut):
            # An overloaded group is for the operator to judge: the appliance is pending again, the rollout pauses.
            self._pending_pause = f"{event.appliance}: {event.reason}"
            self._wake.set()
        elif isinstance(event, IdentityLearned) and event.serial:
            self._lock_serial(event.appliance, event.serial)
        entry = log_entry(event)
        if entry is not None and self.journal.rollout_id is not None:
            kind, appliance, text = entry
            self.journal.event(kind, text, appliance, event.ts)
        for callback in self._subscribers:
            callback(event)

    def _act(self, action: str, target: str | None = None, who: str | None = None) -> None:
        who = who or operator()
        self.journal.action(action, target, who)
        self._emit(OperatorActed(action=action, target=target, who=who))

    def _set_state(self, state: RolloutState, reason: str = "") -> None:
        self.state = state
        if state == RolloutState.PAUSED:
            self._unpaused.clear()
            self.pause_reason = reason
            if self.exit_on_pause:
                # Nobody will unpause this process: in-flight appliances before their upgrade are made safe now
                # (pending again, `segtui resume` continues them) instead of holding the run open for ever.
                for proc, _task in self._running.values():
                    proc.request_stop(Aborted(State.PENDING, f"paused ({reason}): made safe, continues on resume"))
        else:
            self._unpaused.set()
            self._window_closed = False
        self._wake.set()
        self._emit(RolloutStateChanged(state=state, reason=reason))

    def _auto_pause(self, reason: str, *, window: bool = False) -> None:
        """A pause the rollout makes itself (budget, window, capacity): an event, not an operator action."""
        if self.state == RolloutState.RUNNING:
            self._eta_frozen = self.eta(time.time())
            self._set_state(RolloutState.PAUSED, reason)
            self._window_closed = window

    # --- set-up --------------------------------------------------------------------------------
    def _journal_options(self) -> dict[str, Any]:
        return {**asdict(self.options), **self._journal_extra}

    def begin(self, *, persist_settings: bool = False, who: str | None = None) -> None:
        """A new rollout: every appliance pending, journaled with its batch plan.

        `persist_settings` keeps the settings (a demo's scaled deadlines) so `segtui resume` runs at the same pace.
        """
        if persist_settings:
            self._journal_extra["_settings"] = self.settings.model_dump(mode="json")
        if self.ctx.expected_paths:
            self._keep_paths()
        self.journal.begin(str(self.inventory.path), str(self.target), self._journal_options(), who)
        self._act("created", f"target {self.target}", who)
        for spec in self.inventory.appliances:
            rec = ApplianceRecord(name=spec.name)
            self.records[spec.name] = rec
            self.journal.save(rec)
        self._plan = plan_batches(plan_order(self.inventory.appliances), self.options.steps())
        self.journal.save_batches(self._plan)
        self.batch_index = 0
        self.batch_total = len(self._plan)

    def attach(self, rollout_id: int, who: str | None = None, *, make_safe: bool = False) -> None:
        """Continue a journaled rollout after segtui stopped or crashed; an aborted one is refused.

        `make_safe`: for an aborted rollout whose segtui stopped before its appliances in flight were safe,
        `run()` finishes only those (made safe before their upgrade, or through reboot and verify after it)
        and starts nothing else; the rollout stays aborted.
        """
        info = self.journal.rollout_info(rollout_id)
        aborted = info is not None and info.outcome == Outcome.ABORTED
        if aborted and not make_safe:
            assert info is not None
            raise InputError([f"{info.describe()}; an aborted rollout is final: `segtui run` starts a new one"])
        if aborted:
            self.review(rollout_id)
            self.journal.attach(rollout_id)
            self._act("make-safe", None, who)
            self._in_flight_first = [n for n, r in self.records.items() if r.state == State.RUNNING]
            self._started.set()
            return
        if info is not None and "_settings" in info.options:
            self._journal_extra["_settings"] = info.options["_settings"]
        if info is not None:
            self._restore_paths(info.options.get("_paths"))
        self.journal.attach(rollout_id)
        self._act("resumed", None, who)
        self.records = self.journal.records()
        for spec in self.inventory.appliances:
            self.records.setdefault(spec.name, ApplianceRecord(name=spec.name))
        self.records = {n: r for n, r in self.records.items() if n in self.specs}
        known = set(self.specs)
        plan = [[n for n in batch if n in known] for batch in self.journal.batches()]
        plan = [b for b in plan if b]
        missing = [n for n in plan_order(self.inventory.appliances) if not any(n in b for b in plan)]
        if not plan:
            plan = plan_batches(plan_order(self.inventory.appliances), self.options.steps())
        elif missing:
            plan.append(missing)  # appliances added to the inventory since: one more batch at the end
        if plan != self.journal.batches():
            self.journal.save_batches(plan)
        self._plan = plan
        self.batch_total = len(plan)
        # Batches whose every appliance is finished are behind us.
        idx = 0
        while idx < len(plan) and all(self.records[n].state in FINAL_STATES for n in plan[idx]):
            idx += 1
        self.batch_index = idx
        # Appliances caught mid-procedure by a crash go first: they are already out of service.
        order = [n for batch in plan for n in batch]
        self._in_flight_first = [n for n in order if self.records[n].state == State.RUNNING]

    def _restore_paths(self, saved: object) -> None:
        """The plan journaled by `begin`; an entry that does not read as versions is left unplanned (the driver's
        own rule then: the newest offer up to the target)."""
        if not isinstance(saved, dict):
            return
        for name, path in saved.items():
            try:
                versions = [Version.parse(v) for v in path] if isinstance(path, list) else []
            except (ValueError, TypeError):
                versions = []
            if name in self.specs and versions:
                self.ctx.expected_paths[name] = versions
        self._keep_paths()

    def _keep_paths(self) -> None:
        """The pre-flight's plan in the journal, so that a resumed rollout keeps the hard rule and the order (it runs
        no pre-flight)."""
        self._journal_extra["_paths"] = {n: [str(v) for v in p] for n, p in self.ctx.expected_paths.items()}

    def review(self, rollout_id: int) -> RolloutRow | None:
        """Load a journaled rollout to look at it, changing nothing (resume's refusal, history, `segtui watch`).

        Records, batches and state come from the journal; nothing is journaled. Call again to refresh.
        """
        info = self.journal.rollout_info(rollout_id)
        if info is None:
            return None
        records = self.journal.records(rollout_id)
        self.records = {s.name: records.get(s.name, ApplianceRecord(name=s.name)) for s in self.inventory.appliances}
        known = set(self.specs)
        self._plan = [b for b in ([n for n in batch if n in known] for batch in self.journal.batches(rollout_id)) if b]
        self.batch_total = len(self._plan)
        self.batch_index = sum(1 for b in self._plan if any(self.records[n].state != State.PENDING for n in b))
        self.started_at = info.started
        if info.outcome == Outcome.ABORTED:
            self.state = RolloutState.ABORTED
        elif info.outcome is not None:
            self.state = RolloutState.DONE
        else:
            self.state = RolloutState.PAUSED if self.started_at else RolloutState.READY
        return info

    # --- what the screens ask ------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        c: dict[str, int] = {}
        for rec in self.records.values():
            c[rec.state.value] = c.get(rec.state.value, 0) + 1
        return c

    def to_upgrade(self) -> int:
        """Appliances the rollout will still work on (skipped and finished ones excluded)."""
        return sum(1 for r in self.records.values() if r.state not in FINAL_STATES)

    def outcome(self) -> Outcome:
        if self.state == RolloutState.ABORTED:
            return Outcome.ABORTED
        states = [r.state for r in self.records.values()]
        if self.state == RolloutState.PAUSED or any(s in (State.PENDING, State.RUNNING) for s in states):
            return Outcome.WINDOW_CLOSED if self._window_closed else Outcome.PAUSED
        if all(s == State.DONE for s in states):
            return Outcome.COMPLETED
        return Outcome.FINISHED_WITH_FAILURES

    def status(self) -> str:
        """The header's word: ready, running, paused, window-closed, aborted, completed, finished-with-failures."""
        if self.state == RolloutState.DONE:
            return self.outcome().value
        if self.state == RolloutState.PAUSED and self._window_closed:
            return Outcome.WINDOW_CLOSED.value
        return self.state.value

    def _expected_seconds(self, name: str, durations: Durations | None = None) -> float:
        durations = durations if durations is not None else Durations.of(self.records.values())
        upgrades = self.ctx.upgrades_left(name)
        learned = durations.expected(upgrades)
        return learned if learned is not None else self.settings.window.estimate * upgrades

    def eta(self, now: float) -> float | None:
        """Seconds until the fleet is done, from the durations measured in this rollout; frozen while paused."""
        if self.state in (RolloutState.DONE, RolloutState.ABORTED):
            return None
        if self.state == RolloutState.PAUSED:
            return self._eta_frozen
        durations = Durations.of(self.records.values())
        if not durations:
            return None
        work = 0.0
        longest = 0.0
        left_by_group: dict[str, int] = {}
        for name, rec in self.records.items():
            if rec.state in FINAL_STATES:
                continue
            expected = self._expected_seconds(name, durations)
            if name in self._running and rec.started:
                expected = max(0.0, expected - (now - rec.started))
                longest = max(longest, expected)
            work += expected
            group = self.specs[name].group
            left_by_group[group] = left_by_group.get(group, 0) + 1
        if not left_by_group:
            return 0.0
        parallel = sum(min(self.options.max_unavailable, n) for n in left_by_group.values())
        parallel = max(1, min(self.options.concurrency, parallel))
        eta = max(longest, work / parallel)
        self._eta_frozen = eta
        return eta

    def window_left(self, now: float) -> float | None:
        """Seconds left in the maintenance window (0 once closed); None without a window."""
        if self.options.until is None:
            return None
        return max(0.0, self.options.until - now)

    def cap_note(self) -> str | None:
        """When the concurrency cap limits a batch: `batch 2: 300 appliances, 50 at a time (concurrency cap)`."""
        cap = self.options.concurrency
        for i in range(max(0, self.batch_index - 1), len(self._plan)):
            n = sum(1 for name in self._plan[i] if self.records[name].state not in FINAL_STATES)
            if n > cap:
                return f"batch {i + 1}: {n} appliances, {cap} at a time (concurrency cap)"
        return None

    def batches(self) -> list[list[str]]:
        """Which appliance in which batch (batch 1 first)."""
        return [list(b) for b in self._plan]

    def needs_a_person(self) -> list[HandWork]:
        """What the rollout leaves for a person: suspended listeners, settings still pointed, needs-attention, a bake
        cut short (upgraded and in service, but its mail flow unverified)."""
        out: list[HandWork] = []
        for spec in self.inventory.appliances:
            rec = self.records.get(spec.name)
            if rec is None or spec.name in self._running:
                continue
            ssh = f"ssh -p {spec.port} {shlex.quote(f'{spec.username}@{spec.host}')}"
            if rec.state == State.NEEDS_ATTENTION:
                given = " (given up by the operator)" if rec.given_up else ""
                out.append(
                    HandWork(
                        spec.name,
                        f"needs attention{given}: {rec.error or 'unknown state'}",
                        f"{ssh} version   # then `segtui resume --inventory {shlex.quote(str(self.inventory.path))}`"
                        " and R to re-probe it",
                    )
                )
            bake = rec.bake or {}
            if rec.state == State.DONE and bake.get("cut_short"):
                out.append(
                    HandWork(
                        spec.name,
                        f"mail flow not verified: {bake.get('message') or 'bake cut short'}",
                        f"{ssh} status detail   # check that it receives and delivers mail",
                    )
                )
            if rec.listeners in UNAVAILABLE_LISTENERS:
                how = (
                    "suspended before the rollout (left as found: segtui's procedure did not suspend them)"
                    if rec.suspended_elsewhere
                    else ("may be suspended (unknown)" if rec.listeners == "unknown" else "suspended")
                )
                out.append(HandWork(spec.name, f"listeners {how}", f"{ssh} resumelistener   # choose 1. All"))
            if rec.pointed:
                was = rec.original_source or {"images": "cisco", "manifest": "cisco"}
                out.append(
                    HandWork(
                        spec.name,
                        f"AsyncOS upgrade settings still point at the local server (were: images {was['images']}, "
                        f"list {was['manifest']})",
                        f"{ssh} updateconfig   # SETUP: AsyncOS upgrades back as they were, then commit",
                    )
                )
        return out

    # --- controls (the dashboard's API) --------------------------------------------------------
    def can(self, action_id: str, name: str | None = None) -> str | None:
        """None when the action is allowed now; else a one-line reason (said before any confirmation)."""
        action = ACTIONS.get(action_id)
        if action is None:
            return f"{action_id}: no such action"
        if self.state not in action.when:
            return f"{action.title.lower()}: not while the rollout is {self.status()}"
        if action_id == "unpause" and self.budget_spent():
            return self._budget_message()
        if name is None:
            return None
        rec = self.records.get(name)
        if rec is None:
            return f"{name}: not in this rollout"
        if action_id == "skip":
            return self._skip_refusal(name, rec)
        if action_id == "retry":
            if name in self._running:
                return f"{name}: in flight, nothing to retry"
            if rec.state not in (State.FAILED, State.SKIPPED, State.NEEDS_ATTENTION):
                return f"{name}: is {rec.state}; only failed, skipped or needs-attention appliances can be retried"
            return None
        if action_id in ("suspend_listeners", "resume_listeners") and name in self._running:
            return f"{name}: in flight: the procedure owns its listeners"
        if action_id == "override_guard" and name not in self._running:
            return f"{name}: not in flight, no guard to override"
        return None

    def _skip_refusal(self, name: str, rec: ApplianceRecord) -> str | None:
        if name in self._running:
            proc, _ = self._running[name]
            if not proc.past_point_of_no_return or rec.step == Step.REBOOT.value:
                return None
            return f"{name}: upgrade under way, cannot skip now (it finishes safely; give up once it reboots)"
        if rec.state == State.PENDING:
            return None
        if rec.state == State.NEEDS_ATTENTION:
            return f"{name}: already given up" if rec.given_up else None
        return f"{name}: is {rec.state}, nothing to skip"

    def start(self, who: str | None = None) -> None:
        if self.state == RolloutState.READY:
            self._act("start", None, who)
            self.started_at = time.time()
            self._started.set()
            self._set_state(RolloutState.RUNNING)
        elif self.state == RolloutState.PAUSED:
            self.unpause(who)

    def pause(self, reason: str = "paused by operator", who: str | None = None) -> None:
        if self.state == RolloutState.RUNNING:
            self._act("pause", reason, who)
            self._eta_frozen = self.eta(time.time())
            self._set_state(RolloutState.PAUSED, reason)

    def _budget_message(self) -> str:
        allowed = self._budget.allowed(len(self.records))
        return (
            f"failure budget spent: {self.failures()} failed, {allowed} allowed (--max-fail {self._budget}); "
            f"unpausing needs a larger budget (at least {self.failures()})"
        )

    def unpause(self, who: str | None = None, max_fail: str | None = None) -> None:
        """Continue. From a spent failure budget only with a larger `max_fail` (raises BudgetSpent otherwise)."""
        if self.state != RolloutState.PAUSED:
            return
        if max_fail is not None:
            budget = parse_failure_budget(max_fail)
            if self.failures() > budget.allowed(len(self.records)):
                raise BudgetSpent(
                    f"--max-fail {budget} allows {budget.allowed(len(self.records))}, "
                    f"but {self.failures()} have failed: still spent"
                )
            self._act("raise-budget", f"--max-fail {self._budget} -> {budget}", who)
            self._budget = budget
            self.options.max_fail = max_fail
            self.journal.update_options(self._journal_options())
        if self.budget_spent():
            raise BudgetSpent(self._budget_message())
        self._act("unpause", None, who)
        self._set_state(RolloutState.RUNNING)

    def set_until(self, until: float | None, who: str | None = None) -> None:
        """A new end for the maintenance window (or none)."""
        self._act("window", None if until is None else f"until {clock_text(until)}", who)
        self.options.until = until
        self.journal.update_options(self._journal_options())
        self._wake.set()

    def abort(self, who: str | None = None) -> None:
        """Final: nothing new starts, appliances not yet upgrading are made safe, reboots are given up on."""
        if self.state in (RolloutState.ABORTED, RolloutState.DONE):
            return
        self._act("abort", None, who)
        was_ready = self.state == RolloutState.READY
        self._set_state(RolloutState.ABORTED, "aborted by operator")
        self.journal.finish(Outcome.ABORTED.value)  # at once: a crash from here on does not make it resumable
        for name, (proc, _task) in list(self._running.items()):
            if proc.request_stop(Aborted(State.PENDING, "aborted by operator before its upgrade")):
                continue
            if proc.rec.step == Step.REBOOT.value:
                self._give_up_reboot(name, "aborted while rebooting: not waited for")
            else:
                self._emit(Note(appliance=name, text="upgrade under way: finishing it safely"))
        if was_ready:
            self._started.set()

    def _give_up_reboot(self, name: str, reason: str) -> None:
        """Stop waiting for a reboot: the procedure ends needs-attention (saying what is left), the rest goes on."""
        proc, _task = self._running[name]
        proc.give_up(reason)

    def skip(self, name: str, who: str | None = None) -> str:
        refusal = self.can("skip", name)
        if refusal is not None:
            return refusal
        rec = self.records[name]
        if name in self._running:
            proc, _ = self._running[name]
            if proc.request_stop(Aborted(State.SKIPPED, "skipped by operator")):
                self._act("skip", name, who)
                return f"{name}: skipping"
            self._act("give-up", name, who)
            self._give_up_reboot(name, "given up by the operator while rebooting")
            return f"{name}: given up while rebooting: needs attention, the rest continues"
        if rec.state == State.NEEDS_ATTENTION:
            self._act("give-up", name, who)
            rec.given_up = True
            self.journal.save(rec)
            self._emit(ApplianceStateChanged(appliance=name, state=rec.state, version=rec.current, error=rec.error))
            left = "; ".join(w.what for w in self.needs_a_person() if w.appliance == name)
            self._wake.set()
            return f"{name}: given up, left for a person: {left}"
        self._act("skip", name, who)
        rec.state = State.SKIPPED
        rec.error = "skipped by operator"
        self.journal.save(rec)
        if name in self._retries:
            self._retries.remove(name)
        self._emit(ApplianceStateChanged(appliance=name, state=State.SKIPPED, version=rec.current))
        return f"{name}: skipped"

    def retry(self, name: str, who: str | None = None) -> str:
        """Failed or skipped: queued again. Needs-attention: re-probed (read again, continued from the truth)."""
        refusal = self.can("retry", name)
        if refusal is not None:
            return refusal
        rec = self.records[name]
        reprobe = rec.state == State.NEEDS_ATTENTION
        self._act("re-probe" if reprobe else "retry", name, who)
        rec.state = State.PENDING
        rec.error = None
        rec.given_up = False
        rec.reprobe = reprobe
        rec.started = None
        rec.finished = None
        self.journal.save(rec)
        if name not in self._retries:
            self._retries.append(name)
        self._emit(ApplianceStateChanged(appliance=name, state=State.PENDING, version=rec.current))
        if self.state == RolloutState.DONE:
            # Taken up again after its end: `run()` continues it (the dashboard starts it again).
            self.journal.reopen()
            self._set_state(RolloutState.RUNNING)
        self._wake.set()
        return f"{name}: {'queued to be re-probed' if reprobe else 'queued again'}"

    def override_guard(self, name: str, who: str | None = None) -> str:
        """Let an appliance past the mail-flow guard it waits on, or its bake."""
        refusal = self.can("override_guard", name)
        if refusal is not None:
            return refusal
        proc, _ = self._running[name]
        if not proc.override_guard():
            return f"{name}: no guard or bake is holding it"
        self._act("override-guard", name, who)
        return f"{name}: guard overridden"

    async def change_listeners(self, names: list[str], suspend: bool, who: str | None = None) -> dict[str, str]:
        """Suspend or resume listeners on appliances outside the procedure (operator action)."""
        results: dict[str, str] = {}

        async def one(name: str) -> None:
            if name in self._running:
                results[name] = "in flight: the procedure owns its listeners"
                return
            spec = self.specs[name]
            rec = self.records[name]
            self._act("suspend-listeners" if suspend else "resume-listeners", name, who)
            client = self.ctx.appliance(spec)
            try:
                if suspend:
                    await client.suspend_listeners(self.settings.listener_close_seconds)
                else:
                    await client.resume_listeners()
            except ApplianceError as exc:
                results[name] = exc.message
                self._emit(Note(appliance=name, text=exc.message, level="error"))
                return
            finally:
                await client.close()
            rec.listeners = "suspended" if suspend else "active"
            if not suspend:
                rec.suspended_by_us = False
                rec.suspended_elsewhere = False
            self.journal.save(rec)
            self._emit(ListenersChanged(appliance=name, listeners=rec.listeners))
            results[name] = rec.listeners

        await asyncio.gather(*(one(n) for n in names))
        self._wake.set()
        return results

    # --- running -------------------------------------------------------------------------------
    def failures(self) -> int:
        return sum(1 for r in self.records.values() if r.state in FAILURE_STATES)

    def budget_spent(self) -> bool:
        return self.failures() > self._budget.allowed(len(self.records))

    async def run(self, *, autostart: bool = False) -> Outcome:
        """Run to the end (or pause/abort); returns the outcome. Called again after a retry past the end."""
        if autostart:
            self.start()
        await self._started.wait()
        watch = asyncio.create_task(watch_peers(self.ctx, self.peers_to_watch, self.in_service), name="peer-watch")
        try:
            if self.state == RolloutState.ABORTED and self._in_flight_first:
                await self._make_in_flight_safe()
            while self.state != RolloutState.ABORTED:
                if self.state == RolloutState.PAUSED:
                    if self.exit_on_pause:
                        break
                    await self._wait_state_change()
                    continue
                resumed = self._in_flight_first
                if not resumed and self._pause_before_batch():
                    continue
                batch = self._take_batch()
                if batch is None:
                    break
                names, retries = batch
                self._emit(
                    BatchStarted(
                        index=self.batch_index, total=self.batch_total, appliances=tuple(names), retries=retries
                    )
                )
                before = self.failures()
                await self._run_batch(names, resumed=set(resumed))
                new_failures = self.failures() - before
                self._emit(self._batch_finished(names, new_failures, retries))
                if self.state == RolloutState.RUNNING and new_failures and self.options.pause_on_failure:
                    if self._work_left():
                        self._auto_pause(f"batch {self.batch_index} had {new_failures} failure(s)")
            await self._reconnect_clusters()
        except asyncio.CancelledError:
            # segtui is quitting: stop where we are; the journal lets `segtui resume` continue.
            for _, task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*(t for _, t in list(self._running.values())), return_exceptions=True)
            self._locks.release_all()
            raise
        finally:
            await self._wait_for_running()  # first: a procedure's guard may be waiting for a peer reading
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await self.ctx.connections.close()
        return self._finish()

    async def _make_in_flight_safe(self) -> None:
        """An aborted rollout's appliances caught in flight: each brought to a safe end, nothing new started."""
        names, self._in_flight_first = self._in_flight_first, []
        for name in names:
            self._launch(name)
            if name in self._running:
                self._running[name][0].request_stop(Aborted(State.PENDING, "aborted earlier: made safe"))
        await self._wait_for_running()

    def _batch_finished(self, names: list[str], failures: int, retries: bool) -> BatchFinished:
        states = [self.records[n].state.value for n in names]
        tally = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        what = "retries" if retries else f"batch {self.batch_index} of {self.batch_total}"
        return BatchFinished(
            index=self.batch_index,
            failures=failures,
            total=self.batch_total,
            summary=f"{what} finished: {tally}",
            retries=retries,
        )

    def _work_left(self) -> bool:
        return bool(self._retries) or any(
            self.records[n].state == State.PENDING for b in self._plan[self.batch_index :] for n in b
        )

    def _pause_before_batch(self) -> bool:
        """Before a new batch: the failure budget, then the window. True when it paused."""
        if not self._work_left():
            return False
        if self.budget_spent():
            self._auto_pause(self._budget_message().split("; unpausing")[0])
            return True
        if self.options.until is not None:
            candidates = self._retries + [
                n for b in self._plan[self.batch_index :] for n in b if self.records[n].state == State.PENDING
            ]
            if candidates and not any(self._fits_window(n) for n in candidates):
                self._close_window()
                return True
        return False

    def _close_window(self) -> None:
        assert self.options.until is not None
        left = sum(1 for r in self.records.values() if r.state == State.PENDING)
        self._auto_pause(
            f"window closes at {clock_text(self.options.until)}: {left} appliances left for the next window",
            window=True,
        )

    def _fits_window(self, name: str) -> bool:
        if self.options.until is None:
            return True
        return time.time() + self._expected_seconds(name) <= self.options.until

    def _take_batch(self) -> tuple[list[str], bool] | None:
        """The next batch's appliances (with any retries joining it), or the final pass of retries; None at the end."""
        names: list[str] = list(self._in_flight_first)
        self._in_flight_first = []
        while self.batch_index < len(self._plan):
            self.batch_index += 1
            names += [
                n for n in self._plan[self.batch_index - 1] if self.records[n].state == State.PENDING and n not in names
            ]
            if names:
                break
        retries = [n for n in self._retries if n not in names]
        self._retries = []
        if names:
            return names + retries, False
        if retries:
            return retries, True
        return None

    async def _wait_state_change(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    def out_of_service(self, group: str) -> set[str]:
        """Appliances of a capacity group out of service now: in a procedure, or with listeners suspended."""
        return {
            n
            for n, spec in self.specs.items()
            if spec.group == group
            and (
                n in self._running
                or (self.records[n].listeners in UNAVAILABLE_LISTENERS and not self.records[n].given_up)
            )
        }

    def in_service(self) -> set[str]:
        """The appliances carrying mail now: listeners active, and not already going out (`suspended_by_us` is
        journaled before the suspend command). A peer that already failed in this rollout is a reported problem,
        counted against the budget: the guards rely on the healthy ones rather than hold its whole group on it."""
        return {
            n
            for n, rec in self.records.items()
            if rec.listeners == "active" and not rec.suspended_by_us and rec.state not in FAILURE_STATES
        }

    def in_service_peers(self, name: str) -> list[ApplianceSpec]:
        """The other members of the appliance's capacity group in service: the ones that take its share while it is
        out of service (the capacity guard checks them)."""
        group = self.specs[name].group
        carrying = self.in_service()
        return [spec for n, spec in self.specs.items() if n != name and spec.group == group and n in carrying]

    def peers_to_watch(self) -> list[ApplianceSpec]:
        """The in-service peers of the appliances whose listeners are down now: where their mail goes meanwhile.
        Not the ones running their own procedure: it reports their queue itself (and needs no second session)."""
        out = {
            n
            for n, rec in self.records.items()
            if rec.suspended_by_us or (rec.listeners in UNAVAILABLE_LISTENERS and n in self._running)
        }
        groups = {self.specs[n].group for n in out}
        carrying = self.in_service()
        return [
            spec
            for n, spec in self.specs.items()
            if spec.group in groups and n in carrying and n not in out and n not in self._running
        ]

    def _blocked(self, name: str) -> str | None:
        """Why the appliance cannot start now (capacity, cluster, concurrency), or None."""
        spec = self.specs[name]
        if len(self._running) >= self.options.concurrency:
            return "concurrency cap"
        out = self.out_of_service(spec.group)
        if name not in out and len(out) >= self.options.max_unavailable:
            idle = sorted(n for n in out if n not in self._running)
            by_hand = f" ({', '.join(idle)} with listeners suspended)" if idle else ""
            return (
                f"group {spec.group}: {len(out)} out of service{by_hand}, --max-unavailable "
                f"{self.options.max_unavailable}"
            )
        if spec.cluster and any(self.specs[n].cluster == spec.cluster for n in self._running):
            return f"cluster {spec.cluster}: one machine at a time"
        return None

    async def _run_batch(self, names: list[str], *, resumed: set[str] | None = None) -> None:
        resumed = resumed or set()
        # The longest procedures (by the pre-flight's plan) start first.
        waiting = sorted(names, key=lambda n: -self.ctx.upgrades_left(n))
        while True:
            # Retries arriving during a batch join it.
            waiting += [n for n in self._retries if n not in waiting]
            self._retries = []
            if self.state == RolloutState.ABORTED:
                break
            self._take_pending_pause()
            if self.state == RolloutState.RUNNING:
                blocked: list[str] = []
                for name in list(waiting):
                    if self._pending_pause is not None:
                        break  # a guard timed out: nothing more starts
                    if self.budget_spent():
                        # The budget is the whole rollout's, counted as failures happen, not batch by batch.
                        self._auto_pause(self._budget_message().split("; unpausing")[0])
                        break
                    rec = self.records[name]
                    if rec.state not in (State.PENDING, State.RUNNING):
                        waiting.remove(name)  # skipped meanwhile
                        continue
                    if name not in resumed and not self._fits_window(name):
                        continue
                    why = self._blocked(name)
                    if why is None:
                        waiting.remove(name)
                        self._launch(name)
                    else:
                        blocked.append(why)
                if not self._take_pending_pause() and waiting and not self._running:
                    if blocked:
                        # Nothing in flight will free capacity: a person has to resume listeners or raise the limit.
                        self._auto_pause(f"cannot start anything: {blocked[0]}")
                    elif self.options.until is not None:
                        self._close_window()
            if not waiting and not self._running:
                break
            if self.state == RolloutState.PAUSED and self.exit_on_pause and not self._running:
                break
            self._wake.clear()
            await self._wake.wait()
        # Stopped early: whatever did not start stays pending and joins the next batch or pass.
        left = [n for n in waiting if self.records[n].state == State.PENDING]
        self._retries = left + [n for n in self._retries if n not in left]

    def _take_pending_pause(self) -> bool:
        """A guard timed out: the rollout pauses (an overloaded group is for the operator to judge)."""
        if self._pending_pause is None:
            return False
        reason, self._pending_pause = self._pending_pause, None
        self._auto_pause(f"guard: {reason}")
        return True

    def _launch(self, name: str) -> None:
        spec = self.specs[name]
        rec = self.records[name]
        refused = self._locks.acquire(name, spec.host, spec.port)
        if refused is not None:
            rec.state = State.NEEDS_ATTENTION
            rec.error = refused
            rec.finished = time.time()
            self.journal.save(rec)
            self._emit(ApplianceStateChanged(appliance=name, state=rec.state, version=rec.current, error=refused))
            return
        proc = ApplianceProcedure(self.ctx, spec, rec, unpaused=self._unpaused)
        task = asyncio.create_task(proc.run(), name=f"upgrade-{name}")
        self._running[name] = (proc, task)

        def done(_t: asyncio.Task[State]) -> None:
            self._running.pop(name, None)
            self._locks.release(name)
            if rec.state == State.PENDING and self.state != RolloutState.ABORTED and name not in self._retries:
                self._retries.insert(0, name)  # put back (a guard timed out): it goes again after the pause
            self._wake.set()

        task.add_done_callback(done)

    def _lock_serial(self, name: str, serial: str) -> None:
        """The same box may sit in two inventories under two addresses: once its serial is known, lock that too."""
        if name not in self._running:
            return
        refused = self._locks.acquire_serial(name, serial)
        if refused is not None:
            proc, _ = self._running[name]
            proc.give_up(f"serial {serial}: {refused}")

    async def _reconnect_clusters(self) -> None:
        if self.state == RolloutState.ABORTED:
            return
        clusters: dict[str, list[str]] = {}
        for spec in self.inventory.appliances:
            if spec.cluster:
                clusters.setdefault(spec.cluster, []).append(spec.name)
        for cluster, members in clusters.items():
            recs = [self.records[m] for m in members]
            if not any(r.cluster_disconnected for r in recs):
                continue
            if not all(r.state == State.DONE for r in recs):
                note = f"cluster {cluster}: not every machine is on {self.target}; left disconnected"
                if note not in self.notes.clusters:
                    self.notes.clusters.append(note)
                    self._emit(Note(text=note, level="warning"))
                continue
            for name in members:
                rec = self.records[name]
                if not rec.cluster_disconnected:
                    continue
                proc = ApplianceProcedure(self.ctx, self.specs[name], rec)
                try:
                    # The machine is picked by its own hostname, learned from the appliance.
                    await proc.step(Step.RECONNECT, self.settings.deadlines.point, proc.reconnect_cluster)
                    rec.cluster_disconnected = False
                    self.journal.save(rec)
                    self._emit(ApplianceStateChanged(appliance=name, state=State.DONE, version=rec.current))
                except ApplianceError as exc:
                    note = f"cluster {cluster}: {exc.message}"
                    self.notes.clusters.append(note)
                    self._emit(Note(appliance=name, text=note, level="error"))
                    # Upgraded and serving mail, but not back in its cluster: a human decides.
                    self._emit(ApplianceStateChanged(appliance=name, state=State.DONE, version=rec.current, error=note))
                finally:
                    await proc.client.close()
            else:
                self.notes.clusters.append(f"cluster {cluster}: every machine reconnected on {self.target}")

    async def _wait_for_running(self) -> None:
        if self._running:
            await asyncio.gather(*(t for _, t in self._running.values()), return_exceptions=True)

    def _finish(self) -> Outcome:
        outcome = self.outcome()
        if outcome.final:
            self.journal.finish(outcome.value)
            if self.state != RolloutState.ABORTED:
                self._set_state(RolloutState.DONE, outcome.value)
        self._locks.release_all()
        return outcome
