"""The rollout report: JSON (a contract) and a Markdown summary beside it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from segtui.rollout.engine import Rollout


def build_report(rollout: Rollout, outcome: str) -> dict[str, Any]:
    appliances = []
    for spec in rollout.inventory.appliances:
        rec = rollout.records[spec.name]
        appliances.append(
            {
                "name": spec.name,
                "group": spec.group,
                "cluster": spec.cluster,
                "state": "pending" if rec.state == "running" else rec.state,
                "version_before": rec.version_before,
                "version_after": rec.current,
                "listeners": rec.listeners,
                "hops": rec.hops,
                "installed_staged": rec.installed_staged,
                "backups": [{"kind": b["kind"], "path": b["path"], "sha256": b["sha256"]} for b in rec.backups],
                "error": rec.error,
            }
        )
    counts: dict[str, int] = {}
    for a in appliances:
        state = str(a["state"])
        counts[state] = counts.get(state, 0) + 1
    return {
        "fleet": rollout.inventory.name,
        "environment": rollout.inventory.environment,
        "target": str(rollout.target),
        "outcome": outcome,
        "counts": counts,
        "notes": list(rollout.notes.clusters) + ([rollout.pause_reason] if outcome == "paused" else []),
        "appliances": appliances,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# segtui rollout: {report['fleet']} ({report['environment']}) to {report['target']}",
        "",
        f"**Outcome: {report['outcome']}** — " + ", ".join(f"{k}: {v}" for k, v in sorted(report["counts"].items())),
        "",
        "| appliance | state | before | after | listeners | backups | error |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in report["appliances"]:
        error = (a["error"] or "").replace("|", "\\|")
        lines.append(
            f"| {a['name']} | {a['state']} | {a['version_before'] or '-'} | {a['version_after'] or '-'} | "
            f"{a['listeners']} | {len(a['backups'])} | {error} |"
        )
    if report["notes"]:
        lines += ["", "## Notes", *[f"- {n}" for n in report["notes"] if n]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], path: Path) -> Path:
    """Write FILE.json and FILE.md beside it, owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, body in (
        (path, json.dumps(report, indent=2) + "\n"),
        (path.with_suffix(".md"), markdown(report)),
    ):
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
    return path.with_suffix(".md")
