"""What every appliance procedure shares: inventory, settings, journal, event sink, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from segtui.asyncos.commands import Appliance, CommandTimeouts
from segtui.asyncos.connections import SharedConnections
from segtui.asyncos.parsers import UpgradeSource
from segtui.asyncos.session import ConnectOptions, Credentials, DialoguePolicy, Exchange, UnknownQuestionSink
from segtui.asyncos.versions import Version, VersionError
from segtui.inventory import ApplianceSpec, Inventory
from segtui.rollout.events import CommandExchanged, RolloutEvent
from segtui.rollout.journal import Journal
from segtui.rollout.peers import PeerReader
from segtui.rollout.turns import Turns
from segtui.settings import Settings
from segtui.textsafe import Redactor, clean
from segtui.updates.manifest import manifest_url


def _no_peers(_name: str) -> list[ApplianceSpec]:
    return []


def server_hostport(update_server: str) -> str:
    """`http://updates.example.com` -> `updates.example.com:80`, as updateconfig wants it."""
    parts = urlsplit(update_server)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


@dataclass
class RolloutContext:
    inventory: Inventory
    settings: Settings
    target: Version
    journal: Journal
    emit: Callable[[RolloutEvent], None]
    handshakes: asyncio.Semaphore = field(init=False)  # from settings.ssh.max_handshakes
    turns: Turns = field(init=False)  # the short steps' turns, from settings.ssh.max_dialogues
    # One SSH connection per appliance, shared by its sessions (pre-flight, procedure, peer readings, verification).
    connections: SharedConnections = field(default_factory=SharedConnections)
    staged: dict[str, Version] = field(default_factory=dict)  # images `segtui stage` left on appliances
    # Set by the engine: the peers of an appliance's capacity group that are in service right now.
    in_service_peers: Callable[[str], list[ApplianceSpec]] = _no_peers
    # The in-service peers' readings, shared by every capacity guard and the peer watch (a kept shell per peer).
    peers: PeerReader = field(init=False)
    # From the pre-flight, where known: the versions each appliance passes through, in order, ending at the target.
    expected_paths: dict[str, list[Version]] = field(default_factory=dict)
    # Every appliance password and the update server's URL credentials: nothing recorded may hold them.
    redactor: Redactor = field(init=False)

    def __post_init__(self) -> None:
        self.redactor = Redactor([a.password for a in self.inventory.appliances])
        self.redactor.add(urlsplit(self.inventory.update_server).password)
        self.handshakes = asyncio.Semaphore(self.settings.ssh.max_handshakes)
        self.turns = Turns(self.settings.ssh.max_dialogues)
        self.peers = PeerReader(self)
        for name, (state, version, _note) in self.journal.staged(str(self.inventory.path)).items():
            if state == "staged" and version:
                self.staged[name] = Version.parse(version)

    def upgrades_left(self, name: str, current: str | None = None) -> int:
        """Upgrades still ahead of an appliance by the pre-flight's plan (the whole path before it is read; 1 when
        the plan does not say): the rollout's critical path is the appliance with the most."""
        path = self.expected_paths.get(name)
        if not path:
            return 1
        try:
            now = Version.parse(current) if current is not None else None
        except VersionError:
            now = None  # not ours to guess: the whole path
        return len(path) if now is None else sum(1 for v in path if v > now)

    @property
    def backup_dir(self) -> Path:
        return self.settings.state_dir / "backups"

    def local_upgrade_source(self, current: Version) -> UpgradeSource:
        """Images from our update server; the list from the manifest named after the current version."""
        return UpgradeSource(
            images=server_hostport(self.inventory.update_server),
            manifest=manifest_url(self.inventory.update_server, current),
        )

    def connect_options(self, spec: ApplianceSpec) -> ConnectOptions:
        ssh = self.settings.ssh
        return ConnectOptions(
            name=spec.name,
            host=spec.host,
            port=spec.port,
            credentials=Credentials(spec.username, spec.password, spec.key_file),
            known_hosts=spec.known_hosts,  # a path: read anew at every connection attempt
            connect_timeout=ssh.connect_timeout,
            login_timeout=ssh.login_timeout,
            keepalive_interval=ssh.keepalive_interval,
            keepalive_count_max=ssh.keepalive_count_max,
        )

    def clean(self, text: str) -> str:
        """What the journal, the report and the screen may hold: sanitised, every known secret masked."""
        return clean(text, self.redactor)

    def appliance(
        self,
        spec: ApplianceSpec,
        *,
        journal_commands: bool = True,
        on_unknown: UnknownQuestionSink | None = None,
        fresh: bool = False,
    ) -> Appliance:
        """Typed commands on one appliance, over its shared connection (`fresh`: over a new one)."""
        d = self.settings.deadlines

        def record(ex: Exchange) -> None:
            # The session redacts its own password; the rollout's redactor masks every other secret too.
            output = self.clean(ex.output)
            command = self.clean(ex.command)
            if journal_commands:
                self.journal.command(spec.name, command, output, ex.started)
            self.emit(CommandExchanged(appliance=spec.name, command=command, output=output))

        return Appliance(
            self.connect_options(spec),
            timeouts=CommandTimeouts(
                default=self.settings.ssh.command_timeout,
                analysis=d.upgrade,
                upgrade=d.upgrade,
                backup=d.backup,
            ),
            transcript=record,
            handshakes=self.handshakes,
            policy=DialoguePolicy(
                on_unknown=self.settings.dialogue.on_unknown_question,
                max_output_bytes=self.settings.dialogue.max_output_bytes,
            ),
            on_unknown=on_unknown,
            connections=self.connections,
            fresh=fresh,
        )
