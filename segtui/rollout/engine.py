"""The fleet rollout: rolling batches under capacity limits, a fleet-wide failure budget, controls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from segtui.asyncos.errors import ApplianceError
from segtui.asyncos.versions import Version
from segtui.inventory import ApplianceSpec, Inventory
from segtui.rollout.batches import (
    BatchStep,
    FailureBudget,
    batch_sizes,
    interleave_groups,
    parse_batch_spec,
    parse_failure_budget,
)
from segtui.rollout.context import RolloutContext
from segtui.rollout.events import (
    FAILURE_STATES,
    FINAL_STATES,
    ApplianceStateChanged,
    BatchFinished,
    BatchStarted,
    ListenersChanged,
    Note,
    RolloutEvent,
    RolloutState,
    RolloutStateChanged,
    State,
    Step,
)
from segtui.rollout.journal import ApplianceRecord, Journal
from segtui.rollout.procedure import Aborted, ApplianceProcedure
from segtui.settings import Settings


@dataclass
class RolloutOptions:
    batch: str = "1,25%"
    max_fail: str = "0"
    max_unavailable: int = 1
    pause_on_failure: bool = False
    concurrency: int = 50

    def steps(self) -> list[BatchStep]:
        return parse_batch_spec(self.batch)

    def budget(self) -> FailureBudget:
        return parse_failure_budget(self.max_fail)


@dataclass
class FleetNotes:
    clusters: list[str] = field(default_factory=list)


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
        self.settings = settings
        self.target = target
        self.journal = journal
        self.options = options
        self.exit_on_pause = exit_on_pause
        self.state = RolloutState.READY
        self._subscribers: list[Callable[[RolloutEvent], None]] = []
        self.ctx = RolloutContext(inventory, settings, target, journal, self._emit)
        self.records: dict[str, ApplianceRecord] = {}
        self.specs: dict[str, ApplianceSpec] = {a.name: a for a in inventory.appliances}
        self._started = asyncio.Event()
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._wake = asyncio.Event()
        self._running: dict[str, tuple[ApplianceProcedure, asyncio.Task[State]]] = {}
        self._queue: list[str] = []
        self.batch_index = 0
        self.batch_total = 0
        self.started_at: float | None = None
        self.notes = FleetNotes()
        self.pause_reason = ""
        self._budget = options.budget()
        self._steps = options.steps()
        # From the pre-flight: how many upgrades each appliance needs (hops + 1). Within a batch the
        # longest procedures start first, so that they are not queued behind the batch's handshakes.
        self.expected_upgrades: dict[str, int] = {}

    # --- events --------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[RolloutEvent], None]) -> None:
        self._subscribers.append(callback)

    def _emit(self, event: RolloutEvent) -> None:
        if isinstance(event, ApplianceStateChanged):
            self._wake.set()
        for callback in self._subscribers:
            callback(event)

    def _set_state(self, state: RolloutState, reason: str = "") -> None:
        self.state = state
        if state == RolloutState.PAUSED:
            self._unpaused.clear()
            self.pause_reason = reason
        else:
            self._unpaused.set()
        self._wake.set()
        self._emit(RolloutStateChanged(state=state, reason=reason))

    # --- set-up --------------------------------------------------------------------------------
    def begin(self) -> None:
        """A new rollout: every appliance pending, journaled."""
        self.journal.begin(str(self.inventory.path), str(self.target), asdict(self.options))
        self.journal.action("created", f"target {self.target}")
        for spec in self.inventory.appliances:
            rec = ApplianceRecord(name=spec.name)
            self.records[spec.name] = rec
            self.journal.save(rec)
        self._plan_queue()

    def attach(self, rollout_id: int) -> None:
        """Continue a journaled rollout after segtui stopped or crashed."""
        self.journal.attach(rollout_id)
        self.journal.reopen()
        self.journal.action("resumed")
        self.records = self.journal.records()
        for spec in self.inventory.appliances:
            self.records.setdefault(spec.name, ApplianceRecord(name=spec.name))
        self._plan_queue()

    def _plan_queue(self) -> None:
        groups: dict[str, list[str]] = {}
        for spec in self.inventory.appliances:
            groups.setdefault(spec.group, []).append(spec.name)
        order = interleave_groups(groups)
        # Appliances caught mid-procedure by a crash go first: they are already out of service.
        in_flight = [n for n in order if self.records[n].state == State.RUNNING]
        pending = [n for n in order if self.records[n].state == State.PENDING]
        self._queue = in_flight + pending
        self._in_flight_first = set(in_flight)
        done_count = sum(1 for r in self.records.values() if r.state in FINAL_STATES)
        sizes = batch_sizes(self._steps, len(self.records))
        consumed, idx = 0, 0
        while idx < len(sizes) and consumed + sizes[idx] <= done_count:
            consumed += sizes[idx]
            idx += 1
        self.batch_index = idx
        self._sizes = sizes
        self.batch_total = len(sizes)

    # --- controls (the dashboard's API) --------------------------------------------------------
    def start(self) -> None:
        if self.state == RolloutState.READY:
            self.journal.action("start")
            self.started_at = time.time()
            self._started.set()
            self._set_state(RolloutState.RUNNING)
        elif self.state == RolloutState.PAUSED:
            self.unpause()

    def pause(self, reason: str = "paused by operator") -> None:
        if self.state == RolloutState.RUNNING:
            self.journal.action("pause")
            self._set_state(RolloutState.PAUSED, reason)

    def unpause(self) -> None:
        if self.state == RolloutState.PAUSED:
            self.journal.action("unpause")
            self._set_state(RolloutState.RUNNING)

    def abort(self) -> None:
        if self.state in (RolloutState.ABORTED, RolloutState.DONE):
            return
        self.journal.action("abort")
        was_ready = self.state == RolloutState.READY
        self._set_state(RolloutState.ABORTED, "aborted by operator")
        for proc, _task in self._running.values():
            if not proc.request_stop(Aborted(State.PENDING, "aborted by operator before its upgrade")):
                self._emit(Note(appliance=proc.name, text="upgrade under way: finishing it safely"))
        if was_ready:
            self._started.set()

    def skip(self, name: str) -> str:
        rec = self.records[name]
        if name in self._running:
            proc, _ = self._running[name]
            if not proc.request_stop(Aborted(State.SKIPPED, "skipped by operator")):
                return f"{name}: upgrade under way, cannot skip now"
            self.journal.action("skip", name)
            return f"{name}: skipping"
        if rec.state == State.PENDING:
            self.journal.action("skip", name)
            rec.state = State.SKIPPED
            rec.error = "skipped by operator"
            self.journal.save(rec)
            if name in self._queue:
                self._queue.remove(name)
            self._emit(ApplianceStateChanged(appliance=name, state=State.SKIPPED, version=rec.current))
            return f"{name}: skipped"
        return f"{name}: is {rec.state}, nothing to skip"

    def retry(self, name: str) -> str:
        rec = self.records[name]
        if rec.state not in (State.FAILED, State.SKIPPED):
            return f"{name}: is {rec.state}, only failed or skipped appliances can be retried"
        self.journal.action("retry", name)
        rec.state = State.PENDING
        rec.error = None
        self.journal.save(rec)
        self._queue.append(name)
        self._emit(ApplianceStateChanged(appliance=name, state=State.PENDING, version=rec.current))
        self._wake.set()
        return f"{name}: queued again"

    async def change_listeners(self, names: list[str], suspend: bool) -> dict[str, str]:
        """Suspend or resume listeners on appliances outside the procedure (operator action)."""
        results: dict[str, str] = {}

        async def one(name: str) -> None:
            if name in self._running:
                results[name] = "in flight: the procedure owns its listeners"
                return
            spec = self.specs[name]
            rec = self.records[name]
            self.journal.action("suspend-listeners" if suspend else "resume-listeners", name)
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
        return results

    # --- running -------------------------------------------------------------------------------
    def failures(self) -> int:
        return sum(1 for r in self.records.values() if r.state in FAILURE_STATES)

    def budget_spent(self) -> bool:
        return self.failures() > self._budget.allowed(len(self.records))

    async def run(self, *, autostart: bool = False) -> str:
        """Run to the end (or pause/abort); returns the outcome."""
        if autostart:
            self.start()
        await self._started.wait()
        try:
            while self._queue and self.state != RolloutState.ABORTED:
                if self.state == RolloutState.PAUSED:
                    if self.exit_on_pause:
                        break
                    await self._wait_state_change()
                    continue
                size = self._next_batch_size()
                names = self._queue[:size]
                del self._queue[:size]
                self.batch_index += 1
                self.batch_total = max(self.batch_total, self.batch_index)
                self._emit(BatchStarted(index=self.batch_index, total=self.batch_total, appliances=tuple(names)))
                before = self.failures()
                await self._run_batch(names)
                new_failures = self.failures() - before
                self._emit(BatchFinished(index=self.batch_index, failures=new_failures))
                if self.state == RolloutState.RUNNING and self._queue:
                    if self.budget_spent():
                        self.pause(f"failure budget spent: {self.failures()} failed, {self._budget} allowed")
                    elif new_failures and self.options.pause_on_failure:
                        self.pause(f"batch {self.batch_index} had {new_failures} failure(s)")
            await self._reconnect_clusters()
        except asyncio.CancelledError:
            # segtui is quitting: stop where we are; the journal lets `segtui resume` continue.
            for _, task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*(t for _, t in list(self._running.values())), return_exceptions=True)
            raise
        finally:
            await self._wait_for_running()
        return self._finish()

    def _next_batch_size(self) -> int:
        if self._in_flight_first:
            n = len(self._in_flight_first)
            self._in_flight_first = set()
            return n
        idx = min(self.batch_index, len(self._sizes) - 1)
        return max(1, self._sizes[idx] if idx < len(self._sizes) else self._sizes[-1])

    async def _wait_state_change(self) -> None:
        self._wake.clear()
        await self._wake.wait()

    def _eligible(self, name: str) -> bool:
        spec = self.specs[name]
        if len(self._running) >= min(self.options.concurrency, self.settings.concurrency):
            return False
        group_down = sum(1 for n in self._running if self.specs[n].group == spec.group)
        if group_down >= self.options.max_unavailable:
            return False
        if spec.cluster and any(self.specs[n].cluster == spec.cluster for n in self._running):
            return False  # one machine of a cluster at a time
        return True

    async def _run_batch(self, names: list[str]) -> None:
        waiting = sorted(names, key=lambda n: -self.expected_upgrades.get(n, 1))
        while waiting or self._running:
            if self.state == RolloutState.ABORTED:
                waiting = []
            if self.state == RolloutState.RUNNING:
                for name in list(waiting):
                    rec = self.records[name]
                    if rec.state != State.PENDING and rec.state != State.RUNNING:
                        waiting.remove(name)  # skipped meanwhile
                        continue
                    if self._eligible(name):
                        waiting.remove(name)
                        self._launch(name)
            # Retries arriving during a batch join it when there is room.
            if not waiting and not self._running:
                break
            self._wake.clear()
            await self._wake.wait()
        # Abort: whatever did not start stays pending and goes back to the queue front.
        for name in waiting:
            if name not in self._queue:
                self._queue.insert(0, name)

    def _launch(self, name: str) -> None:
        proc = ApplianceProcedure(self.ctx, self.specs[name], self.records[name], unpaused=self._unpaused)
        task = asyncio.create_task(proc.run(), name=f"upgrade-{name}")
        self._running[name] = (proc, task)

        def done(_t: asyncio.Task[State]) -> None:
            self._running.pop(name, None)
            self._wake.set()

        task.add_done_callback(done)

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
                self.notes.clusters.append(note)
                self._emit(Note(text=note, level="warning"))
                continue
            for name in members:
                rec = self.records[name]
                if not rec.cluster_disconnected:
                    continue
                proc = ApplianceProcedure(self.ctx, self.specs[name], rec)

                async def reconnect(proc: ApplianceProcedure = proc, name: str = name) -> None:
                    await proc.client.cluster_reconnect(name)

                try:
                    await proc.step(Step.RECONNECT, self.settings.deadlines.point, reconnect)
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

    def _finish(self) -> str:
        states = [r.state for r in self.records.values()]
        if self.state == RolloutState.ABORTED:
            outcome = "aborted"
        elif self.state == RolloutState.PAUSED or any(s in (State.PENDING, State.RUNNING) for s in states):
            outcome = "paused"
        elif any(s in FAILURE_STATES for s in states):
            outcome = "failed"
        else:
            outcome = "completed"
        if outcome != "paused":
            self.journal.finish(outcome)
            if self.state != RolloutState.ABORTED:
                self._set_state(RolloutState.DONE, outcome)
        self.outcome = outcome
        return outcome
