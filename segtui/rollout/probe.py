"""`segtui probe`: the read-only field kit over a whole inventory, one folder of transcripts per appliance."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segtui.asyncos.probe import ApplianceProbe, probe_appliance
from segtui.inventory import ApplianceSpec
from segtui.rollout.context import RolloutContext
from segtui.textsafe import one_line


@dataclass
class ProbeReport:
    out_dir: Path
    appliances: list[ApplianceProbe] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every appliance answered and every parser read its output."""
        return all(a.ok for a in self.appliances)

    def problems(self) -> list[str]:
        """One line per appliance or output that did not read ok."""
        lines: list[str] = []
        for a in self.appliances:
            if a.error is not None:
                lines.append(f"{a.name}: {a.error}")
            for c in a.commands:
                if c.error is not None and c.error != a.error:
                    lines.append(f"{a.name}: {c.command}: {c.error}")
                elif c.reading is not None and not c.reading.ok:
                    lines.append(f"{a.name}: {c.command}: {c.reading.parser} failed: {c.reading.error}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "appliances": [
                {
                    "name": a.name,
                    "host": a.host,
                    "prompt": a.prompt,
                    "hostname": a.hostname,
                    "ok": a.ok,
                    "error": a.error,
                    "commands": [
                        {
                            "command": c.command,
                            "transcript": f"{dir_name(a.name)}/{c.slug}.txt" if c.transcript else None,
                            "ok": c.ok,
                            "error": c.error,
                            **(c.reading.to_json() if c.reading is not None else {}),
                        }
                        for c in a.commands
                    ],
                }
                for a in self.appliances
            ],
        }


def dir_name(name: str) -> str:
    """An inventory name as a single, safe directory name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "_"
    return safe


async def _probe_one(ctx: RolloutContext, spec: ApplianceSpec) -> ApplianceProbe:
    client = ctx.appliance(spec, journal_commands=False)
    try:
        return await probe_appliance(client, host=spec.host, clustered=True if spec.cluster else None)
    except Exception as exc:  # one appliance never stops the others, and never prints a traceback
        return ApplianceProbe(spec.name, spec.host, error=one_line(f"unexpected {type(exc).__name__}: {exc}", 300))
    finally:
        await client.close()


async def probe_fleet(ctx: RolloutContext, out_dir: Path) -> ProbeReport:
    """Probe every appliance of the inventory (read-only); write `<name>/<command>.txt` and `probe.json`."""
    results = await asyncio.gather(*(_probe_one(ctx, spec) for spec in ctx.inventory.appliances))
    report = ProbeReport(out_dir, list(results))
    out_dir.mkdir(parents=True, exist_ok=True)
    for a in report.appliances:
        folder = out_dir / dir_name(a.name)
        folder.mkdir(exist_ok=True)
        for c in a.commands:
            if c.transcript:
                (folder / f"{c.slug}.txt").write_text(c.transcript)
    (out_dir / "probe.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return report
