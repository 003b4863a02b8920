"""One rollout per inventory at a time: an flock'd file that says who holds it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

from segtui.rollout.journal import operator


class LockHeld(Exception):
    def __init__(self, path: Path, holder: dict[str, object]) -> None:
        since = holder.get("since")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, float) else "?"
        pid, who, command = holder.get("pid", "?"), holder.get("who", "?"), holder.get("command", "?")
        super().__init__(
            f"{path}: another segtui holds the rollout lock for this inventory "
            f"(pid {pid}, {who}, since {when}, command {command})"
        )
        self.holder = holder


class InventoryLock:
    def __init__(self, state_dir: Path, inventory: Path, command: str) -> None:
        digest = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:16]
        self.path = state_dir / f"rollout-{digest}.lock"
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except (ValueError, OSError):
                holder = {}
            os.close(fd)
            raise LockHeld(self.path, holder) from None
        info = json.dumps({"pid": os.getpid(), "who": operator(), "since": time.time(), "command": self.command})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InventoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
