"""Turns for the short steps: at most `ssh.max_dialogues` appliances in one at once, the longest procedures first.

segtui's event loop and its host's CPU serve the whole fleet. A batch of hundreds starting together would otherwise
interleave hundreds of pre-checks, backups and settings dialogues, each finishing late, and the appliances that need
a hop (the rollout's critical path: two reboots where the others have one) no sooner than the rest. With turns, an
appliance with more upgrades ahead goes first; among equals, first come first served. Waiting for a turn is segtui's
own queue: it is outside the step's deadline, and an abort or a give-up stops the wait like any step.

Steps that wait on the appliance (drain, upgrade, reboot, guard, bake) take no turn: they would hold it for minutes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class Turns:
    """A semaphore whose waiters are served by priority (higher first, compared as tuples), then in order of
    arrival."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("turns need a limit of at least 1")
        self.limit = limit
        self.held = 0
        self._waiters: list[tuple[tuple[int, ...], int, asyncio.Future[None]]] = []  # (-priority, arrival, future)
        self._arrival = itertools.count()

    @property
    def free(self) -> bool:
        """Whether `acquire` would return at once."""
        return self.held < self.limit and not self._waiters

    @property
    def waiting(self) -> int:
        return sum(1 for *_, f in self._waiters if not f.done())

    async def acquire(self, priority: tuple[int, ...]) -> None:
        if self.free:
            self.held += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (tuple(-p for p in priority), next(self._arrival), turn))
        try:
            await turn
        except asyncio.CancelledError:
            # Given the turn and cancelled in the same instant: pass it on. (A waiter cancelled before its turn is
            # dropped from the queue when it comes up.)
            if turn.done() and not turn.cancelled():
                self.release()
            raise

    def release(self) -> None:
        self.held -= 1
        while self.held < self.limit and self._waiters:
            *_, turn = heapq.heappop(self._waiters)
            if turn.done():
                continue  # its waiter was cancelled
            self.held += 1
            turn.set_result(None)
