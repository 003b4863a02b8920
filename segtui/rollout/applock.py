"""Machine-wide per-appliance locks: any second segtui on this machine leaves an appliance alone while one works on it.

Keyed by the appliance's address (host and port), in `settings.locks.dir` or the user's state directory
(`$XDG_STATE_HOME/segtui/locks`, else `~/.local/state/segtui/locks`). flock-based: a killed process holds nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import socket
from pathlib import Path

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


class ApplianceLocks:
    """Takes and gives back the lock of each appliance a procedure works on."""

    def __init__(self, settings: Settings, description: str) -> None:
        # Checked here, before any rollout begins: a lock directory we cannot trust refuses at once, not mid-rollout.
        self.dir = ensure_state_dir(lock_dir(settings), "the appliance lock directory (locks.dir)")
        self.description = description  # e.g. the inventory and rollout, written into the lock for the holder's name
        self._held: dict[str, FileLock] = {}

    def acquire(self, name: str, host: str, port: int) -> str | None:
        """None when this process now holds it; else a one-line reason naming the other holder."""
        if name in self._held:
            return None
        lock = FileLock(self.dir / lock_key(host, port), {"appliance": f"{host}:{port}", "rollout": self.description})
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
        lock = FileLock(self.dir / key, {"appliance": f"serial {serial}", "rollout": self.description})
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
