"""Pre-flight for the whole fleet (`segtui check`) and the plan (`segtui plan`); both change nothing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from segtui.asyncos.errors import ApplianceError
from segtui.asyncos.parsers import VersionInfo
from segtui.asyncos.versions import Version
from segtui.inventory import ApplianceSpec
from segtui.rollout.batches import batch_sizes, interleave_groups
from segtui.rollout.context import RolloutContext, server_hostport
from segtui.rollout.engine import RolloutOptions
from segtui.updates.manifest import ManifestError, manifest_url, path_to_target


@dataclass
class ApplianceCheck:
    name: str
    ok: bool
    version: Version | None = None
    info: VersionInfo | None = None
    problem: str | None = None
    path: list[Version] = field(default_factory=list)


@dataclass
class PreflightResult:
    appliances: list[ApplianceCheck]
    manifests: dict[str, str]  # url -> "ok" or the problem

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.appliances) and all(v == "ok" for v in self.manifests.values())


async def read_versions(ctx: RolloutContext) -> dict[str, ApplianceCheck]:
    """Connect to every appliance (host key verified), read `version`; nothing is changed."""

    async def one(spec: ApplianceSpec) -> ApplianceCheck:
        client = ctx.appliance(spec, journal_commands=False)
        try:
            async with asyncio.timeout(ctx.settings.deadlines.precheck):
                info = await client.version()
        except ApplianceError as exc:
            return ApplianceCheck(spec.name, False, problem=exc.message)
        except TimeoutError:
            return ApplianceCheck(spec.name, False, problem="timed out reading `version`")
        finally:
            await client.close()
        return ApplianceCheck(spec.name, True, info.version, info)

    results = await asyncio.gather(*(one(s) for s in ctx.inventory.appliances))
    return {r.name: r for r in results}


async def preflight(ctx: RolloutContext) -> PreflightResult:
    checks = await read_versions(ctx)
    target = ctx.target
    manifests: dict[str, str] = {}
    paths: dict[Version, list[Version]] = {}
    async with httpx.AsyncClient() as http:
        for base in sorted({c.version for c in checks.values() if c.version is not None and c.version < target}):
            url = manifest_url(ctx.inventory.update_server, base)
            try:
                path = await path_to_target(http, ctx.inventory.update_server, base, target)
            except ManifestError as exc:
                manifests[url] = str(exc)
                continue
            manifests[url] = "ok" if path else f"does not lead to {target}"
            paths[base] = path
    for c in checks.values():
        if c.version is None:
            continue
        if c.version > target:
            c.ok, c.problem = False, f"runs {c.version}, newer than the target {target}"
        elif c.version < target:
            c.path = paths.get(c.version, [])
            if not c.path:
                c.ok = False
                c.problem = c.problem or f"no manifest path from {c.version} to {target}"
    return PreflightResult(list(checks.values()), manifests)


def plan_commands(ctx: RolloutContext, spec: ApplianceSpec, current: Version | None) -> list[str]:
    tag = current.tag() if current else "phoebe-<current>"
    url = ctx.inventory.manifest_url(tag)
    host = server_hostport(ctx.inventory.update_server)
    delay = ctx.settings.listener_close_seconds
    cmds = [
        "version; status detail; workqueue status",
        "saveconfig  (2. Encrypt passphrases) + SCP /configuration/<file>",
        "slblconfig > EXPORT + SCP /configuration/<file>.csv  (skipped when the feature is off)",
    ]
    if spec.cluster:
        cmds.append(f"clusterconfig > DISCONNECT > {spec.name}")
    cmds += [
        "updateconfig  (read the current AsyncOS upgrade settings)",
        f"updateconfig > SETUP: AsyncOS images: own server {host}; list: {url}",
        "commit",
        f"suspendlistener > 1. All, {delay} s",
        "workqueue status  (until Messages: 0)",
        f"upgrade > DOWNLOADINSTALL > {ctx.target} (save config: encrypted) > {delay} s",
        "reboot polling: TCP, SSH, CLI prompt, version",
        f"version  (expect {ctx.target})",
        "resumelistener > 1. All",
        "updateconfig > SETUP: the recorded original AsyncOS upgrade settings",
        "commit",
    ]
    if spec.cluster:
        cmds.append(f"clusterconfig > RECONNECT > {spec.name}  (once the whole cluster runs {ctx.target})")
    return cmds


def plan_batches(ctx: RolloutContext, options: RolloutOptions) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for spec in ctx.inventory.appliances:
        groups.setdefault(spec.group, []).append(spec.name)
    order = interleave_groups(groups)
    out: list[list[str]] = []
    for size in batch_sizes(options.steps(), len(order)):
        out.append(order[:size])
        order = order[size:]
    return out
