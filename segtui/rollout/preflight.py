"""Pre-flight for the whole fleet (`segtui check`) and the plan (`segtui plan`); both change nothing."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import httpx

from segtui.asyncos.errors import ApplianceError, ParseError
from segtui.asyncos.parsers import VersionInfo
from segtui.asyncos.versions import Version
from segtui.inventory import ApplianceSpec
from segtui.rollout import batches
from segtui.rollout.context import RolloutContext, server_hostport
from segtui.rollout.engine import RolloutOptions
from segtui.textsafe import Redactor, clean, one_line
from segtui.updates.manifest import PathReport, manifest_url, shown_url, walk_paths
from segtui.updates.prepare import BaseRelease, ServerCheck, check_server, group_by_base


def appliance_problem(exc: BaseException, redactor: Redactor | None = None) -> str:
    """Any failure on one appliance as one line for that appliance: typed ones by their message, others by type.

    Appliance text is data: control sequences removed and, given the fleet's redactor, every known secret masked
    (an appliance echoing its password must not put it on the screen or in the journal).
    """

    def shown(text: str) -> str:
        return one_line(clean(text, redactor), 300)

    if isinstance(exc, ParseError):  # garbled appliance output (an ApplianceError or not, depending on its origin)
        text = exc.message if isinstance(exc, ApplianceError) else str(exc)
        return f"output not understood: {shown(text)}"
    if isinstance(exc, ApplianceError):
        return shown(exc.message)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"unexpected error: {type(exc).__name__}: {shown(str(exc))}"


@dataclass
class ApplianceCheck:
    name: str
    ok: bool
    version: Version | None = None
    info: VersionInfo | None = None
    problem: str | None = None  # certain: refuses the rollout
    # The versions to step through (hops, then the target); [] at the target or when unknown.
    path: list[Version] = field(default_factory=list)
    path_known: bool = True  # False: the manifests could not say; the appliance's own list decides
    warnings: list[str] = field(default_factory=list)  # printed, never refusing

    @property
    def expected_upgrades(self) -> int:
        """How many upgrades the appliance needs (for the engine's ordering): hops + 1, or 1 if unknown."""
        if not self.path_known:
            return 1
        return len(self.path)


@dataclass
class PreflightResult:
    appliances: list[ApplianceCheck]
    paths: dict[Version, PathReport] = field(default_factory=dict)  # per base release below the target
    redactor: Redactor = field(default_factory=Redactor)  # the fleet's: what is shown masks every known secret

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.appliances) and not any(r.refused for r in self.paths.values())

    @property
    def expected_upgrades(self) -> dict[str, int]:
        return {a.name: a.expected_upgrades for a in self.appliances}

    @property
    def expected_paths(self) -> dict[str, list[Version]]:
        """Per appliance below the target whose path the manifests made clear: the versions it passes through."""
        return {a.name: list(a.path) for a in self.appliances if a.path_known and a.path}

    @property
    def manifests(self) -> dict[str, str]:
        """Each base manifest's URL -> "ok", or why it refuses (warnings are in `paths`)."""
        return {(r.findings[0].url if r.findings else str(base)): r.refused or "ok" for base, r in self.paths.items()}

    def problems(self) -> list[str]:
        """One line per certain problem (what refuses), appliances first."""
        lines = [f"{a.name}: {a.problem}" for a in self.appliances if not a.ok]
        lines += [r.refused for r in self.paths.values() if r.refused]
        return lines


async def read_versions(ctx: RolloutContext) -> dict[str, ApplianceCheck]:
    """Connect to every appliance (host key verified), read `version`; nothing is changed.

    Whatever one appliance does (refuses, hangs, answers garbage, or trips an unexpected error), it is a
    one-line problem for that appliance; the others carry on.
    """

    async def one(spec: ApplianceSpec) -> ApplianceCheck:
        try:
            client = ctx.appliance(spec, journal_commands=False)
        except Exception as exc:
            return ApplianceCheck(spec.name, False, problem=appliance_problem(exc, ctx.redactor))
        try:
            # The session first, outside the deadline: waiting for a handshake slot (16 at a time) is segtui's own
            # queue, not the appliance being slow; connecting has its own connect and login timeouts.
            await client.session()
            async with asyncio.timeout(ctx.settings.deadlines.precheck):
                info = await client.version()
        except TimeoutError:
            return ApplianceCheck(spec.name, False, problem="timed out reading `version`")
        except Exception as exc:
            return ApplianceCheck(spec.name, False, problem=appliance_problem(exc, ctx.redactor))
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        return ApplianceCheck(spec.name, True, info.version, info)

    results = await asyncio.gather(*(one(s) for s in ctx.inventory.appliances), return_exceptions=True)
    checks: dict[str, ApplianceCheck] = {}
    for spec, r in zip(ctx.inventory.appliances, results, strict=True):
        checks[spec.name] = (
            r
            if isinstance(r, ApplianceCheck)
            else ApplianceCheck(spec.name, False, problem=appliance_problem(r, ctx.redactor))
        )
    return checks


async def check_paths(ctx: RolloutContext, checks: dict[str, ApplianceCheck]) -> dict[Version, PathReport]:
    """Walk the manifests once per base release, and set each appliance's path, warnings and problem."""
    target = ctx.target
    bases = {c.version for c in checks.values() if c.version is not None}
    async with httpx.AsyncClient() as http:
        paths = await walk_paths(http, ctx.inventory.update_server, bases, target)
    for c in checks.values():
        if c.version is None:
            continue
        if c.version > target:
            c.ok, c.problem = False, f"runs {c.version}, newer than the target {target}"
        elif c.version < target:
            report = paths[c.version]
            c.path = list(report.path or [])
            c.path_known = report.path is not None
            c.warnings = [str(f) for f in report.warnings]
            if report.refused:
                c.ok, c.problem = False, report.refused
    return paths


async def preflight(ctx: RolloutContext) -> PreflightResult:
    """Refuses (result.ok False) only for what is certain: an appliance that cannot be read or is past the
    target, a manifest that is missing or unsafe. What the manifests do not make clear is a warning."""
    checks = await read_versions(ctx)
    paths = await check_paths(ctx, checks)
    result = PreflightResult(list(checks.values()), paths, ctx.redactor)
    # The rollout's plan: the engine orders by it, and `upgrade` confirms no release outside it (the hard rule).
    ctx.expected_paths = result.expected_paths
    return result


@dataclass
class PrepareResult:
    """`segtui prepare`: the fetch_manifest requests per base release and what the update server lacks."""

    bases: list[BaseRelease]
    not_read: list[str]  # "name: problem" for appliances whose version could not be read
    server: ServerCheck
    redactor: Redactor = field(default_factory=Redactor)  # the fleet's: what is shown masks every known secret

    @property
    def ready(self) -> bool:
        return self.server.ready and not self.not_read


async def prepare(ctx: RolloutContext) -> PrepareResult:
    """Read every appliance's version, group by base release, check the server with the pre-flight's hop walk."""
    checks = await read_versions(ctx)
    infos = {name: c.info for name, c in checks.items() if c.info is not None}
    not_read = [f"{name}: {c.problem}" for name, c in sorted(checks.items()) if c.info is None]
    bases = group_by_base(infos, ctx.target)
    async with httpx.AsyncClient() as http:
        server = await check_server(http, ctx.inventory.update_server, [b.version for b in bases], ctx.target)
    return PrepareResult(bases, not_read, server, ctx.redactor)


def plan_commands(
    ctx: RolloutContext, spec: ApplianceSpec, current: Version | None, path: list[Version] | None = None
) -> list[str]:
    """The CLI commands for one appliance, one upgrade per step of its path (the target if unknown)."""
    steps = path or [ctx.target]
    host = server_hostport(ctx.inventory.update_server)
    delay = ctx.settings.listener_close_seconds
    cmds = [
        "version; status detail; workqueue status",
        "saveconfig  (2. Encrypt passphrases) + SCP /configuration/<file>",
        "slblconfig > EXPORT + SCP /configuration/<file>.csv  (skipped when the feature is off)",
    ]
    if spec.cluster:
        cmds.append(f"clusterconfig > DISCONNECT > {spec.name}")
    cmds.append("updateconfig  (read the current AsyncOS upgrade settings)")
    base = current
    for i, step in enumerate(steps):
        # The list URL as the operator may see it: update-server credentials masked.
        url = shown_url(manifest_url(ctx.inventory.update_server, base)) if base else "<list URL for the version>"
        cmds += [f"updateconfig > SETUP: AsyncOS images: own server {host}; list: {url}", "commit"]
        if i == 0:
            cmds.append(f"suspendlistener > 1. All, {delay} s")
        cmds += [
            "workqueue status  (until Messages: 0)",
            f"upgrade > DOWNLOADINSTALL > {step} (save config: encrypted) > {delay} s",
            "reboot polling: TCP, SSH, CLI prompt, version",
            f"version  (expect {step})",
        ]
        base = step
    cmds += [
        "resumelistener > 1. All",
        "updateconfig > SETUP: the recorded original AsyncOS upgrade settings",
        "commit",
    ]
    if spec.cluster:
        cmds.append(f"clusterconfig > RECONNECT > {spec.name}  (once the whole cluster runs {ctx.target})")
    return cmds


def plan_batches(ctx: RolloutContext, options: RolloutOptions) -> list[list[str]]:
    """The batches `segtui run` will take: the engine's own order and cut, so plan and run cannot drift."""
    return batches.plan_batches(batches.plan_order(ctx.inventory.appliances), options.steps())
