"""Mail-flow guards: the peers must be able to carry the mail before an appliance goes out, and it must move mail
when it is back (the bake).

The capacity guard raises `GuardTimeout` when the peers did not recover within `guards.wait`; the procedure then
puts the appliance back to pending (undoing what it had changed) and emits `GuardTimedOut`, which the engine turns
into a pause of the rollout: an overloaded group is for the operator to judge, not a failure of this appliance.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from segtui.asyncos.errors import ApplianceError
from segtui.asyncos.parsers import StatusDetail
from segtui.inventory import ApplianceSpec
from segtui.rollout.context import RolloutContext
from segtui.rollout.peers import reading_interval, unreachable


class GuardTimeout(ApplianceError):
    """The capacity guard waited `guards.wait` and the peers still could not take this appliance's mail."""


class BakeFailed(ApplianceError):
    """The appliance came back but does not move mail; the message carries the evidence."""


def is_online(system_status: str) -> bool:
    return system_status.strip().lower() == "online"


def _n(value: int) -> str:
    return f"{value:,}"


def peer_problem(peer: str, status: StatusDetail, queue_max: int) -> str | None:
    """Why this peer cannot take more mail now, or None when it can."""
    if not is_online(status.system_status):
        return f"{peer} system status {status.system_status}"
    if status.workqueue_messages >= queue_max:
        return f"{peer} work queue {_n(status.workqueue_messages)} > {_n(queue_max)}"
    return None


WATCH_READS = 4  # peer readings the watch has under way at once


async def watch_peers(
    ctx: RolloutContext, peers: Callable[[], list[ApplianceSpec]], in_service: Callable[[], set[str]]
) -> None:
    """While appliances are out of service, read their in-service peers every polling interval, so that the screen
    shows the load move (the readings are shared with the capacity guards); close the peer sessions of appliances
    that went out of service themselves. Runs until cancelled, then closes every peer session."""
    # A few readings at a time: the screen can wait, the procedures' own sessions and the guards come first. A
    # round over a large group then takes longer than the polling interval, and the next one starts after it.
    slots = asyncio.Semaphore(WATCH_READS)

    async def read(peer: ApplianceSpec) -> None:
        async with slots:
            await ctx.peers.read(peer)

    try:
        while True:
            await ctx.peers.keep_only(in_service())
            due = [p for p in peers() if ctx.peers.fresh(p) is None]
            if due:
                await asyncio.gather(*(read(p) for p in due))
            # Cheap when short: a reading younger than reading_interval is reused, not taken again.
            await asyncio.sleep(ctx.settings.polling.workqueue)
    finally:
        await ctx.peers.close()


class CapacityGuard:
    """Before an appliance goes out of service: every in-service peer of its group reachable, Online, not backed up."""

    def __init__(self, ctx: RolloutContext, spec: ApplianceSpec) -> None:
        self.ctx = ctx
        self.spec = spec

    def peers(self) -> list[ApplianceSpec]:
        return [p for p in self.ctx.in_service_peers(self.spec.name) if p.name != self.spec.name]

    def _problem(self, peer: ApplianceSpec, status: StatusDetail | str) -> str | None:
        """The peer's problem (or None)."""
        if isinstance(status, str):
            return status
        return peer_problem(peer.name, status, self.ctx.settings.guards.peer_queue_max)

    async def problems(self, peers: list[ApplianceSpec]) -> list[str]:
        # The shared readings, waited for together (never cancelled from here: other guards wait for them too); a
        # large group's are mostly at hand, and each guard of the group joins the same few under way.
        readings = [self.ctx.peers.reading(p) for p in peers]
        under_way = [r for r in readings if not r.done()]
        if under_way:
            await asyncio.wait(under_way)
        found = [
            self._problem(p, unreachable(p, "reading stopped") if r.cancelled() else r.result())
            for p, r in zip(peers, readings, strict=True)
        ]
        # Reading takes a moment: a peer that went out of service meanwhile (its own procedure suspended it) is
        # no longer one to rely on, and what it says now is not a reason to wait.
        still = {p.name for p in self.peers()}
        return [
            self.ctx.clean(text) for p, text in zip(peers, found, strict=True) if text is not None and p.name in still
        ]

    async def wait(
        self,
        *,
        on_wait: Callable[[str, float], None],
        overridden: Callable[[], bool],
        interrupt: asyncio.Event,
    ) -> tuple[str, str]:
        """Wait until the peers can take the mail; returns (outcome, note): passed, no-peers or overridden.

        Raises GuardTimeout past `guards.wait`. `on_wait(reason, since)` is called whenever the reason changes
        (`esa03 work queue 12,340 > 5,000`; several peers joined by `; `).
        """
        g = self.ctx.settings.guards
        since = time.time()
        end = time.monotonic() + g.wait
        last_reason = ""
        while True:
            interrupt.clear()  # before looking: a wake-up arriving from here on is not lost
            if overridden():
                return "overridden", f"guard overridden by the operator ({last_reason or 'no reason yet'})"
            # Looked up at every check: a peer that went out of service meanwhile is no longer one to rely on.
            peers = self.peers()
            if not peers:
                return "no-peers", "no other appliance of its group in service: nothing to check"
            problems = await self.problems(peers)
            if not problems:
                note = f"{len(peers)} peer(s) ready" + (f" after waiting on: {last_reason}" if last_reason else "")
                return "passed", note
            reason = "; ".join(problems)
            # Said again only when what is wrong changes, not every time a queue figure moves.
            if _shape(reason) != _shape(last_reason):
                last_reason = reason
                on_wait(reason, since)
            left = end - time.monotonic()
            if left <= 0:
                raise GuardTimeout(self.spec.name, f"waited {g.wait:g} s on: {reason}; back to pending")
            try:
                # Re-checked when a reading can be new (an override or a pause wakes it at once).
                async with asyncio.timeout(min(left, reading_interval(self.ctx.settings))):
                    await interrupt.wait()
            except TimeoutError:
                pass


def _shape(reason: str) -> str:
    return re.sub(r"[0-9][0-9,.]*", "#", reason)


@dataclass(frozen=True)
class BakeSample:
    t: float
    status: str
    queue: int
    received: int | None
    completed: int | None

    @classmethod
    def of(cls, status: StatusDetail, t: float | None = None) -> BakeSample:
        return cls(
            t=t if t is not None else time.time(),
            status=status.system_status,
            queue=status.workqueue_messages,
            received=status.received,
            completed=status.completed,
        )

    def brief(self) -> str:
        counters = "" if self.received is None else f", received {_n(self.received)}"
        counters += "" if self.completed is None else f", completed {_n(self.completed)}"
        return f"{self.status}, queue {_n(self.queue)}{counters}"


def judge(samples: list[BakeSample], queue_max: int, *, final: bool) -> tuple[str, str] | None:
    """The bake's verdict from its samples so far: (verdict, evidence), or None to keep watching.

    Fails at once when the appliance leaves Online or its work queue keeps growing past `queue_max`; at the end,
    fails when the queue grew past `queue_max` over the bake, or mail arrived but the completed counter stood still.
    """
    if not samples:
        return None
    first, last = samples[0], samples[-1]
    evidence = f"first: {first.brief()}; last: {last.brief()}"
    if not is_online(last.status):
        return "failed", f"left Online ({last.status}); {evidence}"
    # Growth, not noise: a queue hovering at a level (it delivers what it receives) is not growing.
    rise = max(1, queue_max // 10)
    tail = samples[-4:]
    growing = len(tail) == 4 and all(a.queue < b.queue for a, b in itertools.pairwise(tail))
    if growing and last.queue > queue_max and last.queue - tail[0].queue >= rise:
        return "failed", f"work queue keeps growing past {_n(queue_max)}; {evidence}"
    if not final:
        return None
    if last.queue > queue_max and last.queue - first.queue >= rise:
        return "failed", f"work queue grew past {_n(queue_max)} during the bake; {evidence}"
    if first.received is not None and last.received is not None:
        arrived = last.received - first.received
        moved = None if first.completed is None or last.completed is None else last.completed - first.completed
        if arrived <= 0 and not moved:
            return "no-traffic", f"no traffic to judge; {evidence}"
        if arrived > 0 and moved == 0:
            return "failed", f"{_n(arrived)} messages arrived but none completed; {evidence}"
        return "passed", evidence
    if all(s.queue == 0 for s in samples):
        return "no-traffic", f"no traffic to judge (no counters, empty work queue); {evidence}"
    return "passed", f"no counters: judged by the work queue; {evidence}"


@dataclass
class BakeResult:
    verdict: str  # passed, failed, skipped, no-traffic
    message: str
    samples: list[BakeSample]
    cut_short: bool = False  # stopped before a verdict (pause, abort, skip, override): the mail flow is unverified

    def record(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "message": self.message,
            "samples": [asdict(s) for s in self.samples],
            "cut_short": self.cut_short,
        }


async def bake(
    ctx: RolloutContext,
    read: Callable[[], Awaitable[StatusDetail]],
    *,
    stopped: Callable[[], str | None],
    interrupt: asyncio.Event,
    on_sample: Callable[[BakeSample, float], None],
) -> BakeResult:
    """Sample `read()` every `reading_interval` for `guards.bake` seconds and judge the mail flow.

    `stopped()` returns why to stop early (pause, abort, override) or None; `interrupt` wakes the wait at once.
    A stop gives the verdict `skipped`: the appliance is already in service.
    """
    g = ctx.settings.guards
    interval = reading_interval(ctx.settings)
    samples: list[BakeSample] = []
    end = time.monotonic() + g.bake
    ends_at = time.time() + g.bake
    while True:
        interrupt.clear()  # before looking: a wake-up arriving from here on is not lost
        why = stopped()
        if why is not None:
            return BakeResult("skipped", ctx.clean(f"bake stopped: {why}"), samples, cut_short=True)
        sample = BakeSample.of(await read())
        samples.append(sample)
        on_sample(sample, ends_at)
        left = end - time.monotonic()
        verdict = judge(samples, g.bake_queue_max, final=left <= 0)
        if verdict is not None:
            return BakeResult(verdict[0], ctx.clean(verdict[1]), samples)
        try:
            async with asyncio.timeout(max(0.0, min(left, interval))):
                await interrupt.wait()
        except TimeoutError:
            pass
