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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segtui.errors import InputError
from segtui.rollout.events import State
from segtui.rollout.journal import ApplianceRecord, Journal
from segtui.textsafe import Redactor, one_line, sanitize

if TYPE_CHECKING:
    from segtui.inventory import ApplianceSpec, Inventory
    from segtui.rollout.engine import Rollout
    from segtui.settings import Settings

SCHEMA_VERSION = 2


def iso(ts: float | None) -> str | None:
    """ISO 8601 with the local zone, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _batches(journal: Journal, rollout_id: int) -> list[dict[str, Any]]:
    """The batch plan, with when each batch started and finished (from the journal's event log)."""
    plan = journal.batches(rollout_id)
    out: list[dict[str, Any]] = [
        {"index": i, "appliances": names, "started": None, "finished": None, "summary": None}
        for i, names in enumerate(plan, start=1)
    ]
    for e in journal.events(rollout_id):
        if e.kind not in ("batch-start", "batch-end"):
            continue
        m = re.match(r"batch (\d+)", e.text)
        if not m or not 1 <= int(m.group(1)) <= len(out):
            continue
        batch = out[int(m.group(1)) - 1]
        if e.kind == "batch-start" and batch["started"] is None:
            batch["started"] = iso(e.ts)
        elif e.kind == "batch-end":
            batch["finished"], batch["summary"] = iso(e.ts), e.text
    return out


def _warnings(journal: Journal, rollout_id: int) -> list[dict[str, Any]]:
    return [
        {"ts": iso(e.ts), "appliance": e.appliance, "level": e.kind, "text": e.text}
        for e in journal.events(rollout_id)
        if e.kind in ("warning", "error")
    ]


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


def _iso_any(value: Any) -> Any:
    return iso(value) if isinstance(value, int | float) else value


def rollout_ids(journal: Journal, inventory: str) -> list[int]:
    return sorted(r.id for r in journal.rollouts(inventory))


def hand_work(rollout: Rollout) -> list[dict[str, str]]:
    """What the rollout leaves for a person, each with the exact command (the engine's one rule)."""
    return [{"appliance": h.appliance, "why": h.what, "command": h.command} for h in rollout.needs_a_person()]


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
        "hostname": rec.hostname,
        "serial": rec.serial,
        "state": state,
        "step": rec.step,
        "version_before": rec.version_before,
        # None when it stopped with an upgrade confirmed and was never seen back: it runs one or the other
        "version_after": rec.known_version,
        "version_unknown_between": (
            [rec.current, rec.confirmed_upgrade_to] if rec.current and rec.known_version is None else None
        ),
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
        "unrecognized_questions": [{**q, "ts": _iso_any(q.get("ts"))} for q in rec.unrecognized_questions],
        "bake": rec.bake,
        "guard_waits": [
            {**g, "since": _iso_any(g.get("since")), "until": _iso_any(g.get("until"))} for g in rec.guard_waits
        ],
        "left_by_hand": rec.left_by_hand,
    }


def report_from_journal(
    journal: Journal,
    inventory: Inventory,
    rollout_id: int,
    settings: Settings,
    *,
    rollout: Rollout | None = None,
    outcome: str | None = None,
    notes: Iterable[str] = (),
    notifications: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report of one rollout from its journal; the live run adds its outcome, notes and notifications."""
    from segtui.asyncos.versions import Version
    from segtui.rollout.engine import Rollout, RolloutOptions

    info = journal.rollout_info(rollout_id)
    if info is None:
        raise KeyError(rollout_id)
    records = journal.records(rollout_id) if rollout is None else rollout.records
    steps = _steps(journal, rollout_id)
    actions = [
        {"ts": iso(ts), "who": who, "action": action, "target": target}
        for ts, who, action, target in journal.actions_of(rollout_id)
    ]
    if rollout is None:  # a past rollout: the engine's rules read its journaled records
        known = set(RolloutOptions.__dataclass_fields__)
        try:
            options = RolloutOptions(**{k: v for k, v in info.options.items() if k in known})
        except (InputError, TypeError):
            options = RolloutOptions()
        rollout = Rollout(inventory, settings, Version.parse(info.target), journal, options)
        rollout.records = dict(records)
    specs = {a.name: a for a in inventory.appliances}
    names = [a.name for a in inventory.appliances] + sorted(set(records) - set(specs))
    live = outcome is not None
    appliances = [
        _appliance(specs.get(n), n, records.get(n) or ApplianceRecord(name=n), steps.get(n, []), live) for n in names
    ]
    counts: dict[str, int] = {}
    for a in appliances:
        counts[a["state"]] = counts.get(a["state"], 0) + 1
    finished = info.finished
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "rollout_id": rollout_id,
        "fleet": inventory.name,
        "environment": inventory.environment,
        "inventory": str(inventory.path),
        "target": info.target,
        "outcome": str(outcome or info.outcome or "unfinished"),
        "started": iso(info.started),
        "finished": iso(finished),
        "seconds": round(finished - info.started, 3) if finished else None,
        "operator": info.operator,
        "options": {k: v for k, v in info.options.items() if not k.startswith("_")},
        "counts": counts,
        "batches": _batches(journal, rollout_id),
        "appliances": appliances,
        "operator_actions": actions,
        "needs_a_person": hand_work(rollout),
        "notes": [n for n in notes if n],
        "warnings": _warnings(journal, rollout_id),
        "notifications": notifications or {"sent": 0, "failed": 0, "failures": []},
    }
    redact = Redactor(a.password for a in inventory.appliances)
    return _clean(report, redact)  # type: ignore[no-any-return]


def _version_after(a: dict[str, Any]) -> str | None:
    between = a.get("version_unknown_between")
    return str(a["version_after"]) if a.get("version_after") else (" or ".join(between) + "?" if between else None)


def _clean(value: Any, redact: Redactor) -> Any:
    """Every string sanitised (no control sequence) and redacted (no secret), whatever its depth."""
    if isinstance(value, str):
        return redact(sanitize(value))
    if isinstance(value, dict):
        return {k: _clean(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, redact) for v in value]
    return value


def build_report(rollout: Rollout, outcome: str, *, notifier: Any = None) -> dict[str, Any]:
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
        rollout.settings,
        rollout=rollout,
        outcome=outcome,
        notes=notes,
        notifications=notifier.summary() if notifier is not None else None,
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
                    a["version_after"]
                    or (" or ".join(a["version_unknown_between"]) + "?" if a.get("version_unknown_between") else None),
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
            ["batch", "appliances", "started", "finished", "result"],
            [[b["index"], ", ".join(b["appliances"]), b["started"], b["finished"], b["summary"]] for b in batches],
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
        [a["name"], "unrecognized question (default taken)", f"{q.get('command', '')}: {q.get('question', '')}"]
        for a in report["appliances"]
        for q in a.get("unrecognized_questions") or []
    ]
    extra_rows += [
        [a["name"], f"bake: {a['bake'].get('verdict', '?')}", a["bake"].get("message", "")]
        for a in report["appliances"]
        if isinstance(a.get("bake"), dict)
    ]
    extra_rows += [
        [a["name"], f"guard wait ({g.get('outcome', '?')})", f"{g.get('since')} - {g.get('until')}: {g.get('reason')}"]
        for a in report["appliances"]
        for g in a.get("guard_waits") or []
    ]
    extra_rows += [
        [a["name"], "left by hand", a["left_by_hand"]] for a in report["appliances"] if a.get("left_by_hand")
    ]
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
        lines += [
            f"- {md(w['ts'])} {md(w['appliance'] or 'fleet')} {md(w['level'])}: {md(w['text'])}" for w in warnings
        ]
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
