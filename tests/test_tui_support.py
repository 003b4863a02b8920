"""Helpers of the dashboard tests (no tests here): a static rollout, waiting on conditions, reading the screen."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import asyncssh

from segtui.asyncos.versions import Version
from segtui.inventory import load_inventory
from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.journal import Journal
from segtui.settings import load_settings
from segtui.tui.app import SegtuiApp

SIZE = (160, 45)


def make_static(tmp_path: Path, environment: str = "lab", fleet: str = "emea-prod", n: int = 4) -> Rollout:
    """A rollout over an inventory whose appliances are never contacted (nothing here starts it)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    (tmp_path / "known_hosts").write_text(f"esa.example.com {key}")
    rows = "".join(
        f'[[appliance]]\nname = "esa{i:02d}"\nhost = "esa{i:02d}.example.com"\ngroup = "dc{i % 2 + 1}"\n'
        for i in range(1, n + 1)
    )
    inv = tmp_path / "inventory.toml"
    name = fleet.replace("\\", "\\\\").replace('"', '\\"')
    inv.write_text(
        f'[fleet]\nname = "{name}"\nenvironment = "{environment}"\n'
        f'update_server = "http://updates.example.com"\n[defaults]\npassword_env = "SEGTUI_PASSWORD"\n{rows}'
    )
    inventory = load_inventory(inv)
    settings = load_settings().model_copy(update={"state_dir": tmp_path / "state"})
    journal = Journal(settings.state_dir / "journal.sqlite")
    rollout = Rollout(inventory, settings, Version.parse("16.0.0-123"), journal, RolloutOptions())
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
