"""The rollout report: JSON (a contract) and a Markdown summary beside it, built from the journal.

One builder for a live rollout (`build_report`) and for any past one (`report_from_journal`): both read what the
journal holds (rollout, appliance records, steps, operator actions), so a report written again later says the same.
Every text from outside is sanitised and redacted; Markdown cells are escaped so that no `|`, backtick or control
sequence from an appliance can break the table or the reader's terminal.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segtui.rollout.events import BatchFinished, BatchStarted, Note, RolloutEvent, State
from segtui.rollout.journal import ApplianceRecord, Journal
from segtui.textsafe import Redactor, one_line, sanitize

if TYPE_CHECKING:
    from segtui.inventory import ApplianceSpec, Inventory
    from segtui.rollout.engine import Rollout

SCHEMA_VERSION = 2


def iso(ts: float | None) -> str | None:
    """ISO 8601 with the local zone, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


@dataclass
class Batch:
    index: int
    appliances: list[str]
    started: float
    finished: float | None = None
    failures: int | None = None


@dataclass
class EventLog:
    """What the journal does not keep (yet) and the report wants: batches and warnings, from the live events."""

    batches: list[Batch] = field(default_factory=list)
    warnings: list[tuple[float, str | None, str]] = field(default_factory=list)

    def on_event(self, event: RolloutEvent) -> None:
        if isinstance(event, BatchStarted):
            self.batches.append(Batch(event.index, list(event.appliances), event.ts))
        elif isinstance(event, BatchFinished):
            for batch in reversed(self.batches):
                if batch.index == event.index and batch.finished is None:
                    batch.finished, batch.failures = event.ts, event.failures
                    break
        elif isinstance(event, Note) and event.level in ("warning", "error"):
            self.warnings.append((event.ts, event.appliance, event.text))


def _rollout_row(journal: Journal, rollout_id: int) -> dict[str, Any]:
    row = journal.db.execute(
        "SELECT id, inventory, target, options, started, finished, outcome FROM rollouts WHERE id = ?", (rollout_id,)
    ).fetchone()
    if row is None:
        raise KeyError(rollout_id)
    options = json.loads(row[3])
    options.pop("_settings", None)
    return {
        "id": row[0],
        "inventory": row[1],
        "target": row[2],
        "options": options,
        "started": row[4],
        "finished": row[5],
        "outcome": row[6],
    }


def _records(journal: Journal, rollout_id: int) -> dict[str, ApplianceRecord]:
    rows = journal.db.execute("SELECT name, record FROM appliances WHERE rollout_id = ?", (rollout_id,))
    return {name: ApplianceRecord.from_json(text) for name, text in rows}


def _steps(journal: Journal, rollout_id: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    rows = journal.db.execute(
        "SELECT name, step, started, finished, ok, message FROM steps WHERE rollout_id = ? ORDER BY id", (rollout_id,)
    )
    for name, step, started, finished, ok, message in rows:
        out.setdefault(name, []).append(
            {
                "step": step,
                "started": iso(started),
                "finished": iso(finished),
                "seconds": round(finished - started, 1) if finished is not None else None,
                "ok": None if ok is None else bool(ok),
                "message": message or "",
            }
        )
    return out


def _actions(journal: Journal, rollout_id: int) -> list[dict[str, Any]]:
    rows = journal.db.execute(
        "SELECT ts, who, action, target FROM actions WHERE rollout_id = ? ORDER BY id", (rollout_id,)
    )
    return [{"ts": iso(ts), "who": who, "action": action, "target": target} for ts, who, action, target in rows]


def rollout_ids(journal: Journal, inventory: str) -> list[int]:
    rows = journal.db.execute("SELECT id FROM rollouts WHERE inventory = ? ORDER BY id", (inventory,))
    return [int(r[0]) for r in rows]


def needs_a_person(inventory: Inventory, records: dict[str, ApplianceRecord]) -> list[dict[str, str]]:
    """What a person must do after the rollout, each with the exact command: listeners still suspended, update
    settings still pointing at the local server, appliances that need attention or failed."""
    out: list[dict[str, str]] = []
    for spec in inventory.appliances:
        rec = records.get(spec.name)
        if rec is None:
            continue
        ssh = f"ssh -p {spec.port} {spec.username}@{spec.host}"
        if rec.listeners == "suspended":
            why = "listeners still suspended" + (" (before segtui came)" if rec.suspended_elsewhere else "")
            out.append({"appliance": spec.name, "why": why, "command": f"{ssh} resumelistener"})
        if rec.pointed and rec.original_source:
            source = ", ".join(f"{k} {v}" for k, v in sorted(rec.original_source.items()))
            out.append(
                {
                    "appliance": spec.name,
                    "why": f"update settings still point at the local update server (were: {source})",
                    "command": f"{ssh} updateconfig  (SETUP: put the AsyncOS upgrade source back, then commit)",
                }
            )
        if rec.state == State.NEEDS_ATTENTION:
            out.append(
                {
                    "appliance": spec.name,
                    "why": f"needs attention: {rec.error or rec.message or 'see the journal'}",
                    "command": f"segtui resume --inventory {inventory.path}  (or R in the dashboard to re-probe)",
                }
            )
        elif rec.state == State.FAILED:
            out.append(
                {
                    "appliance": spec.name,
                    "why": f"failed: {rec.error or 'see the journal'}",
                    "command": f"{ssh} version  (then R in the dashboard retries it)",
                }
            )
    return out


def _appliance(
    spec: ApplianceSpec | None, name: str, rec: ApplianceRecord, steps: list[dict[str, Any]], live: bool
) -> dict[str, Any]:
    state = str(rec.state)
    if live and rec.state == State.RUNNING:
        state = "interrupted"  # segtui stopped while this appliance was under way; `segtui resume` continues it
    started, finished = rec.started, rec.finished
    return {
        "name": name,
        "host": spec.host if spec else None,
        "port": spec.port if spec else None,
        "group": spec.group if spec else None,
        "cluster": spec.cluster if spec else None,
        "hostname": getattr(rec, "hostname", None),
        "serial": getattr(rec, "serial", None),
        "state": state,
        "step": rec.step,
        "version_before": rec.version_before,
        "version_after": rec.current,
        "path": list(rec.hops),
        "hops": list(rec.hops),
        "installed_staged": rec.installed_staged,
        "started": iso(started),
        "finished": iso(finished),
        "seconds": round(finished - started, 1) if started and finished else None,
        "steps": steps,
        "backups": [{"kind": b.get("kind"), "path": b.get("path"), "sha256": b.get("sha256")} for b in rec.backups],
        "listeners": rec.listeners,
        "suspended_by_segtui": rec.suspended_by_us,
        "update_settings": "pointing at the local update server" if rec.pointed else "as before",
        "error": rec.error,
        "unrecognized_questions": list(getattr(rec, "unrecognized_questions", None) or []),
        "bake": getattr(rec, "bake", None),
        "guard_waits": list(getattr(rec, "guard_waits", None) or []),
    }


def report_from_journal(
    journal: Journal,
    inventory: Inventory,
    rollout_id: int,
    *,
    outcome: str | None = None,
    events: EventLog | None = None,
    notes: Iterable[str] = (),
    notifications: dict[str, Any] | None = None,
    live: bool = False,
) -> dict[str, Any]:
    """The report of one rollout from the journal (the live run adds its events, notes and notifications)."""
    info = _rollout_row(journal, rollout_id)
    records = _records(journal, rollout_id)
    steps = _steps(journal, rollout_id)
    actions = _actions(journal, rollout_id)
    specs = {a.name: a for a in inventory.appliances}
    names = [a.name for a in inventory.appliances] + sorted(set(records) - set(specs))
    appliances = [
        _appliance(specs.get(n), n, records.get(n) or ApplianceRecord(name=n), steps.get(n, []), live) for n in names
    ]
    counts: dict[str, int] = {}
    for a in appliances:
        counts[a["state"]] = counts.get(a["state"], 0) + 1
    operator = next((a["who"] for a in actions if a["action"] in ("created", "start")), None)
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "rollout_id": rollout_id,
        "fleet": inventory.name,
        "environment": inventory.environment,
        "inventory": str(inventory.path),
        "target": info["target"],
        "outcome": outcome or info["outcome"] or "unfinished",
        "started": iso(info["started"]),
        "finished": iso(info["finished"]),
        "seconds": round(info["finished"] - info["started"], 3) if info["finished"] else None,
        "operator": operator,
        "options": info["options"],
        "counts": counts,
        "batches": [
            {
                "index": b.index,
                "appliances": b.appliances,
                "started": iso(b.started),
                "finished": iso(b.finished),
                "failures": b.failures,
            }
            for b in (events.batches if events else [])
        ],
        "appliances": appliances,
        "operator_actions": actions,
        "needs_a_person": needs_a_person(inventory, records),
        "notes": [n for n in notes if n],
        "warnings": [
            {"ts": iso(ts), "appliance": who, "text": text} for ts, who, text in (events.warnings if events else [])
        ],
        "notifications": notifications or {"sent": 0, "failed": 0, "failures": []},
    }
    redact = Redactor(a.password for a in inventory.appliances)
    return _clean(report, redact)  # type: ignore[no-any-return]


def _clean(value: Any, redact: Redactor) -> Any:
    """Every string sanitised (no control sequence) and redacted (no secret), whatever its depth."""
    if isinstance(value, str):
        return redact(sanitize(value))
    if isinstance(value, dict):
        return {k: _clean(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, redact) for v in value]
    return value


def build_report(
    rollout: Rollout, outcome: str, *, notifier: Any = None, events: EventLog | None = None
) -> dict[str, Any]:
    """The report of the rollout that just ran."""
    rollout_id = rollout.journal.rollout_id
    assert rollout_id is not None, "the rollout was never begun"
    notes = list(rollout.notes.clusters)
    if outcome == "paused" and rollout.pause_reason:
        notes.append(f"paused: {rollout.pause_reason}")
    return report_from_journal(
        rollout.journal,
        rollout.inventory,
        rollout_id,
        outcome=outcome,
        events=events,
        notes=notes,
        notifications=notifier.summary() if notifier is not None else None,
        live=True,
    )


# --- Markdown ------------------------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md(text: Any) -> str:
    """One Markdown-safe line: sanitised, folded, every special character escaped (a `|` cannot end a cell)."""
    if text is None or text == "":
        return "-"
    return _MD_SPECIAL.sub(r"\\\1", one_line(str(text), 1000))


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return lines


def markdown(report: dict[str, Any]) -> str:
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(report["counts"].items()))
    lines = [
        f"# segtui rollout {md(report.get('rollout_id'))}: {md(report['fleet'])} ({md(report['environment'])}) "
        f"to {md(report['target'])}",
        "",
        f"**Outcome: {md(report['outcome'])}** — {md(counts)}",
        "",
        f"- started: {md(report.get('started'))}",
        f"- finished: {md(report.get('finished'))}",
        f"- operator: {md(report.get('operator'))}",
        f"- options: {md(', '.join(f'{k}={v}' for k, v in sorted(report.get('options', {}).items())))}",
        "",
        "## Appliances",
        "",
        *_table(
            [
                "appliance",
                "hostname",
                "serial",
                "state",
                "before",
                "after",
                "path",
                "started",
                "finished",
                "seconds",
                "listeners",
                "update settings",
                "error",
            ],
            [
                [
                    a["name"],
                    a.get("hostname"),
                    a.get("serial"),
                    a["state"],
                    a["version_before"],
                    a["version_after"],
                    " -> ".join(a.get("path") or []),
                    a.get("started"),
                    a.get("finished"),
                    a.get("seconds"),
                    a["listeners"],
                    a.get("update_settings"),
                    a["error"],
                ]
                for a in report["appliances"]
            ],
        ),
    ]
    needs = report.get("needs_a_person") or []
    if needs:
        lines += ["", "## Needs a person", ""]
        lines += [f"- **{md(n['appliance'])}**: {md(n['why'])} — `{_code(n['command'])}`" for n in needs]
    batches = report.get("batches") or []
    if batches:
        lines += ["", "## Batches", ""]
        lines += _table(
            ["batch", "appliances", "started", "finished", "failures"],
            [[b["index"], ", ".join(b["appliances"]), b["started"], b["finished"], b["failures"]] for b in batches],
        )
    step_rows = [
        [
            a["name"],
            s["step"],
            s["started"],
            s["seconds"],
            "ok" if s["ok"] else ("failed" if s["ok"] is False else "-"),
            s["message"],
        ]
        for a in report["appliances"]
        for s in a.get("steps") or []
    ]
    if step_rows:
        lines += ["", "## Steps", ""]
        lines += _table(["appliance", "step", "started", "seconds", "result", "message"], step_rows)
    backup_rows = [[a["name"], b["kind"], b["path"], b["sha256"]] for a in report["appliances"] for b in a["backups"]]
    if backup_rows:
        lines += ["", "## Backups", ""]
        lines += _table(["appliance", "kind", "path", "sha256"], backup_rows)
    extra_rows = [
        [a["name"], "unrecognized question (default taken)", q]
        for a in report["appliances"]
        for q in a.get("unrecognized_questions") or []
    ]
    extra_rows += [[a["name"], "bake", a["bake"]] for a in report["appliances"] if a.get("bake")]
    extra_rows += [[a["name"], "guard wait", g] for a in report["appliances"] for g in a.get("guard_waits") or []]
    if extra_rows:
        lines += ["", "## Questions, guards and bake", ""]
        lines += _table(["appliance", "what", "detail"], extra_rows)
    actions = report.get("operator_actions") or []
    if actions:
        lines += ["", "## Operator actions", ""]
        lines += _table(
            ["when", "who", "action", "target"], [[a["ts"], a["who"], a["action"], a["target"]] for a in actions]
        )
    notif = report.get("notifications") or {}
    if notif.get("failed"):
        lines += ["", "## Notification delivery failures", ""]
        lines += [f"- {md(f)}" for f in notif.get("failures") or []] or [f"- {md(notif['failed'])} failed"]
    notes = [n for n in report.get("notes") or [] if n]
    warnings = report.get("warnings") or []
    if notes or warnings:
        lines += ["", "## Notes", ""]
        lines += [f"- {md(n)}" for n in notes]
        lines += [f"- {md(w['ts'])} {md(w['appliance'] or 'fleet')}: {md(w['text'])}" for w in warnings]
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    """Text for inside a code span: sanitised, one line, no backtick."""
    return one_line(text, 1000).replace("`", "'")


def report_paths(name: Path) -> tuple[Path, Path]:
    """`--report NAME` -> NAME.json and NAME.md (the extension is added unless given)."""
    if name.suffix.lower() in (".json", ".md"):
        name = name.with_suffix("")
    return name.with_name(name.name + ".json"), name.with_name(name.name + ".md")


def write_report(report: dict[str, Any], name: Path) -> Path:
    """Write NAME.json and NAME.md, owner-only; returns the Markdown file's path."""
    json_path, md_path = report_paths(name)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    for target, body in ((json_path, json.dumps(report, indent=2) + "\n"), (md_path, markdown(report))):
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
    return md_path
