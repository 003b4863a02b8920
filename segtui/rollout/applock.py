"""Machine-wide per-appliance locks: any second segtui on this machine leaves an appliance alone while one works on it.

Keyed by the appliance's address (host and port), in `settings.locks.dir` or the user's state directory
(`$XDG_STATE_HOME/segtui/locks`, else `~/.local/state/segtui/locks`). flock-based: a killed process holds nothing.
`locks.dir` may be a team's shared directory (`chmod 3770`, the team's group): then every operator's segtui on
this machine sees every other's locks.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
import stat
from pathlib import Path

from segtui.errors import InputError
from segtui.rollout.journal import ensure_state_dir
from segtui.rollout.lock import FileLock, holder_text
from segtui.settings import Settings


def lock_dir(settings: Settings) -> Path:
    if settings.locks.dir is not None:
        return settings.locks.dir
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "segtui" / "locks"


def canonical_host(host: str) -> str:
    """One spelling per address: IPs in their standard form (`127.1`, `::ffff:127.0.0.1` -> `127.0.0.1`), names in
    lower case without the root dot. (A name and its IP still differ: the serial lock covers that once known.)"""
    text = host.strip().strip("[]").lower().rstrip(".")
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        try:
            ip = ipaddress.ip_address(socket.inet_aton(text)) if re.fullmatch(r"[0-9x.]+", text) else None
        except OSError:
            ip = None
    if ip is None:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def lock_key(host: str, port: int) -> str:
    """A file name for the address: readable, and unique even for hosts that differ only in odd characters."""
    host = canonical_host(host)
    address = f"{host}:{port}"
    readable = re.sub(r"[^a-z0-9.-]+", "_", host)[:60]
    return f"{readable}_{port}-{hashlib.sha256(address.encode()).hexdigest()[:12]}.lock"


WHAT = "the appliance lock directory (locks.dir)"


def team_group(path: Path) -> int | None:
    """The group of a team's shared lock directory, or None when `path` is not one.

    Shared means: a directory owned by us or root, writable by its group, with the sticky bit (`chmod 1770`, or
    `3770` so new files take its group), and not writable by others; no member can then remove another's lock.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    shared = (
        stat.S_ISDIR(st.st_mode)
        and st.st_mode & stat.S_ISVTX
        and st.st_mode & stat.S_IWGRP
        and not st.st_mode & stat.S_IWOTH
        and st.st_uid in (0, os.getuid())
    )
    if not shared:
        return None
    if os.getuid() != 0 and st.st_gid not in os.getgroups() and st.st_gid != os.getgid():
        raise InputError([f"{path}: {WHAT} is shared with a group you are not a member of (gid {st.st_gid})"])
    return st.st_gid


class ApplianceLocks:
    """Takes and gives back the lock of each appliance a procedure works on."""

    def __init__(self, settings: Settings, description: str) -> None:
        # Checked here, before any rollout begins: a lock directory we cannot trust refuses at once, not mid-rollout.
        path = lock_dir(settings)
        self.shared_gid = team_group(path)
        try:
            self.dir = path if self.shared_gid is not None else ensure_state_dir(path, WHAT)
        except InputError as exc:
            hint = "; for a team, share it: owned by you or root, the team's group, chmod 3770"
            raise InputError([line + hint for line in exc.problems]) from None
        self.description = description  # e.g. the inventory and rollout, written into the lock for the holder's name
        self._held: dict[str, FileLock] = {}

    def _lock(self, key: str, info: dict[str, object]) -> FileLock:
        return FileLock(self.dir / key, info, shared_gid=self.shared_gid)

    def acquire(self, name: str, host: str, port: int) -> str | None:
        """None when this process now holds it; else a one-line reason naming the other holder."""
        if name in self._held:
            return None
        lock = self._lock(lock_key(host, port), {"appliance": f"{host}:{port}", "rollout": self.description})
        holder = lock.try_acquire()
        if holder is not None:
            return f"another segtui ({holder_text(holder)}) is working on it: nothing done"
        self._held[name] = lock
        return None

    def acquire_serial(self, name: str, serial: str) -> str | None:
        """A second lock by serial number, held with the address lock until `release(name)`."""
        key = f"serial-{hashlib.sha256(serial.encode()).hexdigest()[:16]}.lock"
        mine = self._held.get(f"{name}\0serial")
        if mine is not None and mine.path.name == key:
            return None  # learned again (after the reboot): already ours
        same = [n.split("\0")[0] for n, held in self._held.items() if n.endswith("\0serial") and held.path.name == key]
        if same:
            return f"the same appliance as {same[0]} (serial {serial}) in this rollout: nothing more done"
        lock = self._lock(key, {"appliance": f"serial {serial}", "rollout": self.description})
        holder = lock.try_acquire()
        if holder is not None:
            return f"another segtui ({holder_text(holder)}) is working on it: nothing more done"
        self._held[f"{name}\0serial"] = lock
        return None

    def release(self, name: str) -> None:
        for key in (name, f"{name}\0serial"):
            lock = self._held.pop(key, None)
            if lock is not None:
                lock.release()

    def release_all(self) -> None:
        for key in list(self._held):
            lock = self._held.pop(key)
            lock.release()
