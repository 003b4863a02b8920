"""The headless printer: a line per appliance state change and a periodic fleet summary."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from segtui.rollout.engine import Rollout
from segtui.rollout.events import (
    ApplianceStateChanged,
    BatchStarted,
    ListenersChanged,
    Note,
    RolloutEvent,
    RolloutStateChanged,
    StepStarted,
)


class HeadlessPrinter:
    def __init__(self, rollout: Rollout, out: TextIO | None = None, summary_every: float = 5.0) -> None:
        self.rollout = rollout
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.summary_every = summary_every
        self._last_summary = time.monotonic()
        self._start = time.monotonic()
        rollout.subscribe(self.on_event)

    def _print(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        if self.tty:
            self.out.write("\r\x1b[K")
        self.out.write(f"{stamp} {text}\n")
        self.out.flush()

    def on_event(self, event: RolloutEvent) -> None:
        if isinstance(event, StepStarted):
            self._print(f"{event.appliance:<12} {event.step.value}")
        elif isinstance(event, ApplianceStateChanged) and event.state.value != "running":
            extra = f" ({event.error})" if event.error else ""
            version = f" {event.version}" if event.version else ""
            self._print(f"{event.appliance:<12} {event.state.value.upper()}{version}{extra}")
        elif isinstance(event, ListenersChanged):
            self._print(f"{event.appliance:<12} listeners {event.listeners}")
        elif isinstance(event, BatchStarted):
            self._print(f"batch {event.index}/{event.total}: {', '.join(event.appliances)}")
        elif isinstance(event, RolloutStateChanged):
            self._print(f"rollout {event.state.value}{': ' + event.reason if event.reason else ''}")
        elif isinstance(event, Note) and event.level in ("warning", "error"):
            self._print(f"{event.appliance or 'fleet':<12} {event.level}: {event.text}")
        now = time.monotonic()
        if now - self._last_summary >= self.summary_every:
            self._last_summary = now
            self.summary()
        elif self.tty:
            self.progress_bar()

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rec in self.rollout.records.values():
            counts[rec.state] = counts.get(rec.state, 0) + 1
        return counts

    def summary(self) -> None:
        c = self.counts()
        total = len(self.rollout.records)
        elapsed = time.monotonic() - self._start
        self._print(
            f"fleet: {c.get('done', 0)}/{total} done, {c.get('running', 0)} in flight, "
            f"{c.get('failed', 0)} failed, {c.get('needs-attention', 0)} needs-attention, "
            f"{c.get('pending', 0)} pending, batch {self.rollout.batch_index}/{self.rollout.batch_total}, "
            f"{elapsed:.0f}s"
        )

    def progress_bar(self) -> None:
        c = self.counts()
        total = max(1, len(self.rollout.records))
        finished = sum(c.get(k, 0) for k in ("done", "failed", "skipped", "needs-attention"))
        width = 30
        filled = int(width * finished / total)
        self.out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {finished}/{total}")
        self.out.flush()
