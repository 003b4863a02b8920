"""The rollout journal: SQLite in WAL mode, every step, command and operator action, crash-safe."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segtui.rollout.events import State

SCHEMA = """
CREATE TABLE IF NOT EXISTS rollouts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  inventory TEXT NOT NULL,
  target TEXT NOT NULL,
  options TEXT NOT NULL,
  started REAL NOT NULL,
  finished REAL,
  outcome TEXT
);
CREATE TABLE IF NOT EXISTS appliances (
  rollout_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  record TEXT NOT NULL,
  updated REAL NOT NULL,
  PRIMARY KEY (rollout_id, name)
);
CREATE TABLE IF NOT EXISTS steps (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rollout_id INTEGER NOT NULL,
  name TEXT NOT NULL,
  step TEXT NOT NULL,
  started REAL NOT NULL,
  finished REAL,
  ok INTEGER,
  message TEXT
);
CREATE TABLE IF NOT EXISTS commands (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rollout_id INTEGER,  -- NULL for commands outside a rollout (stage, operator actions)
  name TEXT NOT NULL,
  ts REAL NOT NULL,
  command TEXT NOT NULL,
  output TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS staged (
  inventory TEXT NOT NULL,
  name TEXT NOT NULL,
  version TEXT,
  state TEXT NOT NULL,
  note TEXT,
  ts REAL NOT NULL,
  PRIMARY KEY (inventory, name)
);
CREATE TABLE IF NOT EXISTS actions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rollout_id INTEGER,
  ts REAL NOT NULL,
  who TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT
);
"""


@dataclass
class ApplianceRecord:
    """Everything needed to continue one appliance's procedure after a crash of segtui."""

    name: str
    state: State = State.PENDING
    step: str | None = None
    version_before: str | None = None
    current: str | None = None
    listeners: str = "active"
    suspended_by_us: bool = False
    suspended_elsewhere: bool = False
    original_source: dict[str, str] | None = None
    pointed: bool = False
    backups: list[dict[str, str]] = field(default_factory=list)
    confirmed_upgrade_to: str | None = None
    previous_version: str | None = None  # the version the confirmed upgrade started from
    saw_down: bool = False
    hops: list[str] = field(default_factory=list)
    cluster_disconnected: bool = False
    upgrades_confirmed: int = 0
    installed_staged: str | None = None  # the version installed from an image staged beforehand
    error: str | None = None
    started: float | None = None
    finished: float | None = None
    message: str = ""

    @classmethod
    def from_json(cls, text: str) -> ApplianceRecord:
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "state" in known:
            known["state"] = State(known["state"])
        return cls(**known)


def operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class Journal:
    """One SQLite file per state directory; a connection per process, committed per write."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = not path.exists()
        if new:
            # Created owner-only before SQLite writes anything into it.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(SCHEMA)
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)
        self.rollout_id: int | None = None

    def close(self) -> None:
        self.db.close()

    # --- rollouts ------------------------------------------------------------------------------
    def begin(self, inventory: str, target: str, options: dict[str, Any]) -> int:
        cur = self.db.execute(
            "INSERT INTO rollouts (inventory, target, options, started) VALUES (?, ?, ?, ?)",
            (inventory, target, json.dumps(options), time.time()),
        )
        self.rollout_id = int(cur.lastrowid or 0)
        return self.rollout_id

    def unfinished(self, inventory: str) -> tuple[int, str, dict[str, Any]] | None:
        row = self.db.execute(
            "SELECT id, target, options FROM rollouts WHERE inventory = ? AND outcome IS NULL ORDER BY id DESC LIMIT 1",
            (inventory,),
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), str(row[1]), json.loads(row[2])

    def latest(self, inventory: str) -> tuple[int, str, dict[str, Any], str | None] | None:
        row = self.db.execute(
            "SELECT id, target, options, outcome FROM rollouts WHERE inventory = ? ORDER BY id DESC LIMIT 1",
            (inventory,),
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), str(row[1]), json.loads(row[2]), row[3]

    def attach(self, rollout_id: int) -> None:
        self.rollout_id = rollout_id

    def finish(self, outcome: str) -> None:
        self.db.execute(
            "UPDATE rollouts SET finished = ?, outcome = ? WHERE id = ?",
            (time.time(), outcome, self.rollout_id),
        )

    def reopen(self) -> None:
        self.db.execute("UPDATE rollouts SET finished = NULL, outcome = NULL WHERE id = ?", (self.rollout_id,))

    # --- appliances ----------------------------------------------------------------------------
    def save(self, record: ApplianceRecord) -> None:
        self.db.execute(
            "INSERT INTO appliances (rollout_id, name, record, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (rollout_id, name) DO UPDATE SET record = excluded.record, updated = excluded.updated",
            (self.rollout_id, record.name, json.dumps(asdict(record)), time.time()),
        )

    def records(self) -> dict[str, ApplianceRecord]:
        rows = self.db.execute("SELECT name, record FROM appliances WHERE rollout_id = ?", (self.rollout_id,))
        return {name: ApplianceRecord.from_json(text) for name, text in rows}

    # --- history -------------------------------------------------------------------------------
    def step_started(self, name: str, step: str) -> int:
        cur = self.db.execute(
            "INSERT INTO steps (rollout_id, name, step, started) VALUES (?, ?, ?, ?)",
            (self.rollout_id, name, step, time.time()),
        )
        return int(cur.lastrowid or 0)

    def step_finished(self, step_id: int, ok: bool, message: str = "") -> None:
        self.db.execute(
            "UPDATE steps SET finished = ?, ok = ?, message = ? WHERE id = ?",
            (time.time(), int(ok), message, step_id),
        )

    def command(self, name: str, command: str, output: str, ts: float | None = None) -> None:
        self.db.execute(
            "INSERT INTO commands (rollout_id, name, ts, command, output) VALUES (?, ?, ?, ?, ?)",
            (self.rollout_id, name, ts or time.time(), command, output),
        )

    def action(self, action: str, target: str | None = None, who: str | None = None) -> None:
        self.db.execute(
            "INSERT INTO actions (rollout_id, ts, who, action, target) VALUES (?, ?, ?, ?, ?)",
            (self.rollout_id, time.time(), who or operator(), action, target),
        )

    # --- staged images (segtui stage) -----------------------------------------------------------
    def set_staged(self, inventory: str, name: str, state: str, version: str | None, note: str = "") -> None:
        self.db.execute(
            "INSERT INTO staged (inventory, name, version, state, note, ts) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (inventory, name) DO UPDATE SET version = excluded.version, state = excluded.state, "
            "note = excluded.note, ts = excluded.ts",
            (inventory, name, version, state, note, time.time()),
        )

    def staged(self, inventory: str) -> dict[str, tuple[str, str | None, str]]:
        """name -> (state, version, note): staged, downloading, not-staged, other-image."""
        rows = self.db.execute("SELECT name, state, version, note FROM staged WHERE inventory = ?", (inventory,))
        return {name: (state, version, note or "") for name, state, version, note in rows}

    def steps_of(self, name: str) -> list[tuple[str, float, float | None, int | None, str | None]]:
        rows = self.db.execute(
            "SELECT step, started, finished, ok, message FROM steps WHERE rollout_id = ? AND name = ? ORDER BY id",
            (self.rollout_id, name),
        )
        return [(str(a), float(b), c, d, e) for a, b, c, d, e in rows]

    def commands_of(self, name: str) -> list[tuple[float, str, str]]:
        rows = self.db.execute(
            "SELECT ts, command, output FROM commands WHERE rollout_id = ? AND name = ? ORDER BY id",
            (self.rollout_id, name),
        )
        return [(float(a), str(b), str(c)) for a, b, c in rows]
