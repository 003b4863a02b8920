"""What every appliance procedure shares: inventory, settings, journal, event sink, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncssh

from segtui.asyncos.commands import Appliance, CommandTimeouts
from segtui.asyncos.parsers import UpgradeSource
from segtui.asyncos.session import ConnectOptions, Credentials, Exchange
from segtui.asyncos.versions import Version
from segtui.inventory import ApplianceSpec, Inventory
from segtui.rollout.events import CommandExchanged, RolloutEvent
from segtui.rollout.journal import Journal
from segtui.settings import Settings


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
    known_hosts: dict[Path, asyncssh.SSHKnownHosts] = field(default_factory=dict)
    handshakes: asyncio.Semaphore = field(init=False)  # from settings.ssh.max_handshakes
    staged: dict[str, Version] = field(default_factory=dict)  # images `segtui stage` left on appliances

    def __post_init__(self) -> None:
        if not self.known_hosts:
            self.known_hosts = self.inventory.load_known_hosts()
        self.handshakes = asyncio.Semaphore(self.settings.ssh.max_handshakes)
        for name, (state, version, _note) in self.journal.staged(str(self.inventory.path)).items():
            if state == "staged" and version:
                self.staged[name] = Version.parse(version)

    @property
    def backup_dir(self) -> Path:
        return self.settings.state_dir / "backups"

    def local_upgrade_source(self, current: Version) -> UpgradeSource:
        """Images from our update server; the list from the manifest named after the current version."""
        return UpgradeSource(
            images=server_hostport(self.inventory.update_server),
            manifest=self.inventory.manifest_url(current.tag()),
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

    def appliance(self, spec: ApplianceSpec, *, journal_commands: bool = True) -> Appliance:
        d = self.settings.deadlines

        def record(ex: Exchange) -> None:
            # Output is already redacted by the session; the journal never sees a secret.
            if journal_commands:
                self.journal.command(spec.name, ex.command, ex.output, ex.started)
            self.emit(CommandExchanged(appliance=spec.name, command=ex.command, output=ex.output))

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
        )
