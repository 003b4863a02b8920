"""The rollout journal: SQLite in WAL mode, every step, command and operator action, crash-safe."""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segtui.errors import InputError
from segtui.rollout.events import FINAL_STATES, State

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
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  rollout_id INTEGER NOT NULL,
  ts REAL NOT NULL,
  kind TEXT NOT NULL,
  appliance TEXT,
  text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_rollout ON events (rollout_id, id);
CREATE TABLE IF NOT EXISTS batches (
  rollout_id INTEGER NOT NULL,
  batch INTEGER NOT NULL,
  name TEXT NOT NULL,
  PRIMARY KEY (rollout_id, name)
);
"""

JOURNAL_FILE = "journal.sqlite"


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
    # --- appended by the procedure (d2) ---
    hostname: str | None = None  # the appliance's own name (its prompt), learned at pre-check
    serial: str | None = None  # `version` -> `Serial #`: identifies the box behind this inventory entry
    unrecognized_questions: list[dict[str, Any]] = field(default_factory=list)  # {command, question, ts}
    reboot_started: float | None = None  # when the upgrade was confirmed: the reboot deadline counts from it
    reprobe: bool = False  # set by the engine: read the appliance first and continue from the truth
    left_by_hand: str = ""  # after give-up: what a person must still do, with the commands
    guard_waits: list[dict[str, Any]] = field(default_factory=list)  # {since, until, reason, outcome}
    bake: dict[str, Any] | None = None  # {verdict, message, samples: [...]}
    given_up: bool = False  # needs-attention left for a person: blocks nothing any more

    @property
    def known_version(self) -> str | None:
        """The version it runs, as far as segtui knows. None once it stopped with an upgrade confirmed and never
        seen back (a hung reboot given up, lost on the way): it runs `current` or `confirmed_upgrade_to`."""
        if self.state in FINAL_STATES and self.confirmed_upgrade_to is not None:
            return None
        return self.current

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


def _owner(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return f"uid {uid}"


def _refuse_unless_ours(path: Path, st: os.stat_result, what: str) -> None:
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise InputError(
            [
                f"{path}: {what} is owned by {_owner(st.st_uid)} with mode {st.st_mode & 0o7777:04o}; segtui keeps "
                f"its state only where no one else can write (owned by {_owner(os.getuid())}, not group/other-"
                "writable): fix it or choose another directory"
            ]
        )


def ensure_state_dir(state_dir: Path, what: str = "the state directory") -> Path:
    """A private directory (the state directory, the lock directory), created 0700; refused when another user owns
    it or others can write to it. `what` names it in the one-line refusal."""
    try:
        if not os.path.lexists(state_dir):
            state_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            state_dir.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(state_dir)
    except OSError as exc:
        raise InputError([f"{state_dir}: cannot use as {what}: {exc.strerror or exc}"]) from None
    if stat.S_ISLNK(st.st_mode):
        st = os.stat(state_dir)  # a symlinked state_dir is the operator's choice; its target must be ours
    if not stat.S_ISDIR(st.st_mode):
        raise InputError([f"{state_dir}: {what} is not a directory"])
    _refuse_unless_ours(state_dir, st, what)
    return state_dir


def open_private(path: Path, flags: int = os.O_RDWR) -> int:
    """Open (creating owner-only, exclusively) a state file without following a symlink; refuse a foreign one."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        try:
            fd = os.open(path, flags | nofollow)
        except FileNotFoundError:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | nofollow, 0o600)
    except OSError as exc:
        reason = "is a symbolic link" if os.path.islink(path) else (exc.strerror or str(exc))
        raise InputError([f"{path}: refused: {reason}"]) from None
    try:
        _refuse_unless_ours(path, os.fstat(fd), "the file")
    except InputError:
        os.close(fd)
        raise
    return fd


@dataclass
class RolloutRow:
    """One rollout of the history: when, target, outcome, counts, who."""

    id: int
    inventory: str
    target: str
    started: float
    finished: float | None
    outcome: str | None
    operator: str
    options: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    ended_by: tuple[str, float] | None = None  # (who, when) of the abort, for an aborted rollout

    def describe(self) -> str:
        """One line: `rollout 3 to 16.0.0-123 (started ... by ...): aborted by bob@h at ...`."""
        start = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(self.started))
        head = f"rollout {self.id} to {self.target} (started {start} by {self.operator})"
        if self.outcome is None:
            return f"{head}: unfinished"
        if self.outcome == "aborted" and self.ended_by:
            who, when = self.ended_by
            return f"{head}: aborted by {who} at {time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(when))}"
        return f"{head}: {self.outcome}"


@dataclass
class EventRow:
    id: int
    ts: float
    kind: str
    appliance: str | None
    text: str


class Journal:
    """One SQLite file per state directory; a connection per process, committed per write."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self.rollout_id: int | None = None
        if readonly:
            if not path.is_file():
                raise InputError([f"{path}: no journal here"])
            self.db = self._connect(lambda: sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True))
            return
        ensure_state_dir(path.parent)
        os.close(open_private(path))
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if os.path.lexists(side):
                os.close(open_private(side))
        self.db = self._connect(lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False))
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(rollouts)")}
            if "operator" not in columns:
                self.db.execute("ALTER TABLE rollouts ADD COLUMN operator TEXT")
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise self._damaged(exc) from None
        for suffix in ("-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                os.chmod(side, 0o600)

    @classmethod
    def in_dir(cls, state_dir: Path) -> Journal:
        """The journal of a state directory (the one place that names the file)."""
        return cls(state_dir / JOURNAL_FILE)

    @classmethod
    def open_readonly(cls, path: Path) -> Journal:
        """A reader beside the writer (WAL): for `segtui watch`, `history` and `report`."""
        return cls(path, readonly=True)

    def _damaged(self, exc: Exception) -> InputError:
        return InputError(
            [
                f"{self.path}: the journal is damaged ({exc}): move it aside to start afresh "
                f"(mv {self.path} {self.path}.damaged); backups are in {self.path.parent / 'backups'}"
            ]
        )

    def _connect(self, connect: Any) -> sqlite3.Connection:
        try:
            db: sqlite3.Connection = connect()
            db.execute("PRAGMA busy_timeout=5000")
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from None
        return db

    def close(self) -> None:
        self.db.close()

    # --- rollouts ------------------------------------------------------------------------------
    def begin(self, inventory: str, target: str, options: dict[str, Any], who: str | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO rollouts (inventory, target, options, started, operator) VALUES (?, ?, ?, ?, ?)",
            (inventory, target, json.dumps(options), time.time(), who or operator()),
        )
        self.rollout_id = int(cur.lastrowid or 0)
        return self.rollout_id

    def update_options(self, options: dict[str, Any]) -> None:
        self.db.execute("UPDATE rollouts SET options = ? WHERE id = ?", (json.dumps(options), self.rollout_id))

    def unfinished(self, inventory: str) -> tuple[int, str, dict[str, Any]] | None:
        row = self.db.execute(
            "SELECT id, target, options FROM rollouts WHERE inventory = ? AND outcome IS NULL ORDER BY id DESC LIMIT 1",
            (inventory,),
        ).fetchone()
        if row is None:
            return None
        return int(row[0]), str(row[1]), json.loads(row[2])

    def attach(self, rollout_id: int) -> None:
        self.rollout_id = rollout_id

    def finish(self, outcome: str) -> None:
        self.db.execute(
            "UPDATE rollouts SET finished = ?, outcome = ? WHERE id = ?",
            (time.time(), outcome, self.rollout_id),
        )

    def reopen(self) -> None:
        """A finished rollout taken up again (a retry after its end); never an aborted one."""
        self.db.execute(
            "UPDATE rollouts SET finished = NULL, outcome = NULL WHERE id = ? AND outcome IS NOT 'aborted'",
            (self.rollout_id,),
        )

    # --- history (report, `segtui history`, `segtui watch`) ------------------------------------
    def _row(self, row: tuple[Any, ...]) -> RolloutRow:
        rid, inventory, target, options, started, finished, outcome, who = row
        counts: dict[str, int] = {}
        for (text,) in self.db.execute("SELECT record FROM appliances WHERE rollout_id = ?", (rid,)):
            state = str(json.loads(text).get("state", "pending"))
            counts[state] = counts.get(state, 0) + 1
        ended_by = None
        if outcome == "aborted":
            hit = self.db.execute(
                "SELECT who, ts FROM actions WHERE rollout_id = ? AND action = 'abort' ORDER BY id LIMIT 1", (rid,)
            ).fetchone()
            ended_by = (str(hit[0]), float(hit[1])) if hit else None
        try:
            opts = json.loads(options)
        except ValueError:
            opts = {}
        return RolloutRow(
            id=int(rid),
            inventory=str(inventory),
            target=str(target),
            started=float(started),
            finished=finished,
            outcome=outcome,
            operator=str(who or "?"),
            options=opts if isinstance(opts, dict) else {},
            counts=counts,
            ended_by=ended_by,
        )

    _COLUMNS = "id, inventory, target, options, started, finished, outcome, operator"

    def rollouts(self, inventory: str) -> list[RolloutRow]:
        """The rollouts of one inventory, newest first."""
        rows = self.db.execute(
            f"SELECT {self._COLUMNS} FROM rollouts WHERE inventory = ? ORDER BY id DESC", (inventory,)
        ).fetchall()
        return [self._row(r) for r in rows]

    def rollout_info(self, rollout_id: int) -> RolloutRow | None:
        row = self.db.execute(f"SELECT {self._COLUMNS} FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        return None if row is None else self._row(row)

    def last_rollout(self, inventory: str) -> RolloutRow | None:
        """The newest rollout of the inventory, finished or not: `resume` says when it was aborted, by whom."""
        row = self.db.execute(
            f"SELECT {self._COLUMNS} FROM rollouts WHERE inventory = ? ORDER BY id DESC LIMIT 1", (inventory,)
        ).fetchone()
        return None if row is None else self._row(row)

    def actions_of(self, rollout_id: int | None = None) -> list[tuple[float, str, str, str | None]]:
        """(ts, who, action, target) of every operator action, in order."""
        rows = self.db.execute(
            "SELECT ts, who, action, target FROM actions WHERE rollout_id = ? ORDER BY id",
            (rollout_id if rollout_id is not None else self.rollout_id,),
        )
        return [(float(a), str(b), str(c), d) for a, b, c, d in rows]

    def event(self, kind: str, text: str, appliance: str | None = None, ts: float | None = None) -> None:
        self.db.execute(
            "INSERT INTO events (rollout_id, ts, kind, appliance, text) VALUES (?, ?, ?, ?, ?)",
            (self.rollout_id, ts or time.time(), kind, appliance, text),
        )

    def events(self, rollout_id: int | None = None, after_id: int = 0) -> list[EventRow]:
        """The event log after `after_id` (what `segtui watch` tails)."""
        rows = self.db.execute(
            "SELECT id, ts, kind, appliance, text FROM events WHERE rollout_id = ? AND id > ? ORDER BY id",
            (rollout_id if rollout_id is not None else self.rollout_id, after_id),
        )
        return [EventRow(int(a), float(b), str(c), d, str(e)) for a, b, c, d, e in rows]

    def save_batches(self, plan: list[list[str]]) -> None:
        self.db.execute("DELETE FROM batches WHERE rollout_id = ?", (self.rollout_id,))
        self.db.executemany(
            "INSERT INTO batches (rollout_id, batch, name) VALUES (?, ?, ?)",
            [(self.rollout_id, i, name) for i, names in enumerate(plan, start=1) for name in names],
        )

    def batches(self, rollout_id: int | None = None) -> list[list[str]]:
        """Which appliance in which batch (batch 1 first)."""
        rows = self.db.execute(
            "SELECT batch, name FROM batches WHERE rollout_id = ? ORDER BY batch, rowid",
            (rollout_id if rollout_id is not None else self.rollout_id,),
        )
        plan: dict[int, list[str]] = {}
        for batch, name in rows:
            plan.setdefault(int(batch), []).append(str(name))
        return [plan[k] for k in sorted(plan)]

    # --- appliances ----------------------------------------------------------------------------
    def save(self, record: ApplianceRecord) -> None:
        self.db.execute(
            "INSERT INTO appliances (rollout_id, name, record, updated) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (rollout_id, name) DO UPDATE SET record = excluded.record, updated = excluded.updated",
            (self.rollout_id, record.name, json.dumps(asdict(record)), time.time()),
        )

    def records(self, rollout_id: int | None = None) -> dict[str, ApplianceRecord]:
        rows = self.db.execute(
            "SELECT name, record FROM appliances WHERE rollout_id = ?",
            (rollout_id if rollout_id is not None else self.rollout_id,),
        )
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
