"""The seed procedure for one appliance, step by step, journaled so that it can continue after a crash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from segtui.asyncos.commands import Appliance
from segtui.asyncos.errors import (
    ApplianceError,
    AuthFailed,
    CommandFailed,
    ConnectFailed,
    ConnectionLost,
    HostKeyRejected,
    UpgradeFailed,
)
from segtui.asyncos.parsers import UpgradeProgress, UpgradeSource
from segtui.asyncos.versions import Version
from segtui.inventory import ApplianceSpec
from segtui.rollout.context import RolloutContext
from segtui.rollout.events import (
    STEP_SPAN,
    ApplianceStateChanged,
    ListenersChanged,
    Note,
    State,
    Step,
    StepFinished,
    StepStarted,
    UpgradeProgressed,
    WorkQueueDepth,
)
from segtui.rollout.journal import ApplianceRecord
from segtui.rollout.reboot import RebootPoller, RebootTimeout, WrongVersion

T = TypeVar("T")

# Steps that may simply be tried again after a dropped connection.
RETRYABLE = {
    Step.PRECHECK,
    Step.BACKUP,
    Step.POINT,
    Step.SUSPEND,
    Step.DRAIN,
    Step.VERIFY,
    Step.RESUME_LISTENERS,
    Step.RESTORE,
    Step.DISCONNECT,
    Step.RECONNECT,
    Step.UPGRADE,
}


# A pause holds an appliance before these steps only: steps that bring it back are never held,
# so a paused rollout does not keep mail capacity down.
HOLDABLE = {Step.BACKUP, Step.DISCONNECT, Step.POINT, Step.SUSPEND, Step.DRAIN, Step.UPGRADE}


class StepTimeout(ApplianceError):
    """A step ran past its deadline."""


class NotHealthy(ApplianceError):
    """Pre-check refused the appliance."""


class Aborted(Exception):
    """The operator aborted or skipped this appliance before its upgrade began."""

    def __init__(self, state: State, reason: str) -> None:
        super().__init__(reason)
        self.state = state


# Failures after which the appliance cannot be reached to resume it: flagged for a human.
UNREACHABLE = (RebootTimeout, HostKeyRejected, AuthFailed)


async def _cancel_and_wait(work: asyncio.Future[Any]) -> None:
    """Cancel until it is really over: a cancellation can be lost in a race inside the work."""
    while not work.done():
        work.cancel()
        await asyncio.wait([work], timeout=0.2)


class ApplianceProcedure:
    """Runs (or continues) the procedure for one appliance; always leaves it in a known, safe state."""

    def __init__(
        self,
        ctx: RolloutContext,
        spec: ApplianceSpec,
        record: ApplianceRecord,
        *,
        unpaused: asyncio.Event | None = None,
    ) -> None:
        self.ctx = ctx
        self._unpaused = unpaused
        self.spec = spec
        self.rec = record
        self.name = spec.name
        self.client: Appliance = ctx.appliance(spec)
        self.past_point_of_no_return = False
        self.stop_request: Aborted | None = None
        self._stop_event = asyncio.Event()

    def request_stop(self, stop: Aborted) -> bool:
        """Abort or skip: interrupts the current step unless the upgrade is already under way."""
        if self.past_point_of_no_return:
            return False
        self.stop_request = stop
        self._stop_event.set()
        return True

    # --- bookkeeping ---------------------------------------------------------------------------
    def save(self) -> None:
        self.ctx.journal.save(self.rec)

    def set_state(self, state: State, error: str | None = None) -> None:
        self.rec.state = state
        self.rec.error = error
        if state in (State.DONE, State.FAILED, State.SKIPPED, State.NEEDS_ATTENTION):
            self.rec.finished = time.time()
            self.rec.step = None
        self.save()
        self.ctx.emit(ApplianceStateChanged(appliance=self.name, state=state, version=self.rec.current, error=error))

    def record_listeners(self, value: str) -> None:
        self.rec.listeners = value
        self.save()
        self.ctx.emit(ListenersChanged(appliance=self.name, listeners=value))

    def progress(self, step: Step, fraction: float = 0.0, line: str = "", phase: str | None = None) -> None:
        lo, hi, default_phase = STEP_SPAN[step]
        pct = lo + (hi - lo) * max(0.0, min(1.0, fraction))
        self.ctx.emit(UpgradeProgressed(appliance=self.name, phase=phase or default_phase, percent=pct, line=line))

    def note(self, text: str, level: str = "info") -> None:
        self.rec.message = text
        self.ctx.emit(Note(appliance=self.name, text=text, level=level))

    async def step(self, step: Step, deadline: float, fn: Callable[[], Awaitable[T]]) -> T:
        if self.stop_request is not None and not self.past_point_of_no_return:
            raise self.stop_request
        if step in HOLDABLE and self._unpaused is not None and not self._unpaused.is_set():
            self.note(f"paused before {step.value}")
            unpaused = self._unpaused
            await self._interruptible(unpaused.wait)
        self.rec.step = step.value
        self.save()
        self.ctx.emit(StepStarted(appliance=self.name, step=step))
        self.progress(step)
        step_id = self.ctx.journal.step_started(self.name, step.value)
        attempt = 0
        end: float | None = None
        while True:
            try:
                # The session first, outside the step's deadline: waiting for a handshake slot is segtui's
                # own queue, not the appliance being slow; connecting has its own connect/login timeouts.
                await self.client.session()
                if end is None:
                    end = time.monotonic() + deadline
                async with asyncio.timeout(max(0.01, end - time.monotonic())):
                    result = await self._interruptible(fn)
                break
            except TimeoutError:
                await self.client.close()
                exc: ApplianceError = StepTimeout(self.name, f"{step.value} exceeded its deadline of {deadline:g} s")
                self.ctx.journal.step_finished(step_id, False, exc.message)
                self.ctx.emit(StepFinished(appliance=self.name, step=step, ok=False, message=exc.message))
                raise exc from None
            except (ConnectFailed, ConnectionLost) as err:
                await self.client.close()
                if step in RETRYABLE and attempt < 4 and (end is None or time.monotonic() < end):
                    attempt += 1
                    self.note(f"{step.value}: {err.message}; retrying ({attempt})", "warning")
                    pause = self.ctx.settings.polling.reboot_initial * attempt
                    await asyncio.sleep(pause if end is None else min(pause, max(0.0, end - time.monotonic())))
                    continue
                self.ctx.journal.step_finished(step_id, False, err.message)
                self.ctx.emit(StepFinished(appliance=self.name, step=step, ok=False, message=err.message))
                raise
            except BaseException as err:
                message = err.message if isinstance(err, ApplianceError) else type(err).__name__
                self.ctx.journal.step_finished(step_id, False, message)
                self.ctx.emit(StepFinished(appliance=self.name, step=step, ok=False, message=message))
                raise
        self.ctx.journal.step_finished(step_id, True)
        self.ctx.emit(StepFinished(appliance=self.name, step=step, ok=True))
        self.progress(step, 1.0)
        return result

    async def _interruptible(self, fn: Callable[[], Awaitable[T]]) -> T:
        work: asyncio.Future[T] = asyncio.ensure_future(fn())
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop_event.wait())
        try:
            while True:
                pending: list[asyncio.Future[Any]] = [work, stop]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if work.done():
                    return work.result()
                if self.past_point_of_no_return or self.stop_request is None:
                    # The upgrade was confirmed meanwhile: it must run to its end.
                    stop = asyncio.ensure_future(asyncio.Event().wait())
                    continue
                await _cancel_and_wait(work)
                raise self.stop_request
        finally:
            stop.cancel()
            if not work.done():
                await _cancel_and_wait(work)

    # --- the procedure -------------------------------------------------------------------------
    async def run(self) -> State:
        rec = self.rec
        rec.started = rec.started or time.time()
        self.set_state(State.RUNNING)
        try:
            await self._procedure()
        except Aborted as stop:
            return await self._make_safe(None, stop.state, str(stop))
        except asyncio.CancelledError:
            # segtui itself is shutting down: leave the journal as it is, `resume` continues.
            await self.client.close()
            raise
        except UNREACHABLE as exc:
            return await self._make_safe(exc, State.NEEDS_ATTENTION, exc.message)
        except ApplianceError as exc:
            return await self._make_safe(exc, State.FAILED, exc.message)
        except Exception as exc:
            # Never leave an appliance "running" on a surprise: a human looks at it.
            return await self._make_safe(exc, State.NEEDS_ATTENTION, f"unexpected error: {exc!r}")
        finally:
            await self.client.close()
        self.set_state(State.DONE)
        return State.DONE

    async def _procedure(self) -> None:
        rec = self.rec
        d = self.ctx.settings.deadlines
        target = self.ctx.target
        if rec.confirmed_upgrade_to is None:
            await self.step(Step.PRECHECK, d.precheck, self._precheck)
        while True:
            if rec.confirmed_upgrade_to is not None:
                self.past_point_of_no_return = True
                await self._reboot_and_verify()
                self.past_point_of_no_return = False
            assert rec.current is not None
            if Version.parse(rec.current) == target:
                break
            if not rec.backups:
                await self.step(Step.BACKUP, d.backup, self._backup)
            if self.spec.cluster and not rec.cluster_disconnected:
                await self.step(Step.DISCONNECT, d.point, self._cluster_disconnect)
            await self.step(Step.POINT, d.point, self._point_updates)
            if not rec.suspended_by_us and not rec.suspended_elsewhere:
                await self.step(Step.SUSPEND, d.suspend, self._suspend)
            await self.step(Step.DRAIN, d.drain, self._drain)
            await self.step(Step.UPGRADE, d.upgrade, self._upgrade)
        if rec.suspended_by_us:
            await self.step(Step.RESUME_LISTENERS, d.resume, self._resume_listeners)
        if rec.pointed:
            await self.step(Step.RESTORE, d.resume, self._restore)

    async def _precheck(self) -> None:
        rec = self.rec
        info = await self.client.version()
        # status detail carries the work-queue gauge too: one command less per appliance at the start,
        # when the whole batch connects at once.
        status = await self.client.status_detail()
        rec.current = str(info.version)
        if rec.version_before is None:
            rec.version_before = rec.current
        if info.version > self.ctx.target:
            raise NotHealthy(self.name, f"runs {info.version}, newer than the target {self.ctx.target}")
        if "offline" in status.system_status.lower():
            raise NotHealthy(self.name, f"system status is {status.system_status!r}")
        self.ctx.emit(WorkQueueDepth(appliance=self.name, depth=status.workqueue_messages, draining=False))
        if rec.suspended_by_us and not status.receiving_suspended:
            # Journaled before the command, but segtui stopped before the appliance acted on it:
            # the truth is "receiving", so suspend again.
            rec.suspended_by_us = False
            self.record_listeners("active")
        if not rec.suspended_by_us:
            # A suspension we did not make is left as it is: we drain, upgrade, and never resume it.
            rec.suspended_elsewhere = status.receiving_suspended
            self.record_listeners("suspended" if status.receiving_suspended else "active")
            if rec.suspended_elsewhere:
                self.note("receiving was already suspended: it stays suspended after the upgrade")
        self.save()

    async def _backup(self) -> None:
        remote = await self.client.saveconfig()
        directory = self.ctx.backup_dir / self.name
        backup = await self.client.download(remote, directory, "config")
        backups = [{"kind": "config", "path": str(backup.path), "sha256": backup.sha256, "remote": remote}]
        self.progress(Step.BACKUP, 0.5, f"config saved: {backup.path.name}")
        slbl = await self.client.slbl_export()
        if slbl is None:
            self.note("safelist/blocklist is off: nothing to back up")
        else:
            sl = await self.client.download(slbl, directory, "safelist")
            backups.append({"kind": "safelist", "path": str(sl.path), "sha256": sl.sha256, "remote": slbl})
        self.rec.backups = backups
        self.save()

    async def _cluster_disconnect(self) -> None:
        await self.client.cluster_disconnect(self.spec.name)
        self.rec.cluster_disconnected = True
        self.save()

    async def _point_updates(self) -> None:
        rec = self.rec
        if rec.original_source is None:
            original = await self.client.upgrade_source()
            # Recorded before any change, and never overwritten: restore puts back the operator's setting.
            rec.original_source = {"images": original.images, "manifest": original.manifest}
            self.save()
        assert rec.current is not None
        source = self.ctx.local_upgrade_source(Version.parse(rec.current))
        await self.client.set_upgrade_source(source)
        rec.pointed = True
        self.save()
        await self.client.commit(f"segtui: AsyncOS upgrades from {source.manifest}")

    async def _suspend(self) -> None:
        # Journaled before the command: a crash mid-command must still lead to a resume.
        self.rec.suspended_by_us = True
        self.save()
        await self.client.suspend_listeners(self.ctx.settings.listener_close_seconds)
        self.record_listeners("suspended")

    async def _drain(self) -> None:
        start_depth: int | None = None
        while True:
            wq = await self.client.workqueue_status()
            start_depth = wq.messages if start_depth is None else start_depth
            self.ctx.emit(WorkQueueDepth(appliance=self.name, depth=wq.messages, draining=wq.messages > 0))
            done = 1.0 if not start_depth else 1 - wq.messages / start_depth
            self.progress(Step.DRAIN, done, f"work queue {wq.messages}")
            if wq.messages == 0:
                return
            await asyncio.sleep(self.ctx.settings.polling.workqueue)

    async def _upgrade(self) -> None:
        rec = self.rec
        # The invariant: never upgrade while mail is in the work queue.
        wq = await self.client.workqueue_status()
        self.ctx.emit(WorkQueueDepth(appliance=self.name, depth=wq.messages, draining=wq.messages > 0))
        if wq.messages != 0:
            raise CommandFailed(self.name, f"work queue holds {wq.messages} messages: not upgrading")
        if self.stop_request is not None:
            raise self.stop_request

        def on_progress(p: UpgradeProgress) -> None:
            frac = {"analysis": 0.05, "download": 0.1, "install": 0.6, "reboot": 1.0}.get(p.phase, 0.0)
            if p.percent is not None and p.phase == "download":
                frac = 0.1 + 0.5 * p.percent / 100
            elif p.percent is not None and p.phase == "install":
                frac = 0.6 + 0.4 * p.percent / 100
            phase = p.phase if p.phase in ("download", "install") else "download"
            self.progress(Step.UPGRADE, frac, p.line, phase=phase)

        def before_confirm(chosen: Version) -> None:
            # The point of no return is journaled before the appliance hears "Y".
            self.past_point_of_no_return = True
            rec.confirmed_upgrade_to = str(chosen)
            rec.previous_version = rec.current
            rec.saw_down = False
            rec.upgrades_confirmed += 1
            self.save()

        staged = self.ctx.staged.get(self.name)
        if staged is not None and rec.current is not None and staged <= Version.parse(rec.current):
            staged = None  # already installed (a hop) or stale
        try:
            result = await self.client.upgrade(
                self.ctx.target,
                close_seconds=self.ctx.settings.listener_close_seconds,
                on_progress=on_progress,
                before_confirm=before_confirm,
                staged=staged,
            )
        except UpgradeFailed:
            # AsyncOS said the upgrade did not happen: nothing is under way.
            rec.confirmed_upgrade_to = None
            self.past_point_of_no_return = False
            self.save()
            raise
        if result.installed_staged:
            rec.installed_staged = str(result.chosen)
            self.ctx.journal.set_staged(str(self.ctx.inventory.path), self.name, "installed", str(result.chosen))
            self.ctx.staged.pop(self.name, None)
            self.note(f"installing the staged image {result.chosen}: no download in the window")
        if result.chosen != self.ctx.target:
            rec.hops.append(str(result.chosen))
            self.note(f"{self.ctx.target} not offered from {rec.current}: hop via {result.chosen}")
        self.save()

    async def _reboot_and_verify(self) -> None:
        rec = self.rec
        assert rec.confirmed_upgrade_to is not None and rec.previous_version is not None
        expected = Version.parse(rec.confirmed_upgrade_to)
        previous = Version.parse(rec.previous_version)
        since = time.time()

        def on_down() -> None:
            rec.saw_down = True
            self.save()

        poller = RebootPoller(self.ctx, self.spec, on_down=on_down)
        self.rec.step = Step.REBOOT.value
        self.ctx.emit(StepStarted(appliance=self.name, step=Step.REBOOT))
        self.progress(Step.REBOOT)
        step_id = self.ctx.journal.step_started(self.name, Step.REBOOT.value)
        try:
            version = await poller.wait_for(expected, previous, rec.saw_down, since)
        except ApplianceError as exc:
            self.ctx.journal.step_finished(step_id, False, exc.message)
            self.ctx.emit(StepFinished(appliance=self.name, step=Step.REBOOT, ok=False, message=exc.message))
            if isinstance(exc, WrongVersion):
                rec.confirmed_upgrade_to = None
                self.save()
            raise
        self.ctx.journal.step_finished(step_id, True)
        self.ctx.emit(StepFinished(appliance=self.name, step=Step.REBOOT, ok=True))

        async def verify() -> None:
            info = await self.client.version()
            if info.version != expected:
                raise WrongVersion(self.name, f"runs {info.version} after the upgrade, expected {expected}")

        await self.step(Step.VERIFY, self.ctx.settings.deadlines.precheck, verify)
        rec.current = str(version)
        rec.confirmed_upgrade_to = None
        self.save()

    async def _resume_listeners(self) -> None:
        change = await self.client.resume_listeners()
        self.rec.suspended_by_us = False
        del change
        self.record_listeners("active")

    async def _restore(self) -> None:
        original = self.rec.original_source or {"images": "cisco", "manifest": "cisco"}
        await self.client.set_upgrade_source(UpgradeSource(images=original["images"], manifest=original["manifest"]))
        await self.client.commit("segtui: restore AsyncOS upgrade settings")
        self.rec.pointed = False
        self.save()

    # --- failure paths -------------------------------------------------------------------------
    async def _make_safe(self, exc: Exception | None, state: State, reason: str) -> State:
        """Resume what we suspended and restore what we pointed, unless the appliance is unreachable."""
        rec = self.rec
        self.stop_request = None  # the clean-up steps below must run
        self._stop_event.clear()
        await self.client.close()
        if self.past_point_of_no_return and rec.confirmed_upgrade_to is not None:
            # Rebooting or unknown: do not touch it, tell a human.
            self.record_listeners("unknown" if rec.suspended_by_us else rec.listeners)
            self.set_state(State.NEEDS_ATTENTION, reason)
            return State.NEEDS_ATTENTION
        if isinstance(exc, UNREACHABLE):
            if rec.suspended_by_us:
                self.record_listeners("unknown")
                self.set_state(State.NEEDS_ATTENTION, f"{reason}; listeners were suspended by segtui")
                return State.NEEDS_ATTENTION
            self.set_state(State.FAILED, reason)
            return State.FAILED
        d = self.ctx.settings.deadlines
        try:
            if rec.suspended_by_us:
                await self.step(Step.RESUME_LISTENERS, d.resume, self._resume_listeners)
            if rec.pointed:
                await self.step(Step.RESTORE, d.resume, self._restore)
        except (ApplianceError, Aborted) as cleanup_error:
            msg = getattr(cleanup_error, "message", str(cleanup_error))
            self.record_listeners("unknown" if rec.suspended_by_us else rec.listeners)
            self.set_state(State.NEEDS_ATTENTION, f"{reason}; then could not make it safe: {msg}")
            return State.NEEDS_ATTENTION
        finally:
            await self.client.close()
        self.set_state(state, reason if state != State.PENDING else None)
        if state == State.PENDING:
            self.note(reason)
        return state
