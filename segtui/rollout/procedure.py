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
from segtui.asyncos.parsers import StatusDetail, UpgradeProgress, UpgradeSource, VersionInfo
from segtui.asyncos.versions import Version
from segtui.inventory import ApplianceSpec
from segtui.rollout.context import RolloutContext
from segtui.rollout.events import (
    STEP_SPAN,
    ApplianceStateChanged,
    BakeFinished,
    BakeSampled,
    GuardTimedOut,
    GuardWaiting,
    IdentityLearned,
    ListenersChanged,
    Note,
    State,
    Step,
    StepFinished,
    StepStarted,
    UpgradeProgressed,
    WorkQueueDepth,
)
from segtui.rollout.guards import BakeFailed, BakeSample, CapacityGuard, GuardTimeout, bake
from segtui.rollout.journal import ApplianceRecord
from segtui.rollout.reboot import RebootPoller, RebootTimeout, WrongVersion
from segtui.textsafe import one_line, strip_url_credentials

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


# Short dialogues: these take a turn (rollout/turns.py), so that a large batch serves its longest procedures first.
# Steps that wait on the appliance (drain, upgrade, reboot, guard, bake) would hold a turn for minutes, and bringing
# an appliance back into service (resume-listeners) never queues behind other appliances' work.
TAKES_A_TURN = {
    Step.PRECHECK,
    Step.BACKUP,
    Step.DISCONNECT,
    Step.POINT,
    Step.SUSPEND,
    Step.VERIFY,
    Step.RESTORE,
    Step.RECONNECT,
}


class StepTimeout(ApplianceError):
    """A step ran past its deadline."""


class NotHealthy(ApplianceError):
    """Pre-check refused the appliance."""


class Aborted(Exception):
    """The operator aborted or skipped this appliance before its upgrade began."""

    def __init__(self, state: State, reason: str) -> None:
        super().__init__(reason)
        self.state = state


class GaveUp(Aborted):
    """The operator gave up on this appliance (also mid-reboot): leave it as it is, say what is left to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(State.NEEDS_ATTENTION, reason)


class IdentityChanged(ApplianceError):
    """The inventory entry now reaches another box (another serial): nothing may be done to it."""


class OtherOperator(ApplianceError):
    """Signs that someone else is at work on the appliance: refused before anything is changed."""


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
        self.client: Appliance = ctx.appliance(spec, on_unknown=self._on_unknown)
        self.past_point_of_no_return = False
        self.stop_request: Aborted | None = None
        self._stop_event = asyncio.Event()
        self._give_up: GaveUp | None = None
        self._give_up_event = asyncio.Event()
        self._override = False
        self._in_guard = False  # a capacity guard waits or a bake runs: override_guard() applies
        self._wake = asyncio.Event()  # wakes a guard or bake waiting between samples
        self._finished = False

    # --- operator controls (the engine calls these) -----------------------------------------------
    def request_stop(self, stop: Aborted) -> bool:
        """Abort or skip: interrupts the current step unless the upgrade is already under way."""
        if self.past_point_of_no_return:
            return False
        self.stop_request = stop
        self._stop_event.set()
        self._wake.set()
        return True

    def give_up(self, reason: str) -> bool:
        """Stop working on this appliance now, whatever it is doing (also a reboot being polled, past the
        point of no return): it ends `needs-attention` with `rec.left_by_hand` saying what a person must do.
        False when the procedure has already finished."""
        if self._finished:
            return False
        self._give_up = GaveUp(reason)
        self._give_up_event.set()
        self._wake.set()
        return True

    def override_guard(self) -> bool:
        """Let a waiting capacity guard or a running bake pass (the engine journals the operator's action)."""
        if not self._in_guard:
            return False
        self._override = True
        self._wake.set()
        return True

    async def reconnect_cluster(self) -> None:
        """clusterconfig RECONNECT of this machine, picked by its own hostname (never the inventory name)."""
        await self.client.cluster_reconnect(self._hostname_for_cluster("RECONNECT"))

    # --- bookkeeping ---------------------------------------------------------------------------
    def save(self) -> None:
        self.ctx.journal.save(self.rec)

    def set_state(self, state: State, error: str | None = None) -> None:
        error = self.ctx.clean(error) if error is not None else None
        self.rec.state = state
        self.rec.error = error
        if state in (State.DONE, State.FAILED, State.SKIPPED, State.NEEDS_ATTENTION):
            self.rec.finished = time.time()
            self.rec.step = None
        self.save()
        self.ctx.emit(
            ApplianceStateChanged(appliance=self.name, state=state, version=self.rec.known_version, error=error)
        )

    def record_listeners(self, value: str) -> None:
        self.rec.listeners = value
        self.save()
        self.ctx.emit(ListenersChanged(appliance=self.name, listeners=value))

    def progress(self, step: Step, fraction: float = 0.0, line: str = "", phase: str | None = None) -> None:
        lo, hi, default_phase = STEP_SPAN[step]
        pct = lo + (hi - lo) * max(0.0, min(1.0, fraction))
        line = self.ctx.clean(line) if line else line
        self.ctx.emit(UpgradeProgressed(appliance=self.name, phase=phase or default_phase, percent=pct, line=line))

    def note(self, text: str, level: str = "info") -> None:
        text = self.ctx.clean(text)
        self.rec.message = text
        self.ctx.emit(Note(appliance=self.name, text=text, level=level))

    def _on_unknown(self, command: str, question: str) -> None:
        """The driver met a question no rule knows (and took its default, or stops: the policy decides)."""
        question = self.ctx.clean(question).strip()
        self.rec.unrecognized_questions.append(
            {"command": self.ctx.clean(command), "question": question, "ts": time.time()}
        )
        self.save()
        verb = "stopping" if self.ctx.settings.dialogue.on_unknown_question == "stop" else "took its default"
        self.note(f"`{command}` asked a question segtui does not know ({verb}): {one_line(question, 200)}", "warning")

    def _step_finished(self, step_id: int, step: Step, ok: bool, message: str = "") -> None:
        message = self.ctx.clean(message)
        self.ctx.journal.step_finished(step_id, ok, message)
        self.ctx.emit(StepFinished(appliance=self.name, step=step, ok=ok, message=message))

    def _begin_step(self, step: Step) -> int:
        self.rec.step = step.value
        self.save()
        self.ctx.emit(StepStarted(appliance=self.name, step=step))
        self.progress(step)
        return self.ctx.journal.step_started(self.name, step.value)

    def _gate_open(self, step: Step) -> bool:
        """Whether the step may act now: no give-up, no stop (before the point of no return), no pause holding it."""
        if self._give_up is not None:
            return False
        if self.stop_request is not None and not self.past_point_of_no_return:
            return False
        paused = self._unpaused is not None and not self._unpaused.is_set()
        return not (step in HOLDABLE and paused)

    async def _gate(self, step: Step) -> None:
        """Before a step acts: a give-up or stop raises; a pause holds it (or brings the appliance back first)."""
        if self._give_up is not None:
            raise self._give_up
        if self.stop_request is not None and not self.past_point_of_no_return:
            raise self.stop_request
        if step in HOLDABLE and self._unpaused is not None and not self._unpaused.is_set():
            if self.rec.suspended_by_us:
                # Out of service (between hops, or drained and waiting to upgrade): a pause never holds mail
                # capacity down. Bring it back now (listeners resumed, settings restored); it continues later.
                raise Aborted(State.PENDING, f"paused: brought back into service before {step.value}")
            self.note(f"paused before {step.value}")
            unpaused = self._unpaused
            await self._interruptible(unpaused.wait)

    async def step(self, step: Step, deadline: float, fn: Callable[[], Awaitable[T]]) -> T:
        await self._gate(step)
        step_id = self._begin_step(step)
        try:
            # The turn first, outside the step's deadline (segtui's own queue, not the appliance being slow), and
            # kept through the retries below: a retried step does not queue again while its deadline runs.
            held = await self._take_turn(step)
        except BaseException as err:
            message = err.message if isinstance(err, ApplianceError) else str(err) or type(err).__name__
            self._step_finished(step_id, step, False, message)
            raise
        try:
            return await self._attempts(step, step_id, deadline, fn)
        finally:
            if held:
                self.ctx.turns.release()

    async def _attempts(self, step: Step, step_id: int, deadline: float, fn: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        end: float | None = None
        while True:
            try:
                # The session first, outside the step's deadline: waiting for a handshake slot is segtui's own
                # queue, not the appliance being slow; connecting has its own connect/login timeouts.
                await self._interruptible(self.client.session)
                if end is None:
                    end = time.monotonic() + deadline
                async with asyncio.timeout(max(0.01, end - time.monotonic())):
                    result = await self._interruptible(fn)
                break
            except TimeoutError:
                await self.client.close(reuse=False)  # a missed deadline may be a dead link
                exc: ApplianceError = StepTimeout(self.name, f"{step.value} exceeded its deadline of {deadline:g} s")
                self._step_finished(step_id, step, False, exc.message)
                raise exc from None
            except (ConnectFailed, ConnectionLost) as err:
                await self.client.close(reuse=False)
                if step in RETRYABLE and attempt < 4 and (end is None or time.monotonic() < end):
                    attempt += 1
                    self.note(f"{step.value}: {err.message}; retrying ({attempt})", "warning")
                    pause = self.ctx.settings.polling.reboot_initial * attempt
                    delay = pause if end is None else min(pause, max(0.0, end - time.monotonic()))
                    await self._interruptible(lambda delay=delay: asyncio.sleep(delay))  # type: ignore[misc]
                    continue
                self._step_finished(step_id, step, False, err.message)
                raise
            except BaseException as err:
                message = err.message if isinstance(err, ApplianceError) else str(err) or type(err).__name__
                self._step_finished(step_id, step, False, message)
                raise
        self._step_finished(step_id, step, True)
        self.progress(step, 1.0)
        return result

    def turn_priority(self) -> tuple[int, int, int]:
        """Out of service first (its way back into service: verify, the next hop's settings), then the critical
        path: the most upgrades still ahead, then the longest procedure in all (an appliance that needed a hop is,
        once done upgrading, still the one the rollout waits for)."""
        left = self.ctx.upgrades_left(self.name, self.rec.current)
        return int(self.rec.suspended_by_us), left, self.ctx.upgrades_left(self.name)

    async def _take_turn(self, step: Step) -> bool:
        """A short step waits for its turn (whether it took one). A give-up, stop or pause that came while it waited
        applies before it acts: the wait can be long, and what was decided before it may no longer hold."""
        if step not in TAKES_A_TURN:
            return False
        turns = self.ctx.turns
        while True:
            queued = not turns.free
            if queued:  # the screen says why the step does not move yet
                self.progress(step, 0.0, phase=f"{step.value}: waiting for a turn ({turns.waiting + 1} in line)")
            got = False

            async def acquire() -> None:
                nonlocal got
                await turns.acquire(self.turn_priority())
                got = True

            try:
                await self._interruptible(acquire)
            except BaseException:
                if got:  # the turn came as the wait was stopped or cancelled: pass it on
                    turns.release()
                raise
            if queued:
                self.progress(step, 0.0)
            if self._gate_open(step):
                return True
            turns.release()
            await self._gate(step)  # raises, or holds until unpaused; then in line again

    async def _interruptible(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn`; a give-up stops it at once, an abort or skip too unless the upgrade was confirmed."""
        work: asyncio.Future[T] = asyncio.ensure_future(fn())
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop_event.wait())
        give_up: asyncio.Future[Any] = asyncio.ensure_future(self._give_up_event.wait())
        try:
            while True:
                pending: list[asyncio.Future[Any]] = [work, stop, give_up]
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if work.done():
                    return work.result()
                if self._give_up is not None:
                    await _cancel_and_wait(work)
                    raise self._give_up
                if self.past_point_of_no_return or self.stop_request is None:
                    # The upgrade was confirmed meanwhile: it must run to its end.
                    stop.cancel()
                    stop = asyncio.ensure_future(asyncio.Event().wait())
                    continue
                await _cancel_and_wait(work)
                raise self.stop_request
        finally:
            stop.cancel()
            give_up.cancel()
            if not work.done():
                await _cancel_and_wait(work)

    # --- the procedure -------------------------------------------------------------------------
    async def run(self) -> State:
        rec = self.rec
        rec.started = rec.started or time.time()
        self.set_state(State.RUNNING)
        try:
            return await self._run()
        finally:
            self._finished = True
            await self.client.close()

    async def _run(self) -> State:
        try:
            await self._procedure()
        except GaveUp as stop:
            return self._given_up(str(stop))
        except Aborted as stop:
            return await self._make_safe(None, stop.state, str(stop))
        except asyncio.CancelledError:
            # segtui itself is shutting down: leave the journal as it is, `resume` continues.
            await self.client.close()
            raise
        except IdentityChanged as exc:
            # Another box: nothing may be done to it, not even a resume of listeners it never had from us.
            self.rec.left_by_hand = self.left_by_hand()
            self.set_state(State.NEEDS_ATTENTION, exc.message)
            return State.NEEDS_ATTENTION
        except OtherOperator as exc:
            if self.rec.suspended_by_us or self.rec.pointed:
                # Seen only once we had begun (e.g. `upgrade` says another upgrade is under way): undo ours.
                return await self._make_safe(exc, State.NEEDS_ATTENTION, exc.message)
            self.set_state(State.NEEDS_ATTENTION, exc.message)
            return State.NEEDS_ATTENTION
        except GuardTimeout as exc:
            state = await self._make_safe(exc, State.PENDING, exc.message)
            if state == State.PENDING:
                # The engine pauses the rollout on this event: the operator decides about the group's load.
                self.ctx.emit(GuardTimedOut(appliance=self.name, reason=self.ctx.clean(exc.message)))
            return state
        except UNREACHABLE as exc:
            return await self._make_safe(exc, State.NEEDS_ATTENTION, exc.message)
        except ApplianceError as exc:
            return await self._make_safe(exc, State.FAILED, exc.message)
        except Exception as exc:
            # Never leave an appliance "running" on a surprise: a human looks at it.
            return await self._make_safe(exc, State.NEEDS_ATTENTION, f"unexpected error: {exc!r}")
        self.set_state(State.DONE)
        return State.DONE

    async def _procedure(self) -> None:
        rec = self.rec
        d = self.ctx.settings.deadlines
        target = self.ctx.target
        if rec.reprobe:
            await self.step(Step.PRECHECK, d.precheck, self._reprobe)
        elif rec.confirmed_upgrade_to is None:
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
                await self.step(Step.GUARD, self._guard_deadline(), self._guard)
                await self.step(Step.SUSPEND, d.suspend, self._suspend)
            await self.step(Step.DRAIN, d.drain, self._drain)
            await self.step(Step.UPGRADE, d.upgrade, self._upgrade)
        if rec.suspended_by_us:
            await self.step(Step.RESUME_LISTENERS, d.resume, self._resume_listeners)
        if rec.pointed:
            await self.step(Step.RESTORE, d.resume, self._restore)
        if rec.upgrades_confirmed and rec.bake is None:
            await self._bake()

    # --- identity and pre-check ------------------------------------------------------------------
    def _learn_identity(self, info: VersionInfo) -> None:
        """Record the appliance's own hostname and serial; refuse a box that is not the one journaled."""
        rec = self.rec
        if rec.serial is not None and info.serial is not None and info.serial != rec.serial:
            raise IdentityChanged(
                self.name,
                f"serial is now {info.serial}, but this rollout journaled {rec.serial} for {self.name}: "
                f"the inventory entry reaches another appliance; nothing was done to it",
            )
        hostname = self.client.hostname
        changed = (hostname is not None and hostname != rec.hostname) or (
            info.serial is not None and info.serial != rec.serial
        )
        rec.hostname = hostname or rec.hostname
        rec.serial = info.serial or rec.serial
        if changed:
            self.save()
            self.ctx.emit(IdentityLearned(appliance=self.name, hostname=rec.hostname, serial=rec.serial))

    async def _precheck(self) -> None:
        rec = self.rec
        info = await self.client.version()
        self._learn_identity(info)
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
        signs: list[str] = []
        # Suspended from segtui by this rollout's operator (the engine's change_listeners journals that), or
        # accepted as suspended earlier in this rollout: theirs, not a stranger's.
        known_suspended = rec.suspended_elsewhere or (rec.listeners == "suspended" and not rec.suspended_by_us)
        if rec.suspended_by_us and not status.receiving_suspended:
            # Journaled before the command, but segtui stopped before the appliance acted on it:
            # the truth is "receiving", so suspend again.
            rec.suspended_by_us = False
            self.record_listeners("active")
        if not rec.suspended_by_us:
            if not status.receiving_suspended:
                rec.suspended_elsewhere = False
                self.record_listeners("active")
            else:
                self.record_listeners("suspended")
                if known_suspended:
                    # Left as it is: we drain, upgrade, and never resume it.
                    rec.suspended_elsewhere = True
                    self.note("receiving was already suspended: it stays suspended after the upgrade")
                elif info.version < self.ctx.target:
                    signs.append(f"receiving is suspended ({status.system_status}) and not by segtui")
        if info.version < self.ctx.target and rec.original_source is None and not rec.pointed:
            # The one extra command of the pre-check: who else is at work shows in the update settings, and
            # they are what restore puts back, so POINT need not read them again.
            source = await self.client.upgrade_source()
            ours = self.ctx.local_upgrade_source(info.version)
            if not source.is_cisco and source.images == ours.images:
                # Our update server, and this rollout did not point it there: another run is at work on it.
                shown = self.ctx.clean(f"images {source.images}, list {source.manifest}")
                signs.append(f"update settings already point at this rollout's update server ({shown})")
            elif not signs:
                # Cisco's servers, or the operator's standing mirror (recorded, and put back by restore).
                rec.original_source = {"images": source.images, "manifest": source.manifest}
                if not source.is_cisco:
                    self.note(f"update settings point at {self.ctx.clean(source.images)}: restored after the upgrade")
        if signs:
            raise OtherOperator(
                self.name, "signs of another operator at work: " + "; ".join(signs) + "; nothing was changed"
            )
        self.save()

    async def _reprobe(self) -> None:
        """Read the appliance again after `needs-attention` and continue from the truth."""
        rec = self.rec
        rec.reprobe = False
        rec.left_by_hand = ""
        self.save()
        info = await self.client.version()
        self._learn_identity(info)
        status = await self.client.status_detail()
        self.ctx.emit(WorkQueueDepth(appliance=self.name, depth=status.workqueue_messages, draining=False))
        if rec.confirmed_upgrade_to is not None:
            confirmed = Version.parse(rec.confirmed_upgrade_to)
            if info.version == confirmed:
                rec.current = str(info.version)
                rec.confirmed_upgrade_to = None
                rec.reboot_started = None
            elif rec.previous_version is not None and info.version == Version.parse(rec.previous_version):
                # Not rebooted into the new version yet (still installing, or it never did): poll once more,
                # with a fresh deadline.
                rec.reboot_started = time.time()
                rec.saw_down = False
            else:
                rec.current = str(info.version)
                rec.confirmed_upgrade_to = None
                rec.reboot_started = None
        else:
            rec.current = str(info.version)
        if rec.version_before is None:
            rec.version_before = str(info.version)
        if info.version > self.ctx.target:
            raise NotHealthy(self.name, f"runs {info.version}, newer than the target {self.ctx.target}")
        if rec.suspended_by_us and not status.receiving_suspended:
            rec.suspended_by_us = False  # someone resumed them meanwhile
        if not rec.suspended_by_us:
            # The operator asked for this re-probe: a suspension found now is theirs, left as it is.
            rec.suspended_elsewhere = status.receiving_suspended
        self.record_listeners("suspended" if status.receiving_suspended else "active")
        if rec.pointed:
            source = await self.client.upgrade_source()
            original = rec.original_source or {"images": "cisco", "manifest": "cisco"}
            if source.is_cisco or (source.images, source.manifest) == (original["images"], original["manifest"]):
                rec.pointed = False  # put back meanwhile
        self.save()
        self.note(f"re-probed: runs {info.version}, {status.system_status}")

    # --- changes -------------------------------------------------------------------------------
    async def _backup(self) -> None:
        remote = await self.client.saveconfig()
        directory = self.ctx.backup_dir / self.name
        cap = self.ctx.settings.backups.max_bytes
        backup = await self.client.download(remote, directory, "config", max_bytes=cap)
        backups = [{"kind": "config", "path": str(backup.path), "sha256": backup.sha256, "remote": remote}]
        self.progress(Step.BACKUP, 0.5, f"config saved: {backup.path.name}")
        slbl = await self.client.slbl_export()
        if slbl is None:
            self.note("safelist/blocklist is off: nothing to back up")
        else:
            sl = await self.client.download(slbl, directory, "safelist", max_bytes=cap)
            backups.append({"kind": "safelist", "path": str(sl.path), "sha256": sl.sha256, "remote": slbl})
        self.rec.backups = backups
        self.save()

    def _hostname_for_cluster(self, op: str) -> str:
        learned = self.client.hostname
        if learned is not None and learned != self.rec.hostname:
            # A cluster member shows its own name only in machine mode, which the backup's commands entered.
            self.rec.hostname = learned
            self.save()
            self.ctx.emit(IdentityLearned(appliance=self.name, hostname=learned, serial=self.rec.serial))
        hostname = self.rec.hostname
        if hostname is None:
            raise CommandFailed(
                self.name,
                f"clusterconfig {op}: the appliance's own hostname is not known (the cluster lists machines "
                f"by it, never by the inventory name)",
            )
        return hostname

    async def _cluster_disconnect(self) -> None:
        await self.client.cluster_disconnect(self._hostname_for_cluster("DISCONNECT"))
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
        # The comment stays in the appliance's commit history: no credentials in it.
        await self.client.commit(f"segtui: AsyncOS upgrades from {strip_url_credentials(source.manifest)}")

    def _guard_deadline(self) -> float:
        ssh = self.ctx.settings.ssh
        # The guard gives up by itself at guards.wait; the step's deadline only catches a guard that hangs.
        return (
            self.ctx.settings.guards.wait
            + self.ctx.settings.polling.workqueue
            + 2 * (ssh.login_timeout + ssh.command_timeout)
        )

    async def _guard(self) -> None:
        rec = self.rec
        guard = CapacityGuard(self.ctx, self.spec)
        entry: dict[str, Any] | None = None

        def on_wait(reason: str, since: float) -> None:
            nonlocal entry
            if entry is None:
                entry = {"since": since, "until": None, "reason": reason, "outcome": "waiting"}
                rec.guard_waits.append(entry)
            else:
                entry["reason"] = reason
            self.note(f"waiting: {reason}", "warning")
            self.save()
            self.ctx.emit(GuardWaiting(appliance=self.name, reason=reason, since=since))

        def overridden() -> bool:
            return self._override

        self._override = False
        self._in_guard = True
        outcome = "stopped"
        try:
            outcome, text = await guard.wait(on_wait=on_wait, overridden=overridden, interrupt=self._wake)
        except GuardTimeout:
            outcome = "timed-out"
            raise
        finally:
            self._in_guard = False
            self._override = False
            if entry is None and outcome == "overridden":
                entry = {"since": time.time(), "until": None, "reason": "", "outcome": outcome}
                rec.guard_waits.append(entry)
            if entry is not None:
                entry.update(until=time.time(), outcome=outcome)
                self.save()
        self.note(f"guard: {text}")

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

    def allowed_versions(self) -> set[Version] | None:
        """The hard rule: the releases `upgrade` may confirm, the target and the planned hop from here.

        None when the pre-flight planned no path for this appliance: the driver then takes only the newest
        offer between the current version and the target."""
        path = self.ctx.expected_paths.get(self.name)
        if not path or self.rec.current is None:
            return None
        current = Version.parse(self.rec.current)
        hop = next((v for v in path if current < v < self.ctx.target), None)
        return {self.ctx.target} | ({hop} if hop is not None else set())

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
            # The point of no return is journaled before the appliance hears "Y"; the reboot deadline counts
            # from here, also after a restart of segtui.
            self.past_point_of_no_return = True
            rec.confirmed_upgrade_to = str(chosen)
            rec.previous_version = rec.current
            rec.saw_down = False
            rec.reboot_started = time.time()
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
                allowed=self.allowed_versions(),
                current=Version.parse(rec.current) if rec.current is not None else None,
            )
        except UpgradeFailed as exc:
            # AsyncOS said the upgrade did not happen: nothing is under way.
            rec.confirmed_upgrade_to = None
            rec.reboot_started = None
            self.past_point_of_no_return = False
            self.save()
            if "already in progress" in exc.message.lower():
                raise OtherOperator(
                    self.name, f"another upgrade is under way on the appliance: {exc.message}"
                ) from None
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
        if rec.reboot_started is None:
            # Journaled by a segtui from before reboot_started: the deadline counts from now.
            rec.reboot_started = time.time()
            self.save()
        since = rec.reboot_started

        def on_down() -> None:
            rec.saw_down = True
            self.save()

        poller = RebootPoller(self.ctx, self.spec, on_down=on_down)
        step_id = self._begin_step(Step.REBOOT)
        try:
            # A give-up stops the polling at once (the appliance is left as it is: needs-attention).
            version = await self._interruptible(lambda: poller.wait_for(expected, previous, rec.saw_down, since))
        except GaveUp as stop:
            self._step_finished(step_id, Step.REBOOT, False, f"given up: {stop}")
            raise
        except ApplianceError as exc:
            self._step_finished(step_id, Step.REBOOT, False, exc.message)
            if isinstance(exc, WrongVersion):
                rec.confirmed_upgrade_to = None
                rec.reboot_started = None
                self.save()
            raise
        self._step_finished(step_id, Step.REBOOT, True)

        async def verify() -> None:
            info = await self.client.version()
            self._learn_identity(info)
            if info.version != expected:
                raise WrongVersion(self.name, f"runs {info.version} after the upgrade, expected {expected}")

        await self.step(Step.VERIFY, self.ctx.settings.deadlines.precheck, verify)
        rec.current = str(version)
        rec.confirmed_upgrade_to = None
        rec.reboot_started = None
        self.save()

    async def _resume_listeners(self) -> None:
        await self.client.resume_listeners()
        self.rec.suspended_by_us = False
        self.record_listeners("active")

    async def _restore(self) -> None:
        original = self.rec.original_source or {"images": "cisco", "manifest": "cisco"}
        await self.client.set_upgrade_source(UpgradeSource(images=original["images"], manifest=original["manifest"]))
        await self.client.commit("segtui: restore AsyncOS upgrade settings")
        self.rec.pointed = False
        self.save()

    # --- the bake --------------------------------------------------------------------------------
    def _bake_stopped(self) -> str | None:
        if self._give_up is not None:
            return f"given up: {self._give_up}"
        if self._override:
            return "overridden by the operator"
        if self.stop_request is not None:
            return str(self.stop_request)
        if self._unpaused is not None and not self._unpaused.is_set():
            return "the rollout was paused"
        return None

    async def _bake(self) -> None:
        """Watch the appliance move mail before it counts as done; a failed bake leaves it in service."""
        rec = self.rec
        if self.ctx.settings.guards.bake <= 0:
            rec.bake = {"verdict": "skipped", "message": "bake off (guards.bake = 0)", "samples": []}
            self.save()
            return
        if rec.suspended_elsewhere:
            # Receiving stays suspended as the operator left it: the appliance takes no mail to judge.
            rec.bake = {"verdict": "skipped", "message": "receiving suspended by the operator", "samples": []}
            self.save()
            self.ctx.emit(BakeFinished(appliance=self.name, verdict="skipped", message=rec.bake["message"]))
            return
        step_id = self._begin_step(Step.BAKE)
        started = time.time()
        await self.client.close()  # the samples come over the peer reader's session; the connection stays shared

        since = time.monotonic()

        async def read() -> StatusDetail:
            # The appliance's shared reading (rollout/peers.py): a capacity guard reading it as a peer meanwhile
            # takes the same one. A kept session, one more try over a new one; a sample, not a journaled command.
            # Each sample begins after the one before (and the first after the bake began).
            nonlocal since
            got = await self.ctx.peers.read(self.spec, after=since)
            if isinstance(got, str):  # once more, over a new session (a login can fail once)
                got = await self.ctx.peers.read(self.spec, after=time.monotonic())
            since = time.monotonic()
            if isinstance(got, str):
                raise BakeFailed(self.name, f"bake: the appliance stopped answering ({got})")
            return got

        def on_sample(sample: BakeSample, ends: float) -> None:
            # (The reading itself was a WorkQueueDepth event already.)
            self.ctx.emit(
                BakeSampled(
                    appliance=self.name,
                    status=sample.status,
                    queue=sample.queue,
                    received=sample.received,
                    completed=sample.completed,
                    until=ends,
                    sample=self.ctx.clean(sample.brief()),
                )
            )
            span = max(1e-9, ends - started)
            self.progress(Step.BAKE, (time.time() - started) / span, f"bake: {sample.brief()}")

        self._override = False
        self._in_guard = True
        try:
            result = await bake(self.ctx, read, stopped=self._bake_stopped, interrupt=self._wake, on_sample=on_sample)
        except BaseException as err:
            message = err.message if isinstance(err, ApplianceError) else type(err).__name__
            self._step_finished(step_id, Step.BAKE, False, message)
            raise
        finally:
            self._in_guard = False
            self._override = False
        rec.bake = result.record()
        self.save()
        self.ctx.emit(BakeFinished(appliance=self.name, verdict=result.verdict, message=result.message))
        ok = result.verdict != "failed"
        self._step_finished(step_id, Step.BAKE, ok, f"{result.verdict}: {result.message}")
        if self._give_up is not None:
            raise self._give_up
        if not ok:
            raise BakeFailed(self.name, f"bake failed: {result.message}; left in service")
        # An abort or skip during the bake only ended the bake: the appliance is upgraded and in service.
        self.stop_request = None
        self._stop_event.clear()
        # BakeFinished already told the event log and the headless lines; the row keeps the verdict as its message.
        rec.message = self.ctx.clean(f"bake {result.verdict}: {result.message}")
        self.save()

    # --- failure paths -------------------------------------------------------------------------
    def left_by_hand(self) -> str:
        """What a person must still do on this appliance, with the commands."""
        rec = self.rec
        who = rec.hostname or f"{self.spec.host} ({self.name})"
        todo: list[str] = []
        if rec.confirmed_upgrade_to is not None:
            todo.append(
                f"an upgrade to {rec.confirmed_upgrade_to} was confirmed: check on the console that {who} came back "
                f"on it (`version`)"
            )
        if rec.suspended_by_us:
            todo.append(f"listeners suspended: run `resumelistener` on {who}")
        if rec.pointed:
            original = rec.original_source or {"images": "cisco", "manifest": "cisco"}
            todo.append(
                f"update settings point at the local server: run `updateconfig` (SETUP: AsyncOS upgrades from "
                f"images {original['images']}, list {original['manifest']}) then `commit` on {who}"
            )
        if rec.cluster_disconnected:
            todo.append(f"disconnected from cluster {self.spec.cluster}: run `clusterconfig` RECONNECT for {who}")
        return self.ctx.clean("; ".join(todo) if todo else "nothing left to undo")

    def _given_up(self, reason: str) -> State:
        self.rec.left_by_hand = self.left_by_hand()
        if self.rec.suspended_by_us:
            self.record_listeners("unknown" if self.rec.confirmed_upgrade_to else "suspended")
        self.set_state(State.NEEDS_ATTENTION, f"{reason}; left by hand: {self.rec.left_by_hand}")
        return State.NEEDS_ATTENTION

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
        except GaveUp as stop:
            return self._given_up(f"{reason}; then {stop}")
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
