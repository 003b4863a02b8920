"""The in-service peers' readings, one reader per rollout: the capacity guards and the peer watch share them.

A peer is read at most once per `reading_interval` whoever asks (a large group is read once per interval, not once
per waiting appliance), over a CLI session per peer kept open between readings, on the peer's shared SSH
connection (a shell on the connection its own procedure uses: no second login). Each reading is also a
`WorkQueueDepth` event: the dashboard shows where the mail of the appliances out of service goes.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from segtui.asyncos.errors import ApplianceError
from segtui.asyncos.parsers import StatusDetail
from segtui.inventory import ApplianceSpec
from segtui.rollout.events import WorkQueueDepth
from segtui.settings import Settings

if TYPE_CHECKING:
    from segtui.asyncos.commands import Appliance
    from segtui.rollout.context import RolloutContext


# An observation (a peer's reading, a bake's sample) is never taken more often than this, whatever the polling
# interval (10 s on a real fleet): a work queue does not move much in less, and an SSH reading costs the same at any
# time scale (a demo's 0.1 s interval would read a large group 10 times a second, and 500 baking appliances 5,000
# times). At 2 s, 500 appliances starting together re-read their two 250-peer groups for every guard: a third of
# segtui's CPU in the orchestration benchmark, on the critical path.
READING_FLOOR = 5.0


def unreachable(peer: ApplianceSpec, why: str) -> str:
    """A reading that could not be taken, as the guards and the bake report it."""
    return f"{peer.name} unreachable: {why}"


def reading_interval(settings: Settings) -> float:
    """How often a peer is read and a baking appliance sampled: the work-queue polling, never under READING_FLOOR."""
    return max(settings.polling.workqueue, READING_FLOOR)


class PeerReader:
    def __init__(self, ctx: RolloutContext) -> None:
        self.ctx = ctx
        self._clients: dict[str, Appliance] = {}
        self._readings: dict[str, tuple[float, asyncio.Future[StatusDetail | str]]] = {}

    def _kept(self, peer: ApplianceSpec, after: float | None = None) -> asyncio.Future[StatusDetail | str] | None:
        """The peer's reading still to be used: one under way, or one younger than `reading_interval` (and, with
        `after`, begun at or after it)."""
        cached = self._readings.get(peer.name)
        if cached is None:
            return None
        taken, reading = cached
        if reading.done() and time.monotonic() - taken >= reading_interval(self.ctx.settings):
            return None
        if reading.done() and after is not None and taken < after:
            return None
        return reading

    def fresh(self, peer: ApplianceSpec) -> StatusDetail | str | None:
        """The peer's reading if one younger than `reading_interval` is at hand, else None (no waiting)."""
        reading = self._kept(peer)
        return reading.result() if reading is not None and reading.done() else None

    def reading(self, peer: ApplianceSpec) -> asyncio.Future[StatusDetail | str]:
        """The peer's shared reading: one under way, or one younger than `reading_interval`, else a new one.

        Wait for it with `asyncio.wait` or `read`, which never cancel it: others may be waiting for it too."""
        return self._reading(peer)[1]

    def _reading(
        self, peer: ApplianceSpec, after: float | None = None
    ) -> tuple[float, asyncio.Future[StatusDetail | str]]:
        """The shared reading (and when it began), begun at or after `after` unless one is under way."""
        if self._kept(peer, after) is None:
            self._readings[peer.name] = (time.monotonic(), asyncio.ensure_future(self._read_now(peer)))
        return self._readings[peer.name]

    async def read(self, peer: ApplianceSpec, *, after: float | None = None) -> StatusDetail | str:
        """The peer's status, or why it could not be read (`esa03 unreachable: ...`), from its shared reading.

        `after` (monotonic): a reading begun at or after it (a bake's next sample is a new observation, never the one
        before it again); one under way that began earlier is waited for, then a new one taken."""
        for _ in range(2):
            begun, reading = self._reading(peer, after)
            got = reading.result() if reading.done() else await asyncio.shield(reading)
            if after is None or begun >= after:
                break
        return got

    async def _read_now(self, peer: ApplianceSpec) -> StatusDetail | str:
        try:
            status = await self._read_own(peer)
        except (ApplianceError, TimeoutError) as exc:
            why = exc.message if isinstance(exc, ApplianceError) else "no answer in time"
            return unreachable(peer, why)
        self.ctx.emit(WorkQueueDepth(appliance=peer.name, depth=status.workqueue_messages, draining=False))
        return status

    async def _read_own(self, peer: ApplianceSpec) -> StatusDetail:
        """Over our own CLI session to the peer, opened once and kept between readings. A kept session may have died
        meanwhile (the appliance's idle timeout): then one more try, over a new one."""
        kept = peer.name in self._clients
        try:
            return await self._read_once(peer)
        except (ApplianceError, TimeoutError):
            if not kept:
                raise
        return await self._read_once(peer)

    async def _read_once(self, peer: ApplianceSpec) -> StatusDetail:
        client = self._clients.get(peer.name)
        if client is None:
            client = self._clients[peer.name] = self.ctx.appliance(peer, journal_commands=False)
        try:
            await client.session()  # outside the deadline: a login waits for a handshake slot (connect has its own)
            async with asyncio.timeout(self.ctx.settings.ssh.command_timeout):
                return await client.status_detail()
        except BaseException as exc:
            if self._clients.get(peer.name) is client:
                del self._clients[peer.name]
            await client.close(reuse=not isinstance(exc, TimeoutError))  # no answer in time may be a dead link
            raise

    async def keep_only(self, names: set[str]) -> None:
        """Close the sessions of appliances that are no longer peers to read (out of service themselves)."""
        for name in [n for n in self._clients if n not in names]:
            reading = self._readings.get(name)
            if reading is not None and not reading[1].done():
                continue  # a reading under way finishes first
            await self._clients.pop(name).close()

    async def close(self) -> None:
        """Stop the readings under way (their sessions close with them), then close every kept session."""
        under_way = [r for _, r in self._readings.values() if not r.done()]
        for reading in under_way:
            reading.cancel()
        await asyncio.gather(*under_way, return_exceptions=True)
        clients, self._clients = list(self._clients.values()), {}
        self._readings.clear()
        for client in clients:
            await client.close()
