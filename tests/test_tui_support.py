"""Helpers of the dashboard tests (no tests here): a static rollout, waiting on conditions, reading the screen."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from segtui.rollout.engine import Rollout
from segtui.settings import load_settings
from segtui.tui.app import SegtuiApp
from tests.conftest import offline_rollout

SIZE = (160, 45)


def make_static(tmp_path: Path, environment: str = "lab", fleet: str = "emea-prod", n: int = 4) -> Rollout:
    """A begun rollout over an inventory whose appliances are never contacted (nothing here starts it), with the
    settings' real (unscaled) durations."""
    settings = load_settings().model_copy(update={"state_dir": tmp_path / "state"})
    rollout = offline_rollout(tmp_path, n, settings=settings, environment=environment, fleet=fleet)
    rollout.begin()
    return rollout


async def until(pilot: Any, cond: Any, timeout: float = 30.0) -> None:
    """Wait on a condition (never on time): one message-queue round per check."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await pilot.pause()


def notes(app: SegtuiApp) -> list[str]:
    return [n.message for n in app._notifications]


def actions_of(rollout: Rollout) -> list[str]:
    rows = rollout.journal.db.execute("SELECT action FROM actions WHERE rollout_id = ?", (rollout.journal.rollout_id,))
    return [a for (a,) in rows]


def screen_text(app: SegtuiApp) -> str:
    """The characters on screen now, as the compositor draws them (strip caches included): a stale row shows."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def drawn(widget: Any) -> str:
    """The plain text a widget draws, line by line from its render_line (what reaches the terminal)."""
    return "\n".join(widget.render_line(y).text for y in range(widget.size.height))
