"""Text for the terminal (beside `headless.py`): error lines, tables of `stage` and `history`, the summary of
what needs a person. Everything from outside (appliances, journal) is sanitised before it is printed."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from segtui.textsafe import one_line


def err(text: str) -> None:
    print(f"segtui: {one_line(text, 2000)}", file=sys.stderr)


def say(text: str) -> None:
    """Print a line to stdout; a reader that went away (`| head`) is not an error (the caller's exit code stands)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass


def iso(ts: float | None) -> str:
    """ISO 8601 with the local zone: 2026-11-30T03:12:45+01:00."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def unexpected(exc: BaseException, state: Mapping[str, Path]) -> int:
    """The last resort: one line naming the error and where its details went, never a traceback; exit 1."""
    import tempfile

    journal = state.get("journal")
    folder = state.get("state_dir")
    if folder is None or not folder.is_dir():
        folder = Path(tempfile.gettempdir())
    log = folder / f"segtui-error-{time.strftime('%Y%m%dT%H%M%S')}.log"
    try:
        import os

        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(traceback.format_exception(exc)))
        where = f"details in {log}"
    except OSError:
        where = "no log could be written"
    if journal is not None:
        where += f"; the journal is {journal}"
    err(f"unexpected error: {type(exc).__name__}: {exc} ({where})")
    return 1


def stage_table(results: Iterable[Any]) -> list[str]:
    rows = list(results)
    lines = [""] + [f"{r.name:<12} {r.status:<15} {r.version or '-':<12} {one_line(r.note)}" for r in rows]
    staged = sum(1 for r in rows if r.status in ("staged", "already-staged"))
    lines.append(f"\n{staged} of {len(rows)} appliances hold the staged image; `segtui run` will INSTALL it")
    return lines


def history_table(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    lines = [f"{'id':>4}  {'started':<25} {'target':<12} {'outcome':<10} {'counts':<40} who"]
    for r in rows:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r["counts"].items())) or "-"
        lines.append(
            f"{r['id']:>4}  {iso(r['started']):<25} {one_line(str(r['target'])):<12} "
            f"{one_line(str(r['outcome'] or 'unfinished')):<10} {counts:<40} {one_line(r['who'] or '-')}"
        )
    return lines


def needs_a_person(items: Iterable[Mapping[str, str]]) -> list[str]:
    """The end-of-rollout summary: each appliance that needs a person, why, and the exact command."""
    items = list(items)
    if not items:
        return []
    lines = ["needs a person:"]
    for item in items:
        lines.append(f"  {one_line(item['appliance'])}: {one_line(item['why'])}")
        if item.get("command"):
            lines.append(f"      {one_line(item['command'])}")
    return lines
