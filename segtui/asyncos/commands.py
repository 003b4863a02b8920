"""Typed AsyncOS commands over a CLISession: each returns a typed result or raises a typed error."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from segtui.asyncos import parsers
from segtui.asyncos.errors import (
    CommandFailed,
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
    Answer,
    CLISession,
    ConnectOptions,
    DialoguePolicy,
    TranscriptSink,
    UnknownQuestionSink,
)
from segtui.asyncos.versions import Version, next_hop


@dataclass(frozen=True)
class CommandTimeouts:
    """Deadlines per kind of command, in seconds (from settings)."""

    default: float = 60.0
    analysis: float = 330.0  # `upgrade` may analyse the system for up to 300 s
    upgrade: float = 3600.0
    backup: float = 180.0


@dataclass(frozen=True)
class ListenerChange:
    listeners: list[str]
    none_configured: bool = False


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


def choose_offer(offers: list[UpgradeOffer], target: Version, allow_hop: bool = True) -> UpgradeOffer | None:
    """The target if offered; else the newest offer below it (an intermediate hop), if hops are allowed."""
    version = next_hop((o.version for o in offers), target)
    if version is None or (version != target and not allow_hop):
        return None
    return next(o for o in offers if o.version == version)


def _pick_all(question: str) -> str:
    m = re.search(r"^\s*(\d+)\.\s+All\s*$", question, re.MULTILINE | re.IGNORECASE)
    return m.group(1) if m else ""


def _listeners_from(output: str, verb: str) -> ListenerChange:
    if "no listeners configured" in output.lower():
        return ListenerChange([], none_configured=True)
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
    ) -> None:
        self.opts = opts
        self._policy, self._on_unknown, self._secrets = policy, on_unknown, tuple(secrets)
        self._hostname: str | None = None
        self._handshakes = handshakes
        self.name = opts.name
        self.timeouts = timeouts or CommandTimeouts()
        self._transcript = transcript
        self._session: CLISession | None = None

    async def session(self) -> CLISession:
        if self._session is None:
            if self._handshakes is not None:
                # Bound concurrent handshakes: hundreds at once starve the event loop and the peer.
                async with self._handshakes:
                    self._session = await self._open()
            else:
                self._session = await self._open()
        return self._session

    async def _open(self) -> CLISession:
        return await CLISession.open(
            self.opts,
            transcript=self._transcript,
            policy=self._policy,
            on_unknown=self._on_unknown,
            secrets=self._secrets,
        )

    @property
    def hostname(self) -> str | None:
        """The appliance's own name (prompt, machine mode, saveconfig), learned by the last session; None before."""
        return (self._session.hostname if self._session is not None else None) or self._hostname

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            self._hostname = session.hostname or self._hostname
            await session.close()

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
        except ConnectionLost:
            await self.close()
            raise
        except BaseException:
            # A half-finished dialogue leaves the CLI in an unknown place: never reuse it.
            await self.close()
            raise

    @property
    def prompt(self) -> str | None:
        return self._session.prompt if self._session else None

    # --- read-only -------------------------------------------------------------------------------
    async def version(self) -> VersionInfo:
        return parsers.parse_version(await self._run("version"))

    async def status_detail(self) -> StatusDetail:
        return parsers.parse_status_detail(await self._run("status detail"))

    async def workqueue_status(self) -> WorkQueueStatus:
        return parsers.parse_workqueue_status(await self._run("workqueue status"))

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
        return parsers.parse_update_settings(out)

    async def set_upgrade_source(self, source: UpgradeSource) -> None:
        """Walk updateconfig SETUP, changing only the AsyncOS upgrade questions; defaults elsewhere."""
        images_own = source.images != "cisco"
        list_own = source.manifest != "cisco"
        images_q = r"AsyncOS upgrades.*download updates from \(images\)"
        list_q = r"AsyncOS upgrades.*list of available updates"
        answers = [
            Answer(r"Choose the operation you want to perform", "SETUP", times=1),
            Answer(images_q, "2" if images_own else "1"),
            Answer(list_q, "2" if list_own else "1"),
        ]
        if images_own:
            answers.append(Answer(r"hostname and port of the HTTP server", source.images, after=images_q))
        if list_own:
            answers.append(Answer(r"full HTTP URL of the update list", source.manifest, after=list_q))
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
        return parsers.parse_saveconfig(out)

    async def slbl_export(self) -> str | None:
        """Export the safelist/blocklist; None when the feature is off."""
        out = await self._run(
            "slblconfig",
            answers=[Answer(r"Choose the operation you want to perform", "EXPORT", times=1)],
            timeout=self.timeouts.backup,
        )
        return parsers.parse_slbl_export(out)

    async def download(self, remote: str, local_dir: Path, kind: str) -> Backup:
        """Fetch a file over SCP into a private directory; the file ends up mode 0600."""
        session = await self.session()
        local_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(local_dir, 0o700)
        target = local_dir / Path(remote).name
        try:
            async with asyncio.timeout(self.timeouts.backup):
                await asyncssh.scp((session.conn, remote), str(target))
        except TimeoutError:
            raise CommandFailed(self.name, f"SCP of {remote} timed out") from None
        except (asyncssh.Error, OSError) as exc:
            raise CommandFailed(self.name, f"SCP of {remote} failed: {exc}") from None
        os.chmod(target, 0o600)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if target.stat().st_size == 0:
            raise CommandFailed(self.name, f"backup {remote} is empty")
        return Backup(kind, remote, target, digest)

    # --- upgrade ---------------------------------------------------------------------------------
    async def upgrade(
        self,
        target: Version,
        *,
        operation: str = "DOWNLOADINSTALL",
        close_seconds: int = 30,
        on_progress: Callable[[UpgradeProgress], None] | None = None,
        before_confirm: Callable[[Version], None] | None = None,
        allow_hop: bool = True,
        staged: Version | None = None,
    ) -> UpgradeResult:
        """Run `upgrade` to `target` (or the best intermediate hop) until the appliance reboots.

        With `staged`, an image downloaded beforehand is installed (INSTALL) when the appliance offers it.
        """
        offers: list[UpgradeOffer] = []
        chosen: list[Version] = []
        confirmed = False
        used_install = [False]

        def choose_operation(question: str) -> str:
            if staged is not None and re.search(r"^- INSTALL\b", question, re.MULTILINE):
                m = _IMAGE_IN_MENU_RE.search(question)
                menu_version = Version.from_build(m.group(1), m.group(2)) if m else None
                if menu_version in (None, staged):
                    used_install[0] = True
                    chosen.append(staged)
                    return "INSTALL"
            return operation

        phase = ["analysis"]

        def pick(question: str) -> str:
            offers.extend(parsers.parse_upgrades_available(question))
            choice = choose_offer(offers, target, allow_hop)
            if choice is None:
                listed = ", ".join(str(o.version) for o in offers) or "nothing"
                raise UpgradeFailed(self.name, f"target {target} not offered (offered: {listed})")
            chosen.append(choice.version)
            return str(choice.number)

        def confirm(_question: str) -> str:
            nonlocal confirmed
            if before_confirm is not None:
                before_confirm(chosen[-1] if chosen else target)
            confirmed = True
            return "Y"

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

        answers = [
            *_upgrade_preamble(keep_download=True),
            Answer(r"Choose the operation you want to perform", choose_operation, times=1),
            Answer(r"Upgrades available", pick),
            Answer(r"save the current configuration to the configuration directory", "Y"),
            Answer(r"email the current configuration", "N"),
            Answer(r"Choose the pass(word|phrase) option", _pick_encrypt),
            Answer(r"From AsyncOS 13\.0 onwards.*proceed", "Y"),
            Answer(r"Do you wish to proceed with the upgrade", confirm),
            Answer(r"seconds to wait before forcibly closing", str(close_seconds)),
        ]
        try:
            out = await self._run("upgrade", answers=answers, timeout=self.timeouts.upgrade, on_output=output)
        except ConnectionLost:
            if confirmed:
                # The session drops when the appliance reboots (or mid-install): it carries on.
                return UpgradeResult(chosen[-1] if chosen else target, offers, True, used_install[0])
            raise
        failure = parsers.find_marker(out, parsers.UPGRADE_FAILURE_MARKERS)
        if failure:
            raise UpgradeFailed(self.name, failure)
        if not confirmed:
            raise UpgradeFailed(self.name, f"upgrade ended before confirmation: {out.strip()[-200:]}")
        # Some releases return to the prompt and reboot a moment later.
        return UpgradeResult(chosen[-1] if chosen else target, offers, True, used_install[0])

    async def download_image(self, target: Version, *, allow_hop: bool = True) -> Version:
        """`upgrade > DOWNLOAD`: stage the image of `target` (or the best hop) in the background."""
        chosen: list[Version] = []

        def pick(question: str) -> str:
            choice = choose_offer(parsers.parse_upgrades_available(question), target, allow_hop)
            if choice is None:
                raise UpgradeFailed(self.name, f"target {target} not offered for download")
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
        """`upgrade > DOWNLOADSTATUS` (keeping any download in progress); nothing is changed."""
        out = await self._run(
            "upgrade",
            answers=[
                *_upgrade_preamble(keep_download=True),
                Answer(r"Choose the operation you want to perform", _status_or_leave, times=1),
            ],
            timeout=self.timeouts.analysis,
        )
        try:
            return parsers.parse_download_status(out)
        except ParseError:
            return parsers.DownloadStatus("none")

    async def available_upgrades(self) -> list[UpgradeOffer]:
        """The `Upgrades available.` list, declining at the final confirmation (nothing changes)."""
        offers: list[UpgradeOffer] = []

        def collect(question: str) -> str:
            offers.extend(parsers.parse_upgrades_available(question))
            return ""

        out = await self._run(
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
        failure = parsers.find_marker(out, parsers.UPGRADE_FAILURE_MARKERS[:5])
        if failure and not offers:
            return []
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

    # --- clusters --------------------------------------------------------------------------------
    async def cluster_disconnect(self, machine: str) -> None:
        await self._cluster_op("DISCONNECT", machine, r"is now disconnected")

    async def cluster_reconnect(self, machine: str) -> None:
        await self._cluster_op("RECONNECT", machine, r"reconnected|is now connected")

    async def _cluster_op(self, op: str, machine: str, success: str) -> None:
        def choose(question: str) -> str:
            for m in parsers.parse_machine_choices(question):
                if m.name == machine or m.name.split(".")[0] == machine.split(".")[0]:
                    return str(m.number)
            raise CommandFailed(self.name, f"clusterconfig {op}: {machine} not offered")

        out = await self._run(
            "clusterconfig",
            answers=[
                Answer(r"Choose the operation you want to perform", op, times=1),
                Answer(r"Choose the machine\(s\)", choose),
                Answer(r"Are you sure", "Y"),
            ],
        )
        if not re.search(success, out, re.IGNORECASE):
            low = out.lower()
            if "different" in low and "version" in low:
                raise CommandFailed(self.name, f"clusterconfig {op} refused: versions differ")
            raise CommandFailed(self.name, f"clusterconfig {op} failed: {out.strip()[-200:]}")


_IMAGE_IN_MENU_RE = re.compile(r"^- INSTALL\b.*?AsyncOS (\d+\.\d+\.\d+) build (\d+)", re.MULTILINE)


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
