"""Webhook notifications: one JSON object per rollout event worth telling a channel, POSTed in the background.

A bounded queue and one task: the rollout only puts events on the queue and never waits for the network. A slow or
dead endpoint costs deliveries (counted, listed in the report), never the rollout's time. A URL may hold a token:
only `scheme://host/…` is ever shown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from segtui.rollout.events import (
    ApplianceStateChanged,
    BatchFinished,
    BatchStarted,
    GuardWaiting,
    RolloutEvent,
    RolloutState,
    RolloutStateChanged,
    State,
)
from segtui.textsafe import Redactor, one_line

if TYPE_CHECKING:
    from segtui.rollout.engine import Rollout

GUARD_WAIT_NOTICE = 300.0  # seconds an appliance waits on a guard before a channel hears of it


def shown_url(url: str) -> str:
    """`https://hooks.example.com/services/T0/B0/SECRET` -> `https://hooks.example.com/…` (never the token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    return f"{parts.scheme}://{host}{port}/…"


def check_urls(urls: Iterable[str]) -> list[str]:
    """One line per URL that cannot be a webhook (shown without its path)."""
    problems = []
    for url in urls:
        try:
            parts = urlsplit(url)
            _ = parts.port
        except ValueError:
            problems.append(f"--notify {shown_url(url)}: not a valid URL")
            continue
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"--notify {shown_url(url)}: must be an http:// or https:// URL")
    return problems


class Notifier:
    """Posts notification events to every URL; `failed` counts the deliveries given up on."""

    def __init__(
        self,
        urls: list[str],
        *,
        fleet: str,
        environment: str,
        target: str,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.25,
        queue_size: int = 500,
        redactor: Redactor | None = None,
    ) -> None:
        self.urls = list(urls)
        self.fleet, self.environment, self.target = fleet, environment, target
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.redact = redactor or Redactor()
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self.sent = 0
        self.failed = 0
        self.failures: list[str] = []
        self._healthy = dict.fromkeys(self.urls, True)
        self._started = False
        self._guard_told: set[str] = set()
        self._last_state: dict[str, tuple[State, str | None]] = {}  # the same news is told once
        self._progress = asyncio.Event()
        self._pending = 0  # queued or being delivered
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)))
        self._task = asyncio.create_task(self._worker(), name="notify")

    @classmethod
    def for_rollout(cls, rollout: Rollout, urls: list[str]) -> Notifier:
        s = rollout.settings.notify
        notifier = cls(
            urls,
            fleet=rollout.inventory.name,
            environment=rollout.inventory.environment,
            target=str(rollout.target),
            timeout=s.timeout,
            retries=s.retries,
            redactor=Redactor(a.password for a in rollout.inventory.appliances),
        )
        rollout.subscribe(notifier.on_event)
        return notifier

    # --- events -> payloads --------------------------------------------------------------------
    def on_event(self, event: RolloutEvent) -> None:
        payload = self.payload(event)
        if payload is None:
            return
        try:
            self.queue.put_nowait(payload)
            self._pending += 1
        except asyncio.QueueFull:
            self._fail(payload, "(all)", "queue full: the endpoints are too slow")

    def payload(self, event: RolloutEvent) -> dict[str, Any] | None:
        kind, appliance, state, message = self._classify(event)
        if kind is None:
            return None
        message = self.redact(one_line(message, 1000))
        where = f" {appliance}" if appliance else ""
        text = f"segtui {self.fleet} ({self.environment}) -> {self.target}:{where} {kind}" + (
            f": {message}" if message else ""
        )
        return {
            "event": kind,
            "fleet": self.fleet,
            "environment": self.environment,
            "target": self.target,
            "appliance": appliance,
            "state": state,
            "message": message,
            "ts": datetime.fromtimestamp(event.ts).astimezone().isoformat(timespec="seconds"),
            "text": self.redact(one_line(text, 1500)),
        }

    def _classify(self, event: RolloutEvent) -> tuple[str | None, str | None, str | None, str]:
        if isinstance(event, RolloutStateChanged):
            if event.state == RolloutState.RUNNING and not self._started:
                self._started = True
                return "rollout.started", None, "running", ""
            names = {
                RolloutState.PAUSED: "rollout.paused",
                RolloutState.ABORTED: "rollout.aborted",
                RolloutState.DONE: "rollout.completed",
            }
            if event.state in names:
                return names[event.state], None, event.state.value, event.reason
            return None, None, None, ""
        if isinstance(event, BatchStarted):
            return "batch.started", None, None, f"batch {event.index}/{event.total}: {', '.join(event.appliances)}"
        if isinstance(event, BatchFinished):
            return "batch.finished", None, None, f"batch {event.index}: {event.failures} failure(s)"
        if isinstance(event, ApplianceStateChanged):
            last = self._last_state.get(event.appliance)
            self._last_state[event.appliance] = (event.state, event.error)
            if event.state in (State.FAILED, State.NEEDS_ATTENTION) and last != (event.state, event.error):
                kind = "appliance.failed" if event.state == State.FAILED else "appliance.needs-attention"
                return kind, event.appliance, event.state.value, event.error or ""
            return None, None, None, ""
        if isinstance(event, GuardWaiting):
            waited = event.ts - event.since
            key = f"{event.appliance}@{event.since}"
            if waited >= GUARD_WAIT_NOTICE and key not in self._guard_told:
                self._guard_told.add(key)
                return (
                    "appliance.guard-wait",
                    event.appliance,
                    "waiting",
                    f"waiting {waited / 60:.0f} min on a mail-flow guard: {event.reason}",
                )
        return None, None, None, ""

    # --- delivery ------------------------------------------------------------------------------
    async def _worker(self) -> None:
        while True:
            payload = await self.queue.get()
            try:
                await asyncio.gather(*(self._deliver(url, payload) for url in self.urls))
            except asyncio.CancelledError:
                self._fail(payload, "(all)", "not delivered before segtui ended")
                raise
            finally:
                self.queue.task_done()
                self._pending -= 1
                self._progress.set()

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        # A URL whose last delivery failed gets one attempt per event until it answers again.
        attempts = 1 + (self.retries if self._healthy[url] else 0)
        problem = ""
        for attempt in range(attempts):
            try:
                response = await self._client.post(url, json=payload)
                if response.is_success:
                    self.sent += 1
                    self._healthy[url] = True
                    return
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if attempt + 1 < attempts:
                await asyncio.sleep(self.backoff * 2**attempt)
        self._healthy[url] = False
        self._fail(payload, shown_url(url), problem)

    def _fail(self, payload: dict[str, Any], where: str, problem: str) -> None:
        self.failed += 1
        if len(self.failures) < 100:
            self.failures.append(f"{payload['ts']} {payload['event']} -> {where}: {problem}")

    async def close(self) -> None:
        """Deliver what is queued while the endpoints answer (at most `timeout`), then stop; the rest is failed."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        while self._pending and any(self._healthy.values()):
            # Wait only while deliveries keep completing (each within a second): a hung endpoint costs 1 s at most.
            self._progress.clear()
            left = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self._progress.wait(), timeout=min(1.0, left))
            except TimeoutError:
                break
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        while not self.queue.empty():
            self._fail(self.queue.get_nowait(), "(all)", "not delivered before segtui ended")
        await self._client.aclose()

    def summary(self) -> dict[str, Any]:
        return {
            "urls": [shown_url(u) for u in self.urls],
            "sent": self.sent,
            "failed": self.failed,
            "failures": list(self.failures),
        }
