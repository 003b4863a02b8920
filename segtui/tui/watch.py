"""`segtui watch`: the dashboard of a rollout another segtui drives, fed from the journal alone.

No SSH, no changing action: the journal (SQLite in WAL mode) is opened read-only and polled; appliance records,
operator actions and the rollout's outcome become the same events the dashboard folds when it drives. It keeps
working when the driver finishes, crashes (the lock is free, the rollout unfinished) or is resumed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from segtui.asyncos.versions import Version
from segtui.inventory import Inventory
from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.events import (
    ApplianceStateChanged,
    ListenersChanged,
    RolloutEvent,
    RolloutState,
    RolloutStateChanged,
    State,
    Step,
    StepStarted,
)
from segtui.rollout.journal import ApplianceRecord, Journal
from segtui.rollout.lock import InventoryLock
from segtui.settings import Settings, load_settings
from segtui.textsafe import one_line

POLL_SECONDS = 0.5
_STATE_OF_ACTION = {
    "start": RolloutState.RUNNING,
    "unpause": RolloutState.RUNNING,
    "resumed": RolloutState.RUNNING,
    "pause": RolloutState.PAUSED,
    "abort": RolloutState.ABORTED,
}


class WatchError(Exception):
    """Nothing to watch: a one-line reason."""


def open_readonly(path: Path) -> Journal:
    """The journal without write access (the engine's `Journal.open_readonly` when it has one)."""
    opener = getattr(Journal, "open_readonly", None)
    if opener is not None:
        journal: Journal = opener(path)
        return journal
    if not path.is_file():
        raise WatchError(f"{path}: no journal here (has a rollout of this inventory been run?)")
    journal = Journal.__new__(Journal)
    journal.path = path
    journal.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    journal.db.execute("PRAGMA busy_timeout=5000")
    journal.rollout_id = None
    return journal


def latest_rollout(journal: Journal, inventory: Inventory) -> tuple[int, str, dict[str, Any], str | None]:
    row = journal.db.execute(
        "SELECT id, target, options, outcome FROM rollouts WHERE inventory = ? ORDER BY id DESC LIMIT 1",
        (str(inventory.path),),
    ).fetchone()
    if row is None:
        raise WatchError(f"{inventory.path}: no rollout of this inventory in {journal.path}")
    return int(row[0]), str(row[1]), json.loads(row[2]), row[3]


class JournalFeed:
    """Polls the journal and replays what changed into the rollout object the dashboard reads."""

    def __init__(self, rollout: Rollout, journal: Journal, inventory: Inventory) -> None:
        self.rollout = rollout
        self.journal = journal
        self.lock_path = InventoryLock(journal.path.parent, inventory.path, "watch").path
        self.last_action = 0
        self.updated: dict[str, float] = {}
        self.outcome: str | None = None
        self.last_event = 0
        self.model: Any = None  # the dashboard's FleetModel, set when the app is built

    def holder(self) -> str:
        """Who holds the rollout lock, and since when; or that nobody does."""
        try:
            text = self.lock_path.read_text()
        except OSError:
            text = ""
        try:
            info = json.loads(text) if text.strip() else {}
        except ValueError:
            info = {}
        if not info:
            return "no segtui holds the lock: the driver has ended (or crashed); read-only view of the journal"
        since = info.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, float) else "?"
        return one_line(
            f"driven by {info.get('who', '?')} (pid {info.get('pid', '?')}, {info.get('command', '?')}) since {when}"
        )

    def _emit(self, event: RolloutEvent) -> None:
        """To the dashboard only: the engine's own `_emit` would write to the journal."""
        for callback in self.rollout._subscribers:
            callback(event)

    def _set_state(self, state: RolloutState, reason: str = "") -> None:
        r = self.rollout
        r.state = state
        if state == RolloutState.PAUSED:
            r.pause_reason = reason
        self._emit(RolloutStateChanged(state=state, reason=reason))

    def poll(self) -> None:
        r = self.rollout
        db = self.journal.db
        rid = self.journal.rollout_id
        try:
            rows = db.execute("SELECT name, record, updated FROM appliances WHERE rollout_id = ?", (rid,)).fetchall()
            actions = db.execute(
                "SELECT id, ts, who, action, target FROM actions WHERE rollout_id = ? AND id > ? ORDER BY id",
                (rid, self.last_action),
            ).fetchall()
            head = db.execute("SELECT outcome FROM rollouts WHERE id = ?", (rid,)).fetchone()
            log = self._events()
        except sqlite3.Error:
            return  # a writer mid-checkpoint: the next poll reads it
        for name, text, updated in rows:
            if self.updated.get(name) == updated:
                continue
            self.updated[name] = updated
            try:
                rec = ApplianceRecord.from_json(text)
            except (ValueError, TypeError):
                continue
            self._record(name, rec)
        for aid, ts, who, action, target in actions:
            self.last_action = int(aid)
            if self.model is not None and action != "created" and log is None:
                self.model.operator_acted(str(action), target, str(who))
            state = _STATE_OF_ACTION.get(str(action))
            if state is not None and state != r.state:
                if state == RolloutState.RUNNING and r.started_at is None:
                    r.started_at = float(ts)
                self._set_state(state, str(target or f"by {who}") if state == RolloutState.PAUSED else "")
        if log and self.model is not None:
            for row in log:
                self.last_event = row.id
                level = (
                    "error" if row.kind in ("failure", "error") else ("warning" if row.kind == "warning" else "info")
                )
                self.model.journal_entry(row.ts, row.kind, row.text, row.appliance, level)
        outcome = head[0] if head else None
        if outcome != self.outcome:
            self.outcome = outcome
            if outcome == "aborted" and r.state != RolloutState.ABORTED:
                self._set_state(RolloutState.ABORTED, "aborted")
            elif outcome and outcome != "aborted" and r.state != RolloutState.DONE:
                self._set_state(RolloutState.DONE, str(outcome))
            elif outcome is None and r.state == RolloutState.DONE:
                self._set_state(RolloutState.RUNNING)  # taken up again (resume, or a retry after the end)

    def _events(self) -> list[Any] | None:
        """The driver's event log after the last one read; None from a journal without one."""
        reader = getattr(self.journal, "events", None)
        if reader is None:
            return None
        try:
            rows: list[Any] = reader(self.journal.rollout_id, self.last_event)
        except sqlite3.OperationalError:
            return None
        return rows

    def _record(self, name: str, rec: ApplianceRecord) -> None:
        r = self.rollout
        old = r.records.get(name)
        r.records[name] = rec
        if old is not None and old.listeners != rec.listeners:
            self._emit(ListenersChanged(appliance=name, listeners=rec.listeners))
        if rec.state == State.RUNNING and rec.step and (old is None or old.step != rec.step):
            try:
                self._emit(StepStarted(appliance=name, step=Step(rec.step), ts=rec.started or time.time()))
            except ValueError:
                pass  # a step this dashboard does not know yet: the record below still shows it
        if (old is None or old.state != rec.state) and rec.state != State.RUNNING:
            self._emit(
                ApplianceStateChanged(
                    appliance=name,
                    state=rec.state,
                    version=rec.current,
                    error=rec.error,
                    ts=rec.finished or time.time(),
                )
            )
        if self.model is not None and name in self.model.rows:
            self.model.apply_record(self.model.rows[name], rec)
            self.model.dirty.add(name)


def watch_rollout(
    journal_path: Path, inventory: Inventory, settings: Settings | None = None
) -> tuple[Rollout, JournalFeed]:
    """The rollout object of the newest rollout of this inventory, fed from the journal."""
    journal = open_readonly(journal_path)
    rollout_id, target, options, _outcome = latest_rollout(journal, inventory)
    saved = options.pop("_settings", None)
    if settings is None:
        settings = Settings.model_validate(saved) if saved else load_settings()
    settings = settings.model_copy(update={"state_dir": journal_path.parent})
    known = {k: v for k, v in options.items() if k in RolloutOptions.__dataclass_fields__}
    rollout = Rollout(inventory, settings, Version.parse(target), journal, RolloutOptions(**known))
    journal.rollout_id = rollout_id
    rollout.records = journal.records()
    for spec in inventory.appliances:
        rollout.records.setdefault(spec.name, ApplianceRecord(name=spec.name))
    feed = JournalFeed(rollout, journal, inventory)
    return rollout, feed


async def run_watch(journal_path: Path, inventory: Inventory, settings: Settings | None = None) -> int:
    """`segtui watch`: 0 when the operator quits, 2 when there is nothing to watch (one line on stderr)."""
    import sys

    from segtui.errors import InputError
    from segtui.tui.app import SegtuiApp

    try:
        rollout, feed = watch_rollout(journal_path, inventory, settings)
    except WatchError as exc:
        print(f"segtui: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"segtui: {one_line(exc.problems[0] if exc.problems else str(exc))}", file=sys.stderr)
        return 2
    app = SegtuiApp(
        rollout,
        watching=feed.holder(),
        theme_name=rollout.settings.theme,
        repaint_hz=rollout.settings.repaint_hz,
        bell=rollout.settings.tui.bell,
        feed=feed,
    )
    await app.run_async()
    feed.journal.close()
    return 0
