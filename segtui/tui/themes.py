"""Themes are .tcss files shipped with the package (top-level `themes/` in the repo)."""

from __future__ import annotations

from pathlib import Path

THEMES = ("noc-dark", "noc-light", "high-contrast")
# Textual's colour theme each of ours builds on.
BASE_THEME = {"noc-dark": "textual-dark", "noc-light": "textual-light", "high-contrast": "textual-dark"}


def themes_dir() -> Path:
    """`segtui/themes` in an installed wheel, the repo's `themes/` in an editable install."""
    packaged = Path(__file__).resolve().parent.parent / "themes"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "themes"


def theme_paths() -> list[Path]:
    d = themes_dir()
    return [d / "base.tcss", *(d / f"{name}.tcss" for name in THEMES)]
