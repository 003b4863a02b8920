"""A whole simulated fleet: N appliances, clusters, the update server, inventory and known_hosts."""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import asyncssh
import httpx

from segtui.sim.model import (
    FAULTS,
    NEWEST,
    PAGE_SIZES,
    STARTING_VERSIONS,
    SURGE_DEPTH,
    TAU,
    UPGRADES_LABELS,
    Cluster,
    Durations,
    MailGroup,
    Printing,
    SimAppliance,
    SimVersion,
    vdotted,
    vtag,
)
from segtui.sim.node import SimNode
from segtui.sim.updateserver import SHAPES, UpdateServer, forms_for, shapes_for, write_update_root

DEFAULT_PASSWORD = "ironport"  # AsyncOS's factory default for admin
LISTENER_NAMES = ("IncomingMail", "OutgoingMail", "RelayDMZ", "BulkMail")


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FaultSpecError(ValueError):
    pass


def parse_faults(spec: str | None) -> dict[str, set[str]]:
    """`esa03=reboot-hang,esa05=drain-stuck` -> {name: {fault}}."""
    out: dict[str, set[str]] = {}
    if not spec:
        return out
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, fault = item.partition("=")
        drop = fault.startswith("drop@") and len(fault) > 5 and ("#" not in fault or fault.rpartition("#")[2].isdigit())
        if not sep or not name.strip() or (fault not in FAULTS and not drop):
            raise FaultSpecError(
                f"--faults: {item!r} is not name=fault (faults: {', '.join(FAULTS)}, drop@COMMAND[#N])"
            )
        out.setdefault(name.strip(), set()).add(fault)
    return out


# Not "ironport": it is also the factory password the simulator uses, and a hostname containing the password
# would be masked in every transcript and report.
_HOST_WORDS = ("gw", "mx", "smtp", "mta", "relay", "mailgw", "esg", "sg", "inbound", "edge")
_SITES = ("ams", "fra", "lon", "nyc", "sjc", "sin", "syd", "par", "dub", "tor", "zrh", "osl")
_SUBDOMAINS = ("mail", "smtp", "mx", "dmz", "msg")
_DOMAINS = ("example.net", "corp.example", "example.org", "mail.example.com", "example.co.uk", "grp.example")


def unrelated_hostnames(names: list[str], rng: random.Random) -> dict[str, str]:
    """Each appliance's own configured hostname: unique, and not derived from its inventory name."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        while True:
            word, k = rng.choice(_HOST_WORDS), rng.randrange(1, 40)
            if rng.random() < 0.5:
                host = f"{word}{k}.{rng.choice(_SUBDOMAINS)}.{rng.choice(_DOMAINS)}"
            else:
                host = f"{word}-{rng.choice(_SITES)}-{k}.{rng.choice(_DOMAINS)}"
            first = host.split(".")[0]
            if host not in taken and not host.startswith(name) and name not in first:
                break
        taken.add(host)
        out[name] = host
    return out


# Every appliance alike: only long output (status detail) pages; one label, no extra questions, no VT100.
PLAIN = Printing(page_lines=40)


def printing_for(i: int, rng: random.Random) -> Printing:
    """Seeded printout habits; the labels and page sizes rotate so that every fleet shows several."""
    off = rng.randrange(1000)
    return Printing(
        page_lines=PAGE_SIZES[(i + off) % len(PAGE_SIZES)],
        upgrades_label=UPGRADES_LABELS[(i + off) % len(UPGRADES_LABELS)],
        label_gap=2 + rng.randrange(5),
        thousands=rng.random() < 0.5,
        erase_csi=(i + off) % 2 == 0,
        banner_colour=rng.random() < 0.3,
        trailing_spaces=(i + off) % 3 != 0,
        extra_setup_question=(i + off) % 3 == 1,
        extra_upgrade_question=(i + off) % 2 == 1,
    )


def starting_version(i: int, n: int) -> SimVersion:
    # A mix: most on 15.0.0-104, every fourth on 15.5.1-055, and one in ten two hops behind.
    usual, newer, old = STARTING_VERSIONS
    if i % 10 == 7:
        return old
    if i % 4 == 3:
        return newer
    return usual


class SimFleet:
    def __init__(
        self,
        appliances: int,
        *,
        time_scale: float = 0.02,
        faults: dict[str, set[str]] | None = None,
        seed: int = 7,
        workdir: Path | None = None,
        password: str | None = None,
        password_env: str = "SEGTUI_PASSWORD",
        durations: Durations | None = None,
        clusters: bool = True,
        on_event: Callable[[str, str], None] | None = None,
        events_out: Path | None = None,
        hostnames: str = "unrelated",
        manifest_shapes: dict[SimVersion, str] | str | None = None,
        plain_printouts: bool = False,
    ) -> None:
        """`hostnames`: "unrelated" (default: seeded names like gw7.mail.example.net) or "inventory"
        (`<name>.lab.example.com`). `manifest_shapes`: one of SHAPES for every manifest, or a shape per base
        release; default: every shape, rotated by the seed. `plain_printouts`: every appliance alike (PLAIN), no
        extra questions (for benchmarks that compare fleet sizes)."""
        if hostnames not in ("unrelated", "inventory"):
            raise ValueError(f"hostnames must be 'unrelated' or 'inventory', not {hostnames!r}")
        if isinstance(manifest_shapes, str) and manifest_shapes not in SHAPES:
            raise ValueError(f"manifest shape must be one of {', '.join(SHAPES)}")
        if appliances < 1:
            raise ValueError("--appliances must be at least 1")
        self.count = appliances
        self.time_scale = time_scale
        self.faults = faults or {}
        self.seed = seed
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="segtui-sim-"))
        self.password_env = password_env
        self.password = password or os.environ.get(password_env) or DEFAULT_PASSWORD
        self.durations = durations or Durations()
        self.clusters_enabled = clusters
        self.on_event = on_event
        self.events_out = events_out
        self.nodes: dict[str, SimNode] = {}
        self.clusters: dict[str, Cluster] = {}
        self.update_server: UpdateServer | None = None
        self._http: httpx.AsyncClient | None = None
        self.events: list[tuple[str, str]] = []
        self.hostname_style = hostnames
        self.plain_printouts = plain_printouts
        if isinstance(manifest_shapes, str):
            self.manifest_shapes = {base: manifest_shapes for base in shapes_for(seed)}
        else:
            self.manifest_shapes = manifest_shapes or shapes_for(seed)
        self.version_forms = forms_for(seed)
        self.groups: dict[str, MailGroup] = {}
        width = max(2, len(str(appliances)))
        self.names = [f"esa{i:0{width}d}" for i in range(1, appliances + 1)]
        unknown = set(self.faults) - set(self.names)
        if unknown:
            raise FaultSpecError(f"--faults names appliances not in the fleet: {', '.join(sorted(unknown))}")

    @property
    def inventory_path(self) -> Path:
        return self.workdir / "inventory.toml"

    @property
    def known_hosts_path(self) -> Path:
        return self.workdir / "known_hosts"

    def _record(self, name: str, what: str) -> None:
        self.events.append((name, what))
        if self.events_out is not None:
            with self.events_out.open("a") as fh:
                fh.write(f"{name} {what} {time.time():.3f}\n")
        if self.on_event is not None:
            self.on_event(name, what)

    async def start(self) -> None:
        rng = random.Random(self.seed)
        root = self.workdir / "updates"
        self.update_server = UpdateServer(root)
        write_update_root(root, self.update_server.url, shapes=self.manifest_shapes, forms=self.version_forms)
        self.update_server.start()
        self._http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
        cluster_members: set[str] = set()
        if self.clusters_enabled and self.count >= 6:
            cluster_members = set(self.names[-2:])
            self.clusters["mailcluster"] = Cluster("mailcluster")
        if self.hostname_style == "unrelated":
            hostnames = unrelated_hostnames(self.names, random.Random(f"hostnames-{self.seed}"))
        else:
            hostnames = {name: f"{name}.lab.example.com" for name in self.names}
        look = random.Random(f"printing-{self.seed}")
        serials: set[str] = set()
        for i, name in enumerate(self.names):
            appliance_dir = self.workdir / "appliances" / name
            (appliance_dir / "configuration").mkdir(parents=True, exist_ok=True)
            virtual = i % 2 == 0
            serial = f"{rng.getrandbits(48):012X}-{rng.getrandbits(40):010X}"
            while serial in serials:
                serial = f"{rng.getrandbits(48):012X}-{rng.getrandbits(40):010X}"
            serials.add(serial)
            version = (15, 0, 0, 104) if name in cluster_members else starting_version(i, self.count)
            a = SimAppliance(
                name=name,
                hostname=hostnames[name],
                model="C300V" if virtual else "C395",
                serial=serial,
                vln=f"VLNESA{rng.randrange(10**6):06d}" if virtual else None,
                version=version,
                listeners=list(LISTENER_NAMES[: 1 + rng.randrange(4)]),
                faults=set(self.faults.get(name, set())),
                rng=random.Random(rng.random()),
                config_dir=appliance_dir / "configuration",
                slbl_enabled=i % 4 != 1,
                printing=PLAIN if self.plain_printouts else printing_for(i, look),
            )
            # Mail: about 1-13 messages a second each, so that a healthy queue (rate x TAU) stays in the hundreds
            # even while a peer's share comes to it; lifetime counters of a box in service for years.
            a.base_rate = rng.uniform(40, 400) / TAU
            a.received = a.received_at_boot = rng.uniform(2e6, 2e7)
            a.delivered = a.delivered_at_boot = a.received - a.base_rate * TAU
            a.suspended = a.fault("listeners-suspended")
            group = self.groups.setdefault(self.group_of(i), MailGroup(self.group_of(i)))
            group.members.append(a)
            a.group = group
            if i % 2 == 1:
                a.committed.feature_keys = "keys.lab.example.com:80"
            if name in cluster_members:
                cluster = self.clusters["mailcluster"]
                a.cluster = cluster
                cluster.members.append(a)
            node = SimNode(
                a,
                port=0,
                root=appliance_dir,
                username="admin",
                password=self.password,
                time_scale=self.time_scale,
                durations=self.durations,
                http=self._http,
                host_key=asyncssh.generate_private_key("ssh-ed25519"),
                on_event=self._record,
            )
            self.nodes[name] = node
        for group in self.groups.values():
            # Sized so that a group can lose members and still deliver what arrives.
            for a in group.members:
                a.capacity = 1.2 * group.rate
                a.depth = SURGE_DEPTH if a.fault("queue-surge") else a.base_rate * TAU
        await asyncio.gather(*(n.start() for n in self.nodes.values()))
        self.write_inventory()

    @staticmethod
    def group_of(i: int) -> str:
        return f"dc{i % 2 + 1}"

    @property
    def hostnames(self) -> dict[str, str]:
        """Inventory name -> the appliance's own hostname (what its prompt and cluster lists show)."""
        return {name: node.appliance.hostname for name, node in self.nodes.items()}

    @property
    def serials(self) -> dict[str, str]:
        return {name: node.appliance.serial for name, node in self.nodes.items()}

    def manifest_shape(self, base: SimVersion) -> str:
        return self.manifest_shapes[base]

    def write_inventory(self, path: Path | None = None) -> Path:
        """The fleet's inventory; written elsewhere than the workdir, it names known_hosts by absolute path."""
        path = path or self.inventory_path
        assert self.update_server is not None
        beside = path.resolve().parent == self.known_hosts_path.resolve().parent
        known_hosts = self.known_hosts_path.name if beside else str(self.known_hosts_path.resolve())
        lines = [
            "# Written by `segtui sim`: a simulated lab fleet on loopback.",
            "[fleet]",
            'name = "sim-lab"',
            'environment = "lab"',
            f'update_server = "{self.update_server.url}"',
            "",
            "[defaults]",
            'username = "admin"',
            f'password_env = "{self.password_env}"',
            f"known_hosts = {_toml_string(known_hosts)}",
            "",
        ]
        for i, (name, node) in enumerate(self.nodes.items()):
            lines += [
                "[[appliance]]",
                f'name = "{name}"',
                'host = "127.0.0.1"',
                f"port = {node.port}",
                f'group = "{self.group_of(i)}"',
            ]
            if node.appliance.cluster is not None:
                lines.append(f'cluster = "{node.appliance.cluster.name}"')
            lines.append("")
        path.write_text("\n".join(lines))
        self.write_known_hosts()
        return path

    def write_known_hosts(self) -> None:
        """The keys the appliances had when the fleet started (a changed key must be noticed)."""
        if self.known_hosts_path.exists():
            return
        rows = [
            f"[127.0.0.1]:{node.port} {node.host_key.export_public_key().decode().strip()}"
            for node in self.nodes.values()
        ]
        self.known_hosts_path.write_text("\n".join(rows) + "\n")

    async def stop(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes.values()), return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        if self.update_server is not None:
            self.update_server.stop()

    async def __aenter__(self) -> SimFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def summary(self) -> list[str]:
        assert self.update_server is not None
        versions = Counter(vdotted(n.appliance.version) for n in self.nodes.values())
        shapes = ", ".join(
            f"{vtag(b)}={shape}/{self.version_forms[b]}" for b, shape in sorted(self.manifest_shapes.items())
        )
        lines = [
            f"inventory: {self.inventory_path}",
            f"known_hosts: {self.known_hosts_path}",
            f"update server: {self.update_server.url} (newest version {vdotted(NEWEST)})",
            f"versions: {', '.join(f'{v} x{c}' for v, c in sorted(versions.items()))}",
            f"manifest shapes: {shapes}",
        ]
        for name, node in self.nodes.items():
            a = node.appliance
            extra = f" cluster={a.cluster.name}" if a.cluster else ""
            faults = f" faults={','.join(sorted(a.faults))}" if a.faults else ""
            lines.append(
                f"  {name}  127.0.0.1:{node.port}  {vdotted(a.version)} hostname={a.hostname} "
                f"serial={a.serial} group={a.group.name if a.group else '-'}{extra}{faults}"
            )
        return lines
