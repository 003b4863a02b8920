"""Typed AsyncOS commands over a CLISession: each returns a typed result or raises a typed error."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shlex
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncssh

from segtui.asyncos import parsers
from segtui.asyncos.connections import Lease, SharedConnections
from segtui.asyncos.errors import (
    ApplianceError,
    CommandFailed,
    CommandTimeout,
    ConnectionLost,
    ParseError,
    UpgradeFailed,
)
from segtui.asyncos.parsers import (
    StatusDetail,
    UpgradeOffer,
    UpgradeProgress,
    UpgradeSource,
    VersionInfo,
    WorkQueueStatus,
)
from segtui.asyncos.session import (
    OTHERWISE_DEFAULT,
    Answer,
    CLISession,
    ConnectOptions,
    DialoguePolicy,
    TranscriptSink,
    UnknownQuestionSink,
    open_connection,
)
from segtui.asyncos.versions import Version, next_hop
from segtui.textsafe import one_line

_T = TypeVar("_T")


@dataclass(frozen=True)
class CommandTimeouts:
    """Deadlines per kind of command, in seconds (from settings)."""

    default: float = 60.0
    analysis: float = 330.0  # `upgrade` may analyse the system for up to 300 s
    upgrade: float = 3600.0
    backup: float = 180.0


@dataclass(frozen=True)
class ListenerChange:
    listeners: list[str]  # empty when the appliance has no listeners


@dataclass(frozen=True)
class Backup:
    kind: str  # "config" or "safelist"
    remote: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class UpgradeResult:
    chosen: Version
    offers: list[UpgradeOffer]
    rebooting: bool  # saw "Rebooting the system..." or lost the session after confirming
    installed_staged: bool = False  # INSTALL of an image downloaded beforehand


def choose_offer(
    offers: list[UpgradeOffer],
    target: Version,
    *,
    allowed: Collection[Version] | None = None,
    current: Version | None = None,
) -> UpgradeOffer | None:
    """The item to answer with: the target if offered, else the planned hop (`allowed`) or, without a plan,
    the newest offer between `current` and the target. Never any other release."""
    candidates = [o.version for o in offers if allowed is None or o.version in allowed]
    version = next_hop(candidates, target, current)
    if version is None:
        return None
    return next(o for o in offers if o.version == version)


_LIST_ITEM_NUMBER_RE = re.compile(r"^[ \t]*(\d{1,9})[.)][ \t]", re.MULTILINE)


def _ambiguous_offers(question: str, offers: list[UpgradeOffer]) -> str | None:
    """Why a list cannot be answered safely: two items with one number (with or without a release), or an
    item naming two releases."""
    text = parsers.normalize(question)
    start = text.lower().rfind("upgrades available")
    seen: set[int] = set()
    for m in _LIST_ITEM_NUMBER_RE.finditer(text, max(start, 0)):
        number = int(m.group(1))
        if number in seen:
            return f"two items numbered {number}"
        seen.add(number)
    for offer in offers:
        named = {str(v) for v in parsers.versions_named(offer.line)}
        if len(named) > 1:
            return f"item {offer.number} names {', '.join(sorted(named))}"
    return None


def _offered(offers: list[UpgradeOffer]) -> str:
    return ", ".join(f"[{o.number}] {o.version}" for o in offers) or "nothing"


# The two updateconfig SETUP questions for AsyncOS upgrades (one line each): bounded gaps, so that a question
# made of "AsyncOS upgrades" repeated over 16 KiB costs linear time, not a backtracking scan per occurrence.
UPDATECONFIG_IMAGES_Q = r"AsyncOS upgrades[^\n]{0,200}?download updates from \(images\)"
UPDATECONFIG_LIST_Q = r"AsyncOS upgrades[^\n]{0,200}?list of available updates"

BACKUP_MAX_BYTES = 256 * 1024 * 1024
_SCP_BLOCK = 256 * 1024
_SCP_HEADER_MAX = 4096


BACKUP_REMOTE_DIR = "/configuration/"


def backup_file_name(remote: str) -> str | None:
    """The local name for a remote file: its basename, or None when `remote` names no single file directly in
    /configuration/ (where saveconfig and slblconfig write): `../../etc/passwd`, `/etc/passwd` are no backups."""
    if not remote.startswith(BACKUP_REMOTE_DIR) or any(c in remote for c in "\0\n\r*?["):
        return None
    name = remote[len(BACKUP_REMOTE_DIR) :]
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        return None
    return name


class _ScpRefused(Exception):
    """The SCP exchange cannot go on (refused, too large, malformed): the message says why."""


async def _scp_line(stdout: asyncssh.SSHReader[bytes]) -> bytes:
    """One protocol line, bounded: a peer that never sends a newline cannot grow our memory."""
    line = b""
    while not line.endswith(b"\n"):
        byte = await stdout.read(1)
        if not byte:
            raise _ScpRefused("the transfer ended in the middle of a protocol line")
        line += byte
        if len(line) > _SCP_HEADER_MAX:
            raise _ScpRefused("malformed SCP reply (header line too long)")
    return line[:-1]


async def _scp_fetch(
    conn: asyncssh.SSHClientConnection, remote: str, target: Path, max_bytes: int, created: list[bool]
) -> tuple[str, int]:
    """The sink side of the (legacy) SCP protocol over `scp -f`: one regular file, refused before any
    byte of it is read when the header announces more than `max_bytes`."""
    process = await conn.create_process(f"scp -f {shlex.quote(remote)}", encoding=None)
    try:
        stdin, stdout = process.stdin, process.stdout
        stdin.write(b"\0")
        while True:
            kind = await stdout.read(1)
            if not kind:
                raise _ScpRefused("the appliance sent no file")
            line = await _scp_line(stdout)
            text = one_line(line.decode("utf-8", "replace"), 200)
            if kind in (b"\x01", b"\x02"):
                raise _ScpRefused(f"refused by the appliance: {text}")
            if kind == b"T":  # times (only with -p): acknowledge and go on
                stdin.write(b"\0")
                continue
            if kind == b"C":
                break
            if kind == b"D":
                raise _ScpRefused("it is a directory, not a file")
            raise _ScpRefused(f"unexpected SCP reply {one_line((kind + line).decode('utf-8', 'replace'), 80)!r}")
        fields = text.split(" ", 2)
        if len(fields) != 3 or not fields[1].isdigit():
            raise _ScpRefused(f"malformed SCP header {text!r}")
        size = int(fields[1])
        if size > max_bytes:
            raise _ScpRefused(f"the file is {size} bytes, over the limit of {max_bytes} bytes: not fetched")
        # A file left by an earlier attempt is replaced, never written through (unlink does not follow links).
        target.unlink(missing_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        created[0] = True
        digest = hashlib.sha256()
        got = 0
        with os.fdopen(fd, "wb") as out:
            stdin.write(b"\0")
            while got < size:
                chunk = await stdout.read(min(_SCP_BLOCK, size - got))
                if not chunk:
                    raise _ScpRefused(f"the transfer ended after {got} of {size} bytes")
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
        status = await stdout.read(1)
        if status != b"\0":
            reason = await _scp_line(stdout) if status else b"connection closed"
            raise _ScpRefused(f"error after the data: {one_line(reason.decode('utf-8', 'replace'), 200)}")
        stdin.write(b"\0")
        if await stdout.read(1):
            raise _ScpRefused("the appliance sent more than the one file asked for")
        return digest.hexdigest(), size
    finally:
        process.close()


def _pick_all(question: str) -> str:
    m = re.search(r"^\s*(\d+)\.\s+All\s*$", question, re.MULTILINE | re.IGNORECASE)
    return m.group(1) if m else ""


def _listeners_from(output: str, verb: str) -> ListenerChange:
    if "no listeners configured" in output.lower():
        return ListenerChange([])
    m = re.search(rf"Receiving {verb} for (.+?)\.?\s*$", output, re.MULTILINE | re.IGNORECASE)
    if not m:
        failure = parsers.find_marker(output, parsers.COMMAND_ERROR_MARKERS) or output.strip()[-200:]
        raise CommandFailed("?", f"listeners not {verb}: {failure}")
    return ListenerChange([n.strip() for n in m.group(1).split(",") if n.strip()])


class Appliance:
    """Typed commands on one appliance; opens (and re-opens) its CLI session on demand."""

    def __init__(
        self,
        opts: ConnectOptions,
        *,
        timeouts: CommandTimeouts | None = None,
        transcript: TranscriptSink | None = None,
        handshakes: asyncio.Semaphore | None = None,
        policy: DialoguePolicy | None = None,
        on_unknown: UnknownQuestionSink | None = None,
        secrets: Sequence[str] = (),
        connections: SharedConnections | None = None,
        fresh: bool = False,
    ) -> None:
        self.opts = opts
        self._policy, self._on_unknown, self._secrets = policy, on_unknown, tuple(secrets)
        self._hostname: str | None = None
        self._handshakes = handshakes
        self.name = opts.name
        self.timeouts = timeouts or CommandTimeouts()
        self._transcript = transcript
        self._session: CLISession | None = None
        self._opening = asyncio.Lock()  # two callers needing a session at once open one, not two
        self._connections = connections
        self._fresh = fresh

    async def session(self) -> CLISession:
        if self._session is not None:
            return self._session
        async with self._opening:
            if self._session is None:
                self._session = await self._open()
            return self._session

    async def _open(self) -> CLISession:
        """A shell over the appliance's shared connection if one is live (a channel, no login), else over a new one.

        With `fresh`, always over a new connection of its own, shared only once `share()` says so (a reboot check
        proves that the appliance takes logins again, then its connection serves the verification)."""
        pool = self._connections
        if pool is None or self._fresh:
            return await self._shell(Lease(await self._login(), False))
        for _ in range(2):
            lease = await pool.connect(self.opts, self._login)
            if not lease.shared:
                return await self._shell(lease)
            try:
                async with asyncio.timeout(self.opts.connect_timeout):
                    return await self._shell(lease)
            except (ConnectionLost, TimeoutError):
                pass  # that connection is retired now (a dead link, or no second shell on it): another one
        return await self._shell(Lease(await self._login(), False))

    async def _login(self) -> asyncssh.SSHClientConnection:
        if self._handshakes is None:
            return await open_connection(self.opts)
        # Bound concurrent handshakes: hundreds at once starve the event loop and the peer.
        async with self._handshakes:
            return await open_connection(self.opts)

    async def _shell(self, lease: Lease) -> CLISession:
        return await CLISession.open(
            self.opts,
            lease,
            transcript=self._transcript,
            policy=self._policy,
            on_unknown=self._on_unknown,
            secrets=self._secrets,
        )

    @property
    def hostname(self) -> str | None:
        """The appliance's own name (prompt, machine mode, saveconfig), learned by the last session; None before."""
        return (self._session.hostname if self._session is not None else None) or self._hostname

    async def close(self, *, reuse: bool = True) -> None:
        """Close the session. Its connection stays shared unless `reuse` is False (the appliance reboots, or the
        session broke in a way that may mean a dead link): then no connection of this appliance made so far is
        shared again, this session's or another."""
        if not reuse and self._connections is not None:
            self._connections.retire(self.opts)
        if self._session is not None:
            session, self._session = self._session, None
            self._hostname = session.hostname or self._hostname
            await session.close(reuse=reuse)

    def share(self) -> None:
        """Offer this session's connection (a `fresh` one) to the appliance's other sessions from now on."""
        if self._session is not None and self._connections is not None:
            self._connections.adopt(self.opts, self._session.lease)

    async def __aenter__(self) -> Appliance:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        answers: list[Answer] | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> str:
        session = await self.session()
        try:
            return await session.run(
                command, timeout=timeout or self.timeouts.default, answers=answers or [], on_output=on_output
            )
        except ParseError as exc:
            # Raised while answering a question (e.g. no encrypt option): name this appliance.
            await self.close()
            raise ParseError(exc.message, appliance=self.name) from None
        except BaseException as exc:
            # A half-finished dialogue leaves the CLI in an unknown place: never reuse it. Its connection only
            # when the appliance answered (a failed command, a refused answer), not after a drop or a deadline.
            answered = isinstance(exc, ApplianceError) and not isinstance(exc, ConnectionLost | CommandTimeout)
            await self.close(reuse=answered)
            raise

    @property
    def prompt(self) -> str | None:
        return self._session.prompt if self._session else None

    def _parse(self, parse: Callable[[str], _T], text: str) -> _T:
        """Run a parser; its ParseError names this appliance (`esa03: version output ...`)."""
        try:
            return parse(text)
        except ParseError as exc:
            raise ParseError(exc.message, appliance=self.name) from None

    # --- read-only -------------------------------------------------------------------------------
    async def read(self, command: str, *, answers: Sequence[Answer] = ()) -> str:
        """A read-only command whose dialogue the caller leaves without changes (the probe); normalized output."""
        return await self._run(command, answers=list(answers))

    async def version(self) -> VersionInfo:
        return self._parse(parsers.parse_version, await self._run("version"))

    async def status_detail(self) -> StatusDetail:
        return self._parse(parsers.parse_status_detail, await self._run("status detail"))

    async def workqueue_status(self) -> WorkQueueStatus:
        return self._parse(parsers.parse_workqueue_status, await self._run("workqueue status"))

    # --- listeners -------------------------------------------------------------------------------
    async def suspend_listeners(self, delay: int = 30) -> ListenerChange:
        out = await self._run(
            "suspendlistener",
            answers=[
                Answer(r"listener\(s\) you wish to suspend", _pick_all),
                Answer(r"seconds to wait before abruptly closing", str(delay)),
            ],
            timeout=self.timeouts.default + delay,
        )
        return self._listener_result(out, "suspended")

    async def resume_listeners(self) -> ListenerChange:
        out = await self._run("resumelistener", answers=[Answer(r"listener\(s\) you wish to resume", _pick_all)])
        return self._listener_result(out, "resumed")

    def _listener_result(self, out: str, verb: str) -> ListenerChange:
        try:
            return _listeners_from(out, verb)
        except CommandFailed as exc:
            raise CommandFailed(self.name, exc.message) from None

    # --- update settings -------------------------------------------------------------------------
    async def upgrade_source(self) -> UpgradeSource:
        """Read where AsyncOS upgrades come from (leaves updateconfig without changes)."""
        out = await self._run("updateconfig", answers=[Answer(r"Choose the operation you want to perform", "")])
        return self._parse(parsers.parse_update_settings, out)

    async def set_upgrade_source(self, source: UpgradeSource) -> None:
        """Walk updateconfig SETUP, changing only the AsyncOS upgrade questions; defaults elsewhere."""
        images_own = source.images != "cisco"
        list_own = source.manifest != "cisco"
        images_q, list_q = UPDATECONFIG_IMAGES_Q, UPDATECONFIG_LIST_Q
        answers = [
            Answer(r"Choose the operation you want to perform", "SETUP", times=1),
            Answer(images_q, "2" if images_own else "1"),
            Answer(list_q, "2" if list_own else "1"),
        ]
        if images_own:
            answers.append(Answer(r"hostname and port of the HTTP server", source.images, after=images_q))
        if list_own:
            answers.append(Answer(r"full HTTP URL of the update list", source.manifest, after=list_q))
        # Every other service's question, and the menu when SETUP returns to it: the default, by design.
        answers.append(OTHERWISE_DEFAULT)
        out = await self._run("updateconfig", answers=answers)
        failure = parsers.find_marker(out, (*parsers.COMMAND_ERROR_MARKERS, "You must enter"))
        if failure:
            raise CommandFailed(self.name, f"updateconfig refused the setting: {failure}")

    async def commit(self, comment: str) -> bool:
        """Commit pending changes; False when there was nothing to commit."""
        out = await self._run(
            "commit",
            answers=[
                Answer(r"comments describing your changes", comment),
                Answer(r"save the current configuration for rollback", "Y"),
            ],
        )
        if "no data to commit" in out.lower():
            return False
        if "changes committed" not in out.lower():
            raise CommandFailed(self.name, f"commit did not confirm: {out.strip()[-200:]}")
        return True

    # --- backups ---------------------------------------------------------------------------------
    async def saveconfig(self) -> str:
        """Save the configuration with *encrypted* passphrases (masked files cannot be restored)."""
        out = await self._run(
            "saveconfig",
            answers=[Answer(r"Choose the pass(word|phrase) option", _pick_encrypt)],
            timeout=self.timeouts.backup,
        )
        return self._parse(parsers.parse_saveconfig, out)

    async def slbl_export(self) -> str | None:
        """Export the safelist/blocklist; None when the feature is off."""
        out = await self._run(
            "slblconfig",
            answers=[
                Answer(r"Choose the operation you want to perform", "EXPORT", times=1),
                Answer(r"Choose the operation you want to perform", ""),  # the menu again: leave
            ],
            timeout=self.timeouts.backup,
        )
        return self._parse(parsers.parse_slbl_export, out)

    async def download(self, remote: str, local_dir: Path, kind: str, *, max_bytes: int = BACKUP_MAX_BYTES) -> Backup:
        """Fetch one file over SCP into a private directory: at most `max_bytes`, streamed to disk and
        hashed on the way, mode 0600 from its first byte; any failure leaves no partial file behind."""
        name = backup_file_name(remote)
        if name is None:
            raise CommandFailed(
                self.name, f"refusing to fetch {one_line(remote, 200)!r}: not the name of a file in {BACKUP_REMOTE_DIR}"
            )
        session = await self.session()
        local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(local_dir, 0o700)
        target = local_dir / name
        created = [False]
        try:
            async with asyncio.timeout(self.timeouts.backup):
                digest, size = await _scp_fetch(session.conn, remote, target, max_bytes, created)
        except BaseException as exc:
            if created[0]:
                target.unlink(missing_ok=True)
            if not isinstance(exc, _ScpRefused):
                await self.close(reuse=False)  # a transfer that stalled or broke may be a dead link
            if isinstance(exc, TimeoutError):
                raise CommandFailed(self.name, f"SCP of {remote} timed out") from None
            if isinstance(exc, _ScpRefused):
                raise CommandFailed(self.name, f"SCP of {remote}: {exc}") from None
            if isinstance(exc, (asyncssh.Error, OSError)):
                raise CommandFailed(self.name, f"SCP of {remote} failed: {one_line(str(exc), 200)}") from None
            raise
        if size == 0:
            target.unlink(missing_ok=True)
            raise CommandFailed(self.name, f"backup {remote} is empty")
        return Backup(kind, remote, target, digest)

    # --- upgrade ---------------------------------------------------------------------------------
    async def upgrade(
        self,
        target: Version,
        *,
        allowed: Collection[Version] | None = None,
        current: Version | None = None,
        close_seconds: int = 30,
        on_progress: Callable[[UpgradeProgress], None] | None = None,
        before_confirm: Callable[[Version], None] | None = None,
        staged: Version | None = None,
    ) -> UpgradeResult:
        """Run `upgrade` to `target` (or the planned hop) until the appliance reboots.

        The hard rule: the upgrade is confirmed only to the target or a planned hop (`allowed`; without a
        plan, the newest offer between `current` and the target). If the `Upgrades available.` list cannot
        be read, offers neither, or the confirmation comes without our choice having been made, the step
        fails before "Y" is sent. With `staged`, an image downloaded beforehand is installed (INSTALL)
        when the appliance offers it and it is such a release.
        """
        offers: list[UpgradeOffer] = []
        chosen: list[Version] = []  # set only from a parsed list, or a staged image whose version was read
        confirmed = False
        used_install = [False]
        operation = [False]  # the menu was answered: from now on an answer can start an install

        def permitted(version: Version) -> bool:
            if allowed is not None:
                return version in allowed
            return version == target or (version < target and (current is None or current < version))

        # INSTALL only of an image whose version is known to be the one we mean: read in this session, now.
        staged_ok = False
        if staged is not None and permitted(staged):
            status = await self.download_status()
            staged_ok = status.state == "downloaded" and status.version == staged

        def choose_operation(question: str) -> str:
            operation[0] = True
            if staged_ok and staged is not None and re.search(r"^- INSTALL\b", question, re.MULTILINE):
                m = _IMAGE_IN_MENU_RE.search(question)
                menu_version = Version.from_build(m.group(1), m.group(2)) if m else None
                if menu_version in (None, staged):
                    used_install[0] = True
                    chosen.append(staged)
                    return "INSTALL"
            return "DOWNLOADINSTALL"

        phase = ["analysis"]

        def pick(question: str) -> str:
            if chosen:
                # Asked again after our choice: whatever it offers now, we never answer a second time.
                raise UpgradeFailed(self.name, "the 'Upgrades available.' list was asked again: not answering")
            listed = parsers.parse_upgrades_available(question)
            if not listed:
                tail = one_line(" / ".join(question.strip().splitlines()[-3:]), 200)
                raise UpgradeFailed(self.name, f"the 'Upgrades available.' list could not be read: {tail}")
            problem = _ambiguous_offers(question, listed)
            if problem is not None:
                raise UpgradeFailed(self.name, f"the 'Upgrades available.' list is ambiguous ({problem}): not choosing")
            offers[:] = listed
            choice = choose_offer(listed, target, allowed=allowed, current=current)
            if choice is None:
                raise UpgradeFailed(self.name, f"target {target} not offered (offered: {_offered(listed)})")
            chosen.append(choice.version)
            return str(choice.number)

        def confirm(question: str) -> str:
            # Any "proceed"-like question answered Y: only for a release chosen from a parsed list (or a staged
            # image whose version was read) that is permitted now, and never when it names another release.
            nonlocal confirmed
            if not chosen:
                # The appliance skipped the list (or we could not recognise it) and took its own default.
                raise UpgradeFailed(
                    self.name, "asked to confirm an upgrade before any release was chosen: not confirming"
                )
            if not permitted(chosen[-1]):
                raise UpgradeFailed(self.name, f"refusing to confirm an upgrade to {chosen[-1]} (target {target})")
            named = parsers.versions_named(question)
            others = sorted({str(v) for v in named if v != chosen[-1]})
            if others:
                raise UpgradeFailed(
                    self.name, f"the confirmation names {', '.join(others)}, not only {chosen[-1]}: not confirming"
                )
            if before_confirm is not None and not confirmed:
                before_confirm(chosen[-1])
            confirmed = True
            return "Y"

        def must_stop(question: str) -> bool:
            # In `upgrade`, once the operation is chosen, a question no rule knows is not answered with its
            # default unless that default declines (`[N]`) and the question names no other release and holds no
            # numbered choice: any other default there can install another release (or re-select from a list).
            # An unknown question naming another release stops at any point. Whatever the on_unknown policy.
            others = [v for v in parsers.versions_named(question) if not chosen or v != chosen[-1]]
            if others:
                return True
            if not (operation[0] or chosen):
                return False
            lines = question.rstrip().splitlines()
            declines = bool(lines) and lines[-1].rstrip().lower().endswith(("[n]>", "[no]>"))
            return not declines or _LIST_ITEM_NUMBER_RE.search(question) is not None

        def unknown(question: str) -> str:
            lines = [ln.strip() for ln in question.strip().splitlines() if ln.strip()]
            last = lines[-1] if lines else ""
            if self._session is not None:
                last = self._session.redact(last)
            raise UpgradeFailed(
                self.name, f"unexpected question during the upgrade, not answered: {one_line(last, 300)!r}"
            )

        def output(chunk: str) -> None:
            for line in chunk.splitlines():
                progress = parsers.parse_progress_line(line)
                if progress is None:
                    continue
                if progress.phase:
                    phase[0] = progress.phase
                else:
                    progress = UpgradeProgress(phase[0], progress.percent, progress.line)
                if on_progress is not None:
                    on_progress(progress)

        def before_operation(question: str) -> bool:
            return not operation[0] and not chosen

        answers = [
            # The preamble comes once, before the menu: the same words later are a confirmation (checked).
            Answer(r"Are you sure you want to proceed with upgrade", "Y", times=1, when=before_operation),
            Answer(r"cancel the download and select a different upgrade image", "N", when=lambda q: not chosen),
            Answer(r"Choose the operation you want to perform", choose_operation, times=1),
            Answer(r"Upgrades available", pick),
            Answer(r"save the current configuration to the configuration directory", "Y"),
            Answer(r"email the current configuration", "N"),
            Answer(r"Choose the pass(word|phrase) option", _pick_encrypt),
            Answer(r"seconds to wait before forcibly closing", str(close_seconds), when=lambda q: confirmed),
            # `From AsyncOS 13.0 onwards, ... Do you want to proceed`, the final confirmation, and any rewording.
            Answer(r"\bproceed\b|\bcontinue\b", confirm, defaults_only=True),
            Answer("", unknown, when=must_stop),
        ]
        try:
            try:
                out = await self._run("upgrade", answers=answers, timeout=self.timeouts.upgrade, on_output=output)
            finally:
                if confirmed:
                    # "Y" was sent: whatever happens next, it reboots. Nothing may use a connection from before.
                    await self.close(reuse=False)
        except ConnectionLost as exc:
            if confirmed:
                # The session drops when the appliance reboots (or mid-install): it carries on.
                return UpgradeResult(chosen[-1], offers, True, used_install[0])
            if operation[0]:
                # Not retried blindly: after the menu was answered the appliance may have started something.
                raise UpgradeFailed(
                    self.name,
                    f"{exc.message} after the upgrade operation was chosen, before our confirmation: "
                    "check the appliance's version before trying again",
                ) from None
            raise
        failure = parsers.find_marker(out, parsers.UPGRADE_FAILURE_MARKERS)
        if failure:
            raise UpgradeFailed(self.name, failure)
        if not confirmed:
            raise UpgradeFailed(self.name, f"upgrade ended before confirmation: {out.strip()[-200:]}")
        # Some releases return to the prompt and reboot a moment later.
        return UpgradeResult(chosen[-1], offers, True, used_install[0])

    async def download_image(
        self, target: Version, *, allowed: Collection[Version] | None = None, current: Version | None = None
    ) -> Version:
        """`upgrade > DOWNLOAD`: stage the image of `target` (or the planned hop) in the background."""
        chosen: list[Version] = []

        def pick(question: str) -> str:
            listed = parsers.parse_upgrades_available(question)
            if not listed:
                raise UpgradeFailed(self.name, "the 'Upgrades available.' list could not be read")
            problem = _ambiguous_offers(question, listed)
            if problem is not None:
                raise UpgradeFailed(self.name, f"the 'Upgrades available.' list is ambiguous ({problem}): not choosing")
            choice = choose_offer(listed, target, allowed=allowed, current=current)
            if choice is None:
                offered = _offered(listed)
                raise UpgradeFailed(self.name, f"target {target} not offered for download (offered: {offered})")
            chosen.append(choice.version)
            return str(choice.number)

        out = await self._run(
            "upgrade",
            answers=[
                *_upgrade_preamble(keep_download=False),
                Answer(r"Choose the operation you want to perform", "DOWNLOAD", times=1),
                Answer(r"Upgrades available", pick),
            ],
            timeout=self.timeouts.analysis,
        )
        failure = parsers.find_marker(out, parsers.UPGRADE_FAILURE_MARKERS)
        if failure:
            raise UpgradeFailed(self.name, failure)
        if not chosen or "download" not in out.lower():
            raise UpgradeFailed(self.name, f"DOWNLOAD did not start: {out.strip()[-200:]}")
        return chosen[-1]

    async def download_status(self) -> parsers.DownloadStatus:
        """`upgrade > DOWNLOADSTATUS` (keeping any download in progress); nothing is changed.

        No DOWNLOADSTATUS in the menu means no image: "none". A status asked for but unreadable is a
        ParseError, never "none" (that would let a DOWNLOAD cancel an image we could not read)."""
        asked = [False]

        def status_or_leave(question: str) -> str:
            choice = _status_or_leave(question)
            asked[0] = bool(choice)
            return choice

        out = await self._run(
            "upgrade",
            answers=[
                *_upgrade_preamble(keep_download=True),
                Answer(r"Choose the operation you want to perform", status_or_leave, times=1),
            ],
            timeout=self.timeouts.analysis,
        )
        try:
            return parsers.parse_download_status(out)
        except ParseError as exc:
            if asked[0]:
                raise ParseError(exc.message, appliance=self.name) from None
            return parsers.DownloadStatus("none")

    async def available_upgrades(self) -> list[UpgradeOffer]:
        """The `Upgrades available.` list, declining at the final confirmation (nothing changes)."""
        offers: list[UpgradeOffer] = []

        def collect(question: str) -> str:
            offers.extend(parsers.parse_upgrades_available(question))
            return ""

        await self._run(
            "upgrade",
            answers=[
                *_upgrade_preamble(keep_download=True),
                Answer(r"Choose the operation you want to perform", "DOWNLOADINSTALL", times=1),
                Answer(r"Upgrades available", collect),
                Answer(r"save the current configuration to the configuration directory", "N"),
                Answer(r"email the current configuration", "N"),
                Answer(r"Choose the pass(word|phrase) option", _pick_encrypt),
                Answer(r"proceed with the upgrade", "N"),
            ],
            timeout=self.timeouts.analysis,
        )
        # "No available upgrades" and the like leave the list empty: that is the answer.
        return offers

    async def reboot(self, close_seconds: int = 30) -> None:
        try:
            await self._run(
                "reboot",
                answers=[
                    Answer(r"Are you sure", "Y"),
                    Answer(r"seconds to wait before forcibly closing", str(close_seconds)),
                ],
            )
        except ConnectionLost:
            return
        await self.close(reuse=False)  # it reboots a moment later

    # --- clusters --------------------------------------------------------------------------------
    async def cluster_disconnect(self, hostname: str) -> None:
        """Disconnect the machine whose own hostname (learned from the appliance) is `hostname`."""
        await self._cluster_op("DISCONNECT", hostname, r"is now disconnected")

    async def cluster_reconnect(self, hostname: str) -> None:
        """Reconnect the machine whose own hostname (learned from the appliance) is `hostname`."""
        await self._cluster_op("RECONNECT", hostname, r"reconnected|is now connected")

    async def _cluster_op(self, op: str, hostname: str, success: str) -> None:
        def choose(question: str) -> str:
            # Exactly the learned hostname: an inventory label or a first DNS label could pick another box.
            machines = parsers.parse_machine_choices(question)
            for m in machines:
                if parsers.same_host(m.name, hostname):
                    return str(m.number)
            offered = ", ".join(m.name for m in machines) or "nothing"
            raise CommandFailed(self.name, f"clusterconfig {op}: {hostname} not offered (offered: {offered})")

        out = await self._run(
            "clusterconfig",
            answers=[
                Answer(r"Choose the operation you want to perform", op, times=1),
                Answer(r"Choose the machine\(s\)", choose),
                Answer(r"Are you sure", "Y"),
                Answer(r"Choose the operation you want to perform", ""),  # the menu again: leave
            ],
        )
        if not re.search(success, out, re.IGNORECASE):
            low = out.lower()
            if "different" in low and "version" in low:
                raise CommandFailed(self.name, f"clusterconfig {op} refused: versions differ")
            raise CommandFailed(self.name, f"clusterconfig {op} failed: {out.strip()[-200:]}")


_IMAGE_IN_MENU_RE = re.compile(
    r"^- INSTALL\b[^\n]{0,300}?AsyncOS (\d{1,3}\.\d{1,3}\.\d{1,3}) build (\d{1,6})", re.MULTILINE
)


def _upgrade_preamble(keep_download: bool) -> list[Answer]:
    """The questions every `upgrade` starts with: proceed after the analysis, and what to do with a
    download already in progress (keep it, unless we are about to download another image)."""
    return [
        Answer(r"Are you sure you want to proceed with upgrade", "Y"),
        Answer(r"cancel the download and select a different upgrade image", "N" if keep_download else "Y"),
    ]


def _status_or_leave(question: str) -> str:
    # Without a download there is no DOWNLOADSTATUS in the menu: leave (empty answer).
    return "DOWNLOADSTATUS" if re.search(r"^- DOWNLOADSTATUS\b", question, re.MULTILINE) else ""


def _pick_encrypt(question: str) -> str:
    m = re.search(r"^\s*(\d+)\.\s+Encrypt pass", question, re.MULTILINE | re.IGNORECASE)
    if not m:
        raise ParseError("no 'Encrypt passphrases' option offered: refusing to save a masked configuration")
    return m.group(1)
