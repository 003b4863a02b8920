"""The state of simulated appliances and clusters: versions, listeners, mail, settings, faults."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

# The simulator keeps its own notion of versions; it must not borrow the driver's.
SimVersion = tuple[int, int, int, int]

FAULTS = (
    "reboot-hang",
    "drain-stuck",
    "upgrade-fail",
    "drop-during-upgrade",
    "wrong-version",
    "auth-fail",
    "hostkey-change",
    "no-manifest",
    "flaky",
)


def vparse(text: str) -> SimVersion:
    head, _, build = text.partition("-")
    a, b, c = head.split(".")
    return (int(a), int(b), int(c), int(build))


def vdotted(v: SimVersion) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}-{v[3]:03d}"


def vtag(v: SimVersion) -> str:
    return f"phoebe-{v[0]}-{v[1]}-{v[2]}-{v[3]:03d}"


@dataclass(frozen=True)
class Release:
    version: SimVersion
    date: str
    offers: tuple[SimVersion, ...]  # what the manifest for this base version lists


# A little release history: 14.2.1 must hop through 15.0.0 to reach 16.0.0.
RELEASES: dict[SimVersion, Release] = {
    r.version: r
    for r in (
        Release((14, 2, 1, 15), "2022-11-07", ((15, 0, 0, 104),)),
        Release((15, 0, 0, 104), "2023-06-12", ((15, 5, 1, 55), (16, 0, 0, 123))),
        Release((15, 5, 1, 55), "2024-03-01", ((16, 0, 0, 123),)),
        Release((16, 0, 0, 123), "2025-02-10", ()),
    )
}
NEWEST: SimVersion = max(RELEASES)


@dataclass
class Durations:
    """Appliance-time durations in seconds; multiplied by the time scale when slept."""

    analysis: tuple[float, float] = (60, 180)
    download: tuple[float, float] = (120, 240)
    install: tuple[float, float] = (180, 300)
    reboot: tuple[float, float] = (480, 1200)
    drain_rate: float = 15.0  # messages per second leaving the work queue once receiving stops

    def fixed(self) -> Durations:
        """Every appliance takes the same time (midpoints): for benchmarks that compare fleet sizes."""

        def mid(b: tuple[float, float]) -> tuple[float, float]:
            m = (b[0] + b[1]) / 2
            return (m, m)

        return Durations(mid(self.analysis), mid(self.download), mid(self.install), mid(self.reboot), self.drain_rate)


@dataclass
class Cluster:
    name: str
    members: list[SimAppliance] = field(default_factory=list)

    def connected(self) -> list[SimAppliance]:
        return [m for m in self.members if m.cluster_connected]


@dataclass
class UpdateSettings:
    images: str = "cisco"  # or "host:port"
    listing: str = "cisco"  # or a manifest URL
    feature_keys: str = "cisco"  # another service, so that SETUP has more than one own-server question


@dataclass
class SimAppliance:
    name: str
    hostname: str
    model: str
    serial: str
    vln: str | None
    version: SimVersion
    listeners: list[str]
    faults: set[str]
    rng: random.Random
    config_dir: Path
    slbl_enabled: bool = True
    cluster: Cluster | None = None
    cluster_connected: bool = True
    suspended: bool = False
    depth: float = 0.0
    base_depth: float = 400.0
    committed: UpdateSettings = field(default_factory=UpdateSettings)
    pending: UpdateSettings | None = None
    state: str = "up"  # up, upgrading, rebooting, down
    upgrade_busy: bool = False
    reboots: int = 0
    connections_refused: int = 0
    upgrades_done: list[SimVersion] = field(default_factory=list)
    command_counts: dict[str, int] = field(default_factory=dict)
    staged: SimVersion | None = None  # an image downloaded with upgrade > DOWNLOAD
    downloading: SimVersion | None = None
    download_percent: float = 0.0
    image_downloads: int = 0  # images fetched from the update server, ever
    _mail_clock: float = field(default_factory=time.monotonic)

    def fault(self, name: str) -> bool:
        return name in self.faults

    def drop_now(self, command: str) -> bool:
        """`drop@cmd` or `drop@cmd#n` faults: the nth time `cmd` is typed, the SSH session drops."""
        self.command_counts[command] = self.command_counts.get(command, 0) + 1
        for fault in self.faults:
            if not fault.startswith("drop@"):
                continue
            cmd, _, nth = fault[5:].partition("#")
            if cmd == command and self.command_counts[command] == int(nth or 1):
                return True
        return False

    def tick_mail(self, time_scale: float, drain_rate: float) -> int:
        """Advance the work queue to now; mail arrives only while receiving."""
        now = time.monotonic()
        dt = (now - self._mail_clock) / max(time_scale, 1e-9)
        self._mail_clock = now
        if self.state != "up":
            return int(self.depth)
        if not self.suspended:
            # Arrivals and deliveries roughly balance around a per-appliance level.
            pull = (self.base_depth - self.depth) * min(1.0, dt / 30)
            self.depth = max(0.0, self.depth + pull + self.rng.uniform(-25, 25) * min(1.0, dt))
        elif self.fault("drain-stuck"):
            self.depth = max(self.depth, 37.0)
        else:
            self.depth = max(0.0, self.depth - drain_rate * dt)
        return int(self.depth)

    @property
    def password_word(self) -> str:
        # 15.0 and later say "passphrase", older releases "password".
        return "passphrase" if self.version >= (15, 0, 0, 0) else "password"
