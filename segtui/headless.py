"""The headless printer: one line per event (or one JSON object with `--json-lines`), ISO 8601 times with the zone.

Appliance text is sanitised before it is printed (no escape sequence reaches the terminal). A reader that goes
away (`| head`) ends the printing quietly; the rollout itself carries on and is journaled as usual.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from segtui.rollout.events import (
    ApplianceStateChanged,
    BatchFinished,
    BatchStarted,
    ListenersChanged,
    Note,
    RolloutEvent,
    RolloutStateChanged,
    StagingChanged,
    State,
    Step,
    StepFinished,
    StepStarted,
)
from segtui.textsafe import Redactor, sanitize

if TYPE_CHECKING:
    from segtui.inventory import Inventory
    from segtui.rollout.engine import Rollout


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


class HeadlessPrinter:
    """Prints the events of a rollout (or, without one, of `segtui stage`)."""

    def __init__(
        self,
        rollout: Rollout | None,
        out: TextIO | None = None,
        *,
        json_lines: bool = False,
        summary_every: float = 60.0,
        inventory: Inventory | None = None,
    ) -> None:
        self.rollout = rollout
        inventory = inventory or (rollout.inventory if rollout is not None else None)
        self.redact = Redactor(a.password for a in inventory.appliances) if inventory else Redactor()
        self.out = out or sys.stdout
        self.json_lines = json_lines
        self.summary_every = summary_every
        self.closed = False
        self._last: dict[str, str] = {}
        self._last_summary = time.monotonic()
        self._start = time.monotonic()
        if rollout is not None:
            rollout.subscribe(self.on_event)

    # --- output --------------------------------------------------------------------------------
    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.out.write(text + "\n")
            self.out.flush()
        except BrokenPipeError:
            self.closed = True  # the reader went away; the rollout goes on
        except ValueError:  # closed file
            self.closed = True

    def emit(self, ts: float, key: str, text: str, fields: dict[str, Any]) -> None:
        """One line for `key` (an appliance or `fleet`), unless it repeats the previous line for that key."""
        text = self.redact(_flat(text))
        if self._last.get(key) == text:
            return
        self._last[key] = text
        if self.json_lines:
            record = {"ts": iso(ts), **{k: _safe(v, self.redact) for k, v in fields.items()}, "text": text}
            self._write(json.dumps(record, ensure_ascii=False))
        else:
            self._write(f"{iso(ts)} {text}")

    # --- events --------------------------------------------------------------------------------
    def on_event(self, event: RolloutEvent) -> None:
        line = self.describe(event)
        if line is not None:
            key, text = line
            fields = {"event": _kind(event), **_fields(event)}
            self.emit(event.ts, key, text, fields)
        if self.rollout is not None and not self.json_lines:
            now = time.monotonic()
            if now - self._last_summary >= self.summary_every:
                self._last_summary = now
                self.emit(time.time(), "summary", self.summary_line(), {"event": "summary"})

    def describe(self, event: RolloutEvent) -> tuple[str, str] | None:
        """(key, line) for the events worth a line; None for the rest (progress, queue depth, transcripts)."""
        if isinstance(event, StepStarted):
            return event.appliance, f"{event.appliance:<12} {event.step.value}"
        if isinstance(event, StepFinished) and not event.ok:
            return event.appliance, f"{event.appliance:<12} {event.step.value} failed: {event.message}"
        if isinstance(event, StepFinished) and event.step == Step.UPGRADE:
            return event.appliance, f"{event.appliance:<12} upgrade confirmed{self._upgrade_to(event.appliance)}"
        if isinstance(event, ApplianceStateChanged) and event.state != State.RUNNING:
            extra = f" ({event.error})" if event.error else ""
            version = f" {event.version}" if event.version else ""
            return event.appliance, f"{event.appliance:<12} {event.state.value.upper()}{version}{extra}"
        if isinstance(event, ListenersChanged):
            return event.appliance, f"{event.appliance:<12} listeners {event.listeners}"
        if isinstance(event, StagingChanged):
            pct = f" {event.percent}%" if event.percent is not None else ""
            return event.appliance, f"{event.appliance:<12} {event.status}{pct} {event.version or ''}"
        if isinstance(event, BatchStarted):
            return "fleet", f"batch {event.index}/{event.total}: {', '.join(event.appliances)}"
        if isinstance(event, BatchFinished):
            return "fleet", f"batch {event.index} finished: {event.failures} failure(s)"
        if isinstance(event, RolloutStateChanged):
            return "fleet", f"rollout {event.state.value}{': ' + event.reason if event.reason else ''}"
        if isinstance(event, Note) and event.level in ("warning", "error"):
            key = event.appliance or "fleet"
            return key, f"{key:<12} {event.level}: {event.text}"
        return None

    def _upgrade_to(self, name: str) -> str:
        """` to 15.5.0-017 (intermediate version; target 16.0.0-123)` for the first hop of a two-hop upgrade."""
        if self.rollout is None:
            return ""
        rec = self.rollout.records.get(name)
        to = rec.confirmed_upgrade_to if rec else None
        if not to:
            return ""
        target = str(self.rollout.target)
        return f" to {to}" + (f" (intermediate version; target {target})" if to != target else "")

    # --- summaries -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        if self.rollout is not None:
            for rec in self.rollout.records.values():
                counts[str(rec.state)] = counts.get(str(rec.state), 0) + 1
        return counts

    def summary_line(self) -> str:
        assert self.rollout is not None
        c = self.counts()
        elapsed = time.monotonic() - self._start
        return (
            f"fleet: {c.get('done', 0)}/{len(self.rollout.records)} done, {c.get('running', 0)} in flight, "
            f"{c.get('failed', 0)} failed, {c.get('needs-attention', 0)} needs-attention, "
            f"{c.get('skipped', 0)} skipped, {c.get('pending', 0)} pending, "
            f"batch {self.rollout.batch_index}/{self.rollout.batch_total}, {elapsed:.0f}s"
        )

    def summary(self) -> None:
        if self.rollout is not None:
            self.emit(time.time(), "summary", self.summary_line(), {"event": "summary", "counts": self.counts()})

    def finish(self, outcome: str) -> None:
        """The end of the rollout: the fleet's counts and what needs a person, with the exact commands."""
        if self.rollout is None:
            return
        from segtui.rollout.report import hand_work

        self.summary()
        for item in hand_work(self.rollout):
            text = f"{item['appliance']:<12} NEEDS A PERSON: {item['why']} -> {item['command']}"
            self.emit(
                time.time(), f"person:{item['appliance']}:{item['why']}", text, {"event": "needs-a-person", **item}
            )
        self.emit(time.time(), "outcome", f"outcome {outcome}", {"event": "outcome", "outcome": outcome})


def _flat(text: str, limit: int = 2000) -> str:
    """Sanitised and on one line, but with the columns' spaces kept (unlike `one_line`)."""
    flat = sanitize(text).replace("\n", " ").replace("\t", " ")
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _kind(event: RolloutEvent) -> str:
    name = type(event).__name__
    return "".join("-" + c.lower() if c.isupper() else c for c in name).lstrip("-")


def _fields(event: RolloutEvent) -> dict[str, Any]:
    data = asdict(event)
    data.pop("ts", None)
    data.pop("output", None)  # transcripts stay in the journal
    return data


def _safe(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(sanitize(value))
    if isinstance(value, list | tuple):
        return [_safe(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _safe(v, redact) for k, v in value.items()}
    return value
