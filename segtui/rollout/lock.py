"""One rollout per inventory at a time: an flock'd file that says who holds it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

from segtui.rollout.journal import ensure_state_dir, open_private, operator


def holder_text(holder: dict[str, object]) -> str:
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')}, {holder.get('who', '?')}, since {when}"


class LockHeld(Exception):
    def __init__(self, path: Path, holder: dict[str, object]) -> None:
        super().__init__(
            f"{path}: another segtui holds the rollout lock for this inventory "
            f"({holder_text(holder)}, command {holder.get('command', '?')})"
        )
        self.holder = holder


class FileLock:
    """An flock on a private file (no symlink followed), with who holds it written inside; gone with the process."""

    def __init__(self, path: Path, info: dict[str, object]) -> None:
        self.path = path
        self.info = info
        self._fd: int | None = None

    def try_acquire(self) -> dict[str, object] | None:
        """None when acquired; else what the holder wrote (pid, who, since, ...)."""
        fd = open_private(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except (ValueError, OSError):
                holder = {}
            os.close(fd)
            return holder if isinstance(holder, dict) else {}
        data = json.dumps({"pid": os.getpid(), "who": operator(), "since": time.time(), **self.info})
        os.ftruncate(fd, 0)
        os.pwrite(fd, data.encode(), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


class InventoryLock:
    def __init__(self, state_dir: Path, inventory: Path, command: str) -> None:
        digest = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:16]
        self.path = state_dir / f"rollout-{digest}.lock"
        self._lock = FileLock(self.path, {"command": command, "inventory": str(inventory)})

    def acquire(self) -> None:
        ensure_state_dir(self.path.parent)
        holder = self._lock.try_acquire()
        if holder is not None:
            raise LockHeld(self.path, holder)

    def release(self) -> None:
        self._lock.release()

    def holder(self) -> dict[str, object] | None:
        """Who holds the lock now (pid, who, since, command), or None: for `segtui watch`, taking nothing."""
        nofollow = getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, os.O_RDONLY | nofollow)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
                except (ValueError, OSError):
                    data = {}
                return data if isinstance(data, dict) else {}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def __enter__(self) -> InventoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
