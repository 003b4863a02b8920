"""The README says what the program does: the key table is `?`'s table, every command, outcome and setting is
documented, `--help` stays fast."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from segtui.cli import build_parser
from segtui.rollout.events import Outcome
from segtui.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 4)
    return README[start : end if end != -1 else None]


def table(text: str) -> dict[str, str]:
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", text, re.MULTILINE)
    return dict(rows)


def test_key_table_is_the_help_table() -> None:
    """Each row: the key, its title (as the palette shows it) and its description (as `?` shows it)."""
    from segtui.tui.actions import KEYS

    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| (.*) \|$", section("The dashboard"), re.MULTILINE)
    readme = {key: (title, what) for key, title, what in rows}
    expected = {k.shown: (k.title, k.description) for k in KEYS}
    expected["ctrl+p"] = ("Command palette", "command palette: the same actions, the same questions")
    assert readme == expected


def test_every_command_is_documented() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:  # type: ignore[union-attr]
        assert f"segtui {name}" in README, name


def test_every_outcome_has_its_exit_code_in_the_readme() -> None:
    rows = re.findall(r"^\| (\d) \| `([a-z-]+)` \|", README, re.MULTILINE)
    documented = {outcome: int(code) for code, outcome in rows}
    assert documented == {o.value: o.exit_code for o in Outcome}


def test_every_setting_is_documented() -> None:
    settings = table(section("Settings"))
    for name, field in Settings.model_fields.items():
        nested = hasattr(field.annotation, "model_fields")
        keys = [k for k in settings if k == name or k.startswith(f"{name}.")]
        assert keys, f"setting {name}{'.*' if nested else ''} is not in the README"


def test_help_is_fast() -> None:
    best = min(_help_seconds() for _ in range(3))  # the best of three: the machine is shared
    assert best < 0.3, best


def _help_seconds() -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "segtui", "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "usage: segtui" in proc.stdout
    return time.perf_counter() - start
