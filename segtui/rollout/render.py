"""Text for `check`, `plan` and `prepare`: each returns its lines; the CLI only prints them.

Appliance, inventory and update-server text is data: every line leaves here with control sequences removed and
every secret the fleet knows (appliance passwords, update-server credentials) masked.
"""

from __future__ import annotations

from segtui.asyncos.versions import Version
from segtui.rollout.context import RolloutContext
from segtui.rollout.engine import RolloutOptions
from segtui.rollout.preflight import ApplianceCheck, PreflightResult, PrepareResult, plan_commands
from segtui.textsafe import Redactor, clean, one_line, redact_url
from segtui.updates.manifest import PathReport

APPLIANCES_DECIDE = "path decided by the appliance's list"


_MARK = {"ok": "ok  ", "warning": "WARN", "refused": "BAD "}


def _field(text: object, redactor: Redactor, limit: int = 500) -> str:
    """One value (a name, a serial, an appliance's message) as it may be shown: one line, safe, secrets masked."""
    return redactor(one_line(clean(str(text), redactor), limit))


def _safe(lines: list[str], redactor: Redactor) -> list[str]:
    """The last word on every line: no control sequence, no line break, no known secret; alignment kept."""
    return [redactor(clean(line, redactor).replace("\n", " ")) for line in lines]


def _findings(reports: dict[Version, PathReport]) -> list[str]:
    """One line per manifest finding; a manifest on several bases' way (a hop) is said once."""
    lines: list[str] = []
    for _base, report in sorted(reports.items()):
        for f in report.findings:
            line = f"{_MARK[f.level]}manifest {f.url}: {one_line(f.text)}"
            if line not in lines:
                lines.append(line)
    return lines


def _path_text(check: ApplianceCheck, target: Version) -> str:
    if check.version is None:
        return ""
    if check.version == target:
        return "at target"
    if check.version > target:
        return ""
    if not check.path_known:
        return APPLIANCES_DECIDE
    return " -> ".join(str(v) for v in check.path)


def render_preflight(result: PreflightResult, target: Version) -> list[str]:
    """`segtui check`: one line per appliance, one per manifest finding, then the verdict."""
    r = result.redactor
    lines: list[str] = []
    for a in result.appliances:
        status = "ok  " if a.ok else "BAD "
        problem = f"  {_field(a.problem, r)}" if a.problem else ""
        lines.append(f"{status}{_field(a.name, r, 60):<14} {a.version or '?'!s:<12} {_path_text(a, target)}{problem}")
    lines += _findings(result.paths)
    if result.ok:
        warned = sum(1 for r in result.paths.values() for _ in r.warnings)
        lines.append(f"pre-flight passed{f' with {warned} warning(s)' if warned else ''}")
    else:
        lines.append("pre-flight refused: nothing was changed")
    return _safe(lines, r)


def render_refusal(result: PreflightResult) -> list[str]:
    """`segtui run` when the pre-flight refuses: one line per certain problem (for stderr)."""
    r = result.redactor
    return [f"pre-flight: {_field(p, r)}" for p in result.problems()] + ["pre-flight refused: nothing was changed"]


def render_plan(
    ctx: RolloutContext,
    options: RolloutOptions,
    batches: list[list[str]],
    checks: dict[str, ApplianceCheck] | None = None,
) -> list[str]:
    """`segtui plan`: the batches, and per appliance its path (with hops) and the exact CLI commands."""
    inventory, target, r = ctx.inventory, ctx.target, ctx.redactor
    checks = checks or {}
    lines = [
        f"plan: {_field(inventory.name, r, 100)} ({_field(inventory.environment, r, 100)}) to {target}, "
        f"{len(batches)} batches, "
        f"max {options.max_unavailable} unavailable per group, failure budget {options.max_fail}"
    ]
    for i, names in enumerate(batches, start=1):
        lines += ["", f"batch {i}: {', '.join(_field(n, r, 100) for n in names)}"]
        for name in names:
            spec = inventory.by_name(name)
            check = checks.get(name)
            current = check.version if check else None
            if check is None:
                way = f"{current or '?'} -> {target}"
            elif check.problem:
                way = f"{current or '?'}: {_field(check.problem, r)}"
            elif current == target:
                way = f"{current}: at the target, only `version` is read"
            elif not check.path_known:
                way = f"{current} -> {target} ({APPLIANCES_DECIDE})"
            else:
                way = " -> ".join(str(v) for v in [current or "?", *check.path])
            cluster = f", cluster {_field(spec.cluster, r, 100)}" if spec.cluster else ""
            where = f"{_field(spec.host, r, 100)}:{spec.port}, group {_field(spec.group, r, 100)}{cluster}"
            lines.append(f"  {_field(name, r, 100)} ({where}) {way}")
            for warning in check.warnings if check else []:
                lines.append(f"    warning: {_field(warning, r)}")
            if current == target:
                continue
            path = check.path if check and check.path_known and check.path else None
            lines += [f"    {cmd}" for cmd in plan_commands(ctx, spec, current, path)]
    return _safe(lines, r)


def render_prepare(result: PrepareResult, fleet: str, update_server: str, target: Version) -> list[str]:
    """`segtui prepare`: what to enter in fetch_manifest per base release, then what the update server lacks."""
    r = result.redactor
    server = _field(redact_url(update_server), r, 300)
    lines = [f"fetch_manifest requests for {_field(fleet, r, 100)}, target {target}:"]
    for base in result.bases:
        lines += ["", f"Base release tag: {base.tag}  ({base.count} appliance{'s' if base.count != 1 else ''})"]
        if base.serials:
            serials = ", ".join(_field(s, r, 100) for _, s in base.serials)
            lines.append(f"  physical appliances - Serial number(s): {serials}")
            lines.append(f"    ({', '.join(_field(n, r, 100) for n, _ in base.serials)})")
        for name, vln, model in base.virtual:
            lines.append(
                f"  virtual appliance {_field(name, r, 100)} - Virtual license number (VLN): {_field(vln, r, 100)}"
                f"  Model: {_field(model, r, 100)}"
            )
        lines.append(f"  then the update server must hold: asyncos/{base.tag}.xml and the images it names")
    check = result.server
    lines += ["", f"update server {server}:"]
    lines += [f"  {line}" for line in _findings(check.reports)]
    for version, report in sorted(check.reports.items()):
        if not report.refused:
            way = " -> ".join(str(v) for v in report.path) if report.path is not None else APPLIANCES_DECIDE
            lines.append(f"  ok   {version} -> {way}")
    for step, url in check.images_ok:
        lines.append(f"  ok   image {f'{step} ' if step else ''}{url}")
    lines += [f"  WARN {_field(note, r)}" for note in check.notes]
    if check.missing:
        lines += ["", "missing:", f"  {'what':<36} {'url':<60} problem"]
        lines += [f"  {_field(m.what, r):<36} {_field(m.url, r):<60} {_field(m.problem, r)}" for m in check.missing]
    lines += [f"  BAD  appliance {_field(line, r)}" for line in result.not_read]
    if result.ready:
        warned = len(check.notes) + len(check.warnings)
        lines += ["", "ready: nothing is missing" + (f" ({warned} warning(s): check those by hand)" if warned else "")]
    else:
        lines += ["", "not ready: fetch and unpack what is missing"]
    return _safe(lines, r)
