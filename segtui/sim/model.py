"""The state of simulated appliances and clusters: versions, listeners, mail, settings, faults."""

from __future__ import annotations

import math
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
    "bake-fail",  # back on the new version, accepts mail, delivers none
    "peer-overload",  # its work queue stays above 12,000 whatever happens
    "queue-surge",  # starts with a work queue of 15,000 that then drains at its own delivery rate
    "listeners-suspended",  # its listeners were suspended by hand before the rollout
    "garbled-version",  # `version` answers with a reply nobody can parse
)

OVERLOAD_DEPTH = 12_000.0
SURGE_DEPTH = 15_000.0


def vdotted(v: SimVersion) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}-{v[3]:03d}"


def vtag(v: SimVersion) -> str:
    return f"phoebe-{v[0]}-{v[1]}-{v[2]}-{v[3]:03d}"


@dataclass(frozen=True)
class Release:
    version: SimVersion
    date: str
    offers: tuple[SimVersion, ...]  # what the manifest for this base version lists


# A little release history: 14.2.1 must hop through 15.0.0 to reach 16.0.0; 15.0.0 is offered a list of four,
# so that a pager can stop inside it.
RELEASES: dict[SimVersion, Release] = {
    r.version: r
    for r in (
        Release((14, 2, 1, 15), "2022-11-07", ((15, 0, 0, 104),)),
        Release((15, 0, 0, 104), "2023-06-12", ((15, 0, 3, 11), (15, 5, 0, 48), (15, 5, 1, 55), (16, 0, 0, 123))),
        Release((15, 0, 3, 11), "2023-10-02", ((15, 5, 1, 55), (16, 0, 0, 123))),
        Release((15, 5, 0, 48), "2023-12-04", ((15, 5, 1, 55), (16, 0, 0, 123))),
        Release((15, 5, 1, 55), "2024-03-01", ((16, 0, 0, 123),)),
        Release((16, 0, 0, 123), "2025-02-10", ()),
    )
}
# What simulated fleets start on (most often first).
STARTING_VERSIONS: tuple[SimVersion, ...] = ((15, 0, 0, 104), (15, 5, 1, 55), (14, 2, 1, 15))
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


@dataclass(eq=False)  # identity: members refer to each other
class Cluster:
    name: str
    members: list[SimAppliance] = field(default_factory=list)

    def connected(self) -> list[SimAppliance]:
        return [m for m in self.members if m.cluster_connected]


TAU = 30.0  # appliance-seconds a message spends in a healthy appliance's work queue
RECIPIENTS_PER_MESSAGE = 1.17


@dataclass(eq=False)
class MailGroup:
    """A capacity group: mail arrives at a steady rate, shared by the members that are in service.

    While a member is suspended or rebooting its share goes to its peers; every member delivers at its
    own rate. The model is advanced lazily (whenever someone looks, or before a member changes state).
    """

    name: str
    members: list[SimAppliance] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return sum(m.base_rate for m in self.members)

    def _totals(self) -> tuple[float, float]:
        """The group's rate and the in-service members' weight: one pass over the members."""
        rate = weight = 0.0
        for m in self.members:
            rate += m.base_rate
            if m.in_service:
                weight += m.base_rate
        return rate, weight

    def share_of(self, member: SimAppliance, totals: tuple[float, float] | None = None) -> float:
        """Messages per second arriving at this member now (`totals` from `_totals`, when already at hand)."""
        if not member.in_service:
            return 0.0
        rate, weight = totals or self._totals()
        return rate * member.base_rate / weight

    def shares(self) -> dict[str, float]:
        totals = self._totals()  # once, not once per member: a 250-member group is read hundreds of times a second
        return {m.name: self.share_of(m, totals) for m in self.members}

    def advance(
        self, member: SimAppliance, time_scale: float, drain_rate: float, totals: tuple[float, float] | None = None
    ) -> None:
        """One member's mail up to now. Shares only change at `settle`, so each member keeps its own clock."""
        now = time.monotonic()
        dt = (now - member.mail_clock) / max(time_scale, 1e-9)
        member.mail_clock = now
        if dt > 0:
            member.flow(self.share_of(member, totals), dt, drain_rate)

    def settle(self, time_scale: float, drain_rate: float) -> None:
        """Every member's mail up to now: call it before a member goes in or out of service."""
        totals = self._totals()  # nobody goes in or out of service during the loop
        for m in self.members:
            self.advance(m, time_scale, drain_rate, totals)


@dataclass
class UpdateSettings:
    images: str = "cisco"  # or "host:port"
    listing: str = "cisco"  # or a manifest URL
    feature_keys: str = "cisco"  # another service, so that SETUP has more than one own-server question


UPGRADES_LABELS = ("AsyncOS upgrades", "Cisco AsyncOS upgrades", "AsyncOS Upgrades", "Cisco AsyncOS Upgrades")
PAGE_SIZES = (5, 9, 3, 14, 7, 22, 4, 11)


@dataclass(frozen=True)
class Printing:
    """How this appliance's printouts differ from its neighbours' (seeded per appliance, stable)."""

    page_lines: int = 14  # AsyncOS pages long output whatever the terminal says
    upgrades_label: str = "AsyncOS upgrades"
    label_gap: int = 2  # spaces between the widest label and the value column
    thousands: bool = False  # separators in `workqueue status` as well as in status detail
    erase_csi: bool = False  # the pager line is erased with ESC [ K rather than spaces
    banner_colour: bool = False
    trailing_spaces: bool = False
    extra_setup_question: bool = False  # updateconfig SETUP asks one more (harmless) question
    extra_upgrade_question: bool = False  # upgrade asks whether to notify the administrators


@dataclass(eq=False)
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
    base_rate: float = 15.0  # messages per second this appliance receives when all its peers are in service
    capacity: float = 60.0  # messages per second it can deliver at most
    received: float = 0.0  # lifetime counters (messages)
    delivered: float = 0.0
    received_at_boot: float = 0.0
    delivered_at_boot: float = 0.0
    group: MailGroup | None = None
    mail_clock: float = field(default_factory=time.monotonic)
    printing: Printing = field(default_factory=Printing)
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
    drops: list[str] = field(default_factory=list)  # `command#n` of every session dropped by a drop@ fault

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
                self.drops.append(f"{command}#{self.command_counts[command]}")
                return True
        return False

    def drop_event(self, command: str) -> str:
        """The event recorded when a drop@ fault fires: `dropped:<command>#<n>`."""
        return f"dropped:{command}#{self.command_counts[command]}"

    @property
    def in_service(self) -> bool:
        return self.state == "up" and not self.suspended

    @property
    def delivers_nothing(self) -> bool:
        # bake-fail: the upgrade left it unable to deliver (a broken interface, a lost key).
        return self.fault("bake-fail") and bool(self.upgrades_done)

    def flow(self, share: float, dt: float, drain_rate: float) -> None:
        """dt appliance-seconds of mail: `share` msg/s arrive while in service; deliveries leave the queue."""
        if self.state != "up":
            return  # rebooting or down: nothing comes in, nothing goes out
        arriving = share if self.in_service else 0.0
        steps = max(1, min(200, math.ceil(dt / 5)))
        h = dt / steps
        wobble = 1 + self.rng.uniform(-0.04, 0.04)
        for _ in range(steps):
            before = self.depth
            if self.delivers_nothing:
                self.depth += arriving * h
            elif self.in_service:
                target = arriving * TAU * wobble
                if arriving <= self.capacity and self.depth <= self.capacity * TAU:
                    self.depth = target + (self.depth - target) * math.exp(-h / TAU)
                else:
                    self.depth = max(0.0, self.depth + (arriving - self.capacity) * h)
            else:
                # Receiving suspended: the queue drains, at least at the drain rate, until it is empty.
                rate = min(self.capacity, max(self.depth / TAU, drain_rate))
                self.depth = max(0.0, self.depth - rate * h)
            if self.fault("drain-stuck") and self.suspended:
                self.depth = max(self.depth, 37.0)
            if self.fault("peer-overload"):
                self.depth = max(self.depth, OVERLOAD_DEPTH * 1.04 * wobble)
            self.received += arriving * h
            self.delivered += max(0.0, arriving * h + before - self.depth)

    def _group(self) -> MailGroup:
        if self.group is None:
            self.group = MailGroup(self.name, [self])
        return self.group

    def tick_mail(self, time_scale: float, drain_rate: float) -> int:
        """Advance this appliance's mail to now; the work queue depth."""
        self._group().advance(self, time_scale, drain_rate)
        return int(self.depth)

    def settle_mail(self, time_scale: float, drain_rate: float) -> None:
        """Bring the whole capacity group up to now, before this appliance goes in or out of service."""
        self._group().settle(time_scale, drain_rate)

    def counters(self) -> dict[str, tuple[int, int, int]]:
        """status detail counters: (reset, uptime, lifetime); the counters were never reset."""
        rec, dlv = int(self.received), int(self.delivered)
        up_rec, up_dlv = rec - int(self.received_at_boot), dlv - int(self.delivered_at_boot)
        rcpt = int(rec * RECIPIENTS_PER_MESSAGE)
        up_rcpt = int(up_rec * RECIPIENTS_PER_MESSAGE)
        done = int(dlv * RECIPIENTS_PER_MESSAGE)
        up_done = int(up_dlv * RECIPIENTS_PER_MESSAGE)
        return {
            "Messages Received": (rec, up_rec, rec),
            "Recipients Received": (rcpt, up_rcpt, rcpt),
            "Completed Recipients": (done, up_done, done),
            "Delivered Recipients": (int(done * 0.97), int(up_done * 0.97), int(done * 0.97)),
        }

    def booted(self) -> None:
        self.received_at_boot, self.delivered_at_boot = self.received, self.delivered

    @property
    def password_word(self) -> str:
        # 15.0 and later say "passphrase", older releases "password".
        return "passphrase" if self.version >= (15, 0, 0, 0) else "password"
