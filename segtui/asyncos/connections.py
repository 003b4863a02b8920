"""SSH connections shared by the sessions that talk to one appliance.

A CLI session over a live connection costs a channel; over a new one it costs a handshake (TCP, key exchange,
host-key check, login), which for a fleet is most of segtui's SSH work: the pre-flight, the procedure, the peer
readings of the capacity guards and the return from a reboot would each log in to the same appliance again. Here
they share one connection per appliance (host, port, user):

- a connection is shared while any session uses it, and kept `linger` seconds after its last session closed (the
  pre-flight's, for the procedure that follows; the reboot check's, for the verification), then closed;
- `retire` takes a connection out of sharing: the appliance reboots, or a session on it broke (a dropped session
  or a missed deadline may mean a dead link); it closes with its last session and nobody gets it again;
- an appliance that refuses a second channel on a connection is never asked again: each of its sessions then has
  a connection of its own, as without sharing.

Host keys and credentials are checked by the handshake that made the connection: a connection is shared only with
sessions that would have made the same checks (same host, port, user, password or key, known_hosts file), so an
inventory entry with a wrong password or another known_hosts file never rides on another entry's login.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncssh

from segtui.asyncos.errors import ApplianceError

if TYPE_CHECKING:
    from segtui.asyncos.session import ConnectOptions

ConnKey = tuple[str, int, str, str, str, str]


# Passwords are told apart by a keyed hash whose key never leaves this process: nothing held here can be used to
# guess a password, even if it is printed.
_SALT = secrets.token_bytes(32)


def conn_key(opts: ConnectOptions) -> ConnKey:
    creds = opts.credentials
    secret = hmac.new(_SALT, (creds.password or "").encode(), hashlib.sha256).hexdigest()
    return (opts.host, opts.port, creds.username, secret, str(creds.key_file or ""), str(opts.known_hosts))


@dataclass(eq=False)
class _Shared:
    key: ConnKey = field(repr=False)
    conn: asyncssh.SSHClientConnection = field(repr=False)
    users: int = 0
    retired: bool = False
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)

    def usable(self) -> bool:
        return not self.retired and not self.conn.is_closed()


@dataclass(eq=False)
class Lease:
    """One session's use of a connection; `release` once, when the session closes."""

    conn: asyncssh.SSHClientConnection
    shared: bool  # the connection was already in use (a second channel on it), not made for this session
    _pool: SharedConnections | None = field(default=None, repr=False)
    _entry: _Shared | None = field(default=None, repr=False)
    _released: bool = field(default=False, repr=False)

    async def release(self, *, reuse: bool = True) -> None:
        """Done with the connection. `reuse=False` retires it (it broke, or the appliance reboots)."""
        if self._released:
            return
        self._released = True
        if self._pool is None or self._entry is None:
            await _close(self.conn)
            return
        await self._pool._release(self._entry, reuse=reuse)

    def refused(self) -> None:
        """The appliance refused a second channel on this connection: never share its connections again."""
        if self._pool is not None and self._entry is not None:
            self._pool._refused.add(self._entry.key)


class SharedConnections:
    def __init__(self, linger: float = 0.0) -> None:
        self.linger = linger
        self._live: dict[ConnKey, _Shared] = {}
        self._refused: set[ConnKey] = set()
        self._logging_in: dict[ConnKey, asyncio.Future[ApplianceError | None]] = {}

    async def connect(
        self, opts: ConnectOptions, login: Callable[[], Awaitable[asyncssh.SSHClientConnection]]
    ) -> Lease:
        """A lease on the appliance's connection: the live one, else the one another session is making now (waited
        for; its failure is ours too: one failed login, not one per session), else a new one made by `login()`."""
        key = conn_key(opts)
        while (lease := self.take(opts)) is None and (pending := self._logging_in.get(key)) is not None:
            if key in self._refused:
                break
            failed = await asyncio.shield(pending)
            if failed is not None:
                raise failed
        if lease is not None:
            return lease
        done: asyncio.Future[ApplianceError | None] = asyncio.get_running_loop().create_future()
        self._logging_in[key] = done
        failure: ApplianceError | None = None
        try:
            conn = await login()
        except ApplianceError as exc:
            failure = exc
            raise
        finally:
            if self._logging_in.get(key) is done:
                del self._logging_in[key]
            done.set_result(failure)  # a cancelled login is no failure for the others: they try their own
        return self.add(opts, conn)

    def adopt(self, opts: ConnectOptions, lease: Lease) -> None:
        """Share from now on the connection of a lease made apart (a reboot check's, once it proved the return)."""
        key = conn_key(opts)
        if lease._pool is not None or lease.conn.is_closed():
            return
        old = self._live.pop(key, None)
        if old is not None:
            self._retire(old)
        entry = self._live[key] = _Shared(key, lease.conn, users=1)
        lease._pool, lease._entry = self, entry

    def take(self, opts: ConnectOptions) -> Lease | None:
        """A lease on the appliance's live connection, or None (none, retired, closed, or sharing refused)."""
        key = conn_key(opts)
        entry = self._live.get(key)
        if entry is None or key in self._refused:
            return None
        if not entry.usable():
            del self._live[key]
            return None
        if entry.expiry is not None:
            entry.expiry.cancel()
            entry.expiry = None
        entry.users += 1
        return Lease(entry.conn, True, self, entry)

    def add(self, opts: ConnectOptions, conn: asyncssh.SSHClientConnection) -> Lease:
        """A lease on a connection just made: shared from now on, in place of any older one to the appliance."""
        lease = Lease(conn, False)
        self.adopt(opts, lease)
        return lease

    def retire(self, opts: ConnectOptions) -> None:
        """Nobody gets the appliance's current connection again (it is about to reboot)."""
        entry = self._live.pop(conn_key(opts), None)
        if entry is not None:
            self._retire(entry)

    def _retire(self, entry: _Shared) -> None:
        entry.retired = True
        if entry.users == 0:
            self._expire(entry)

    async def _release(self, entry: _Shared, *, reuse: bool) -> None:
        entry.users -= 1
        if not reuse:
            entry.retired = True
            self._forget(entry)
        if entry.users > 0:
            return
        if entry.usable() and self.linger > 0:
            entry.expiry = asyncio.get_running_loop().call_later(self.linger, self._expire, entry)
            return
        self._forget(entry)
        await _close(entry.conn)

    def _forget(self, entry: _Shared) -> None:
        if self._live.get(entry.key) is entry:
            del self._live[entry.key]

    def _expire(self, entry: _Shared) -> None:
        if entry.users == 0:
            self._forget(entry)
            entry.conn.close()

    async def close(self) -> None:
        """Close every connection nobody uses; the ones in use close with their last session."""
        idle = [e for e in self._live.values() if e.users == 0]
        for entry in list(self._live.values()):
            if entry.expiry is not None:
                entry.expiry.cancel()
                entry.expiry = None
            entry.retired = True
        self._live.clear()
        for entry in idle:
            await _close(entry.conn)


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
        async with asyncio.timeout(5):
            await conn.wait_closed()
