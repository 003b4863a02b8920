"""One rollout per inventory at a time: an flock'd file that says who holds it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import time
from pathlib import Path

from segtui.errors import InputError
from segtui.rollout.journal import ensure_state_dir, open_private, operator


def holder_text(holder: dict[str, object]) -> str:
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return f"pid {holder.get('pid', '?')}, {holder.get('who', '?')}, since {when}"


def _holder(fd: int) -> dict[str, object]:
    """What the holder of a lock wrote into its file (pid, who, since, ...); {} when it is unreadable."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


class LockHeld(Exception):
    def __init__(self, path: Path, holder: dict[str, object]) -> None:
        super().__init__(
            f"{path}: another segtui holds the rollout lock for this inventory "
            f"({holder_text(holder)}, command {holder.get('command', '?')})"
        )
        self.holder = holder


def open_shared(path: Path, gid: int) -> int:
    """Open (creating 0660, group `gid`) a lock file in a team's shared directory, without following a symlink.

    A file another member made is used as is if it is a plain file with one link, of the directory's group, that
    nobody outside the group can write: flock and the holder's line are all it carries.
    """
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    for _ in range(3):  # another member may create it between our two opens
        try:
            fd = os.open(path, os.O_RDWR | nofollow)
            break
        except FileNotFoundError:
            pass
        except OSError as exc:
            reason = "is a symbolic link" if os.path.islink(path) else (exc.strerror or str(exc))
            raise InputError([f"{path}: refused: {reason}"]) from None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | nofollow, 0o660)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InputError([f"{path}: cannot create a lock: {exc.strerror or exc}"]) from None
        try:
            os.fchown(fd, -1, gid)  # a member of the team's group; the file must be theirs too
            os.fchmod(fd, 0o660)  # whatever our umask
        except OSError as exc:
            os.close(fd)
            os.unlink(path)
            raise InputError(
                [f"{path}: cannot give the lock to the directory's group: {exc.strerror or exc}"]
            ) from None
        break
    else:
        raise InputError([f"{path}: refused: it keeps appearing and disappearing"])
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_gid != gid or st.st_mode & 0o002:
        os.close(fd)
        raise InputError(
            [
                f"{path}: refused: a lock file must be a plain file with one link, of the shared directory's group, "
                f"not writable by others (mode {st.st_mode & 0o7777:04o}, {st.st_nlink} link(s))"
            ]
        )
    return fd


class FileLock:
    """An flock on a file (no symlink followed), with who holds it written inside; gone with the process.

    The file is private (ours, 0600), or, with `shared_gid`, in a team's shared lock directory (0660, its group)."""

    def __init__(self, path: Path, info: dict[str, object], shared_gid: int | None = None) -> None:
        self.path = path
        self.info = info
        self.shared_gid = shared_gid
        self._fd: int | None = None

    def try_acquire(self) -> dict[str, object] | None:
        """None when acquired; else what the holder wrote (pid, who, since, ...)."""
        fd = open_private(self.path) if self.shared_gid is None else open_shared(self.path, self.shared_gid)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            return holder
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
                return _holder(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def __enter__(self) -> InventoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
