"""Regenerate the README's screenshots from the real app against a simulated fleet, mid-rollout.

    python screenshots/make_screenshots.py [OUTDIR]

Nothing is staged: a real simulated fleet on loopback, a real rollout, the real dashboard.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from segtui.asyncos.versions import Version
from segtui.inventory import load_inventory
from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.journal import Journal
from segtui.settings import load_settings
from segtui.sim.fleet import SimFleet
from segtui.sim.model import Durations
from segtui.tui.app import SegtuiApp

SIZE = (170, 46)


async def capture(
    outdir: Path, appliances: int = 10, password: str | None = None, work: Path | None = None
) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    work = work or Path(tempfile.mkdtemp(prefix="segtui-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    scale = 0.004
    fleet = SimFleet(
        appliances, time_scale=scale, workdir=work, password=password, durations=Durations(reboot=(900, 1200))
    )
    os.environ.setdefault(fleet.password_env, fleet.password)
    await fleet.start()
    shots: list[Path] = []
    try:
        inventory = load_inventory(fleet.inventory_path)
        settings = load_settings().scaled(scale).model_copy(update={"state_dir": work / "state"})
        journal = Journal(settings.state_dir / "journal.sqlite")
        rollout = Rollout(
            inventory, settings, Version.parse("16.0.0-123"), journal, RolloutOptions(batch="1,50%", max_unavailable=3)
        )
        rollout.begin()
        app = SegtuiApp(rollout)

        def save(name: str) -> None:
            path = outdir / f"{name}.svg"
            app.save_screenshot(str(path))
            shots.append(path)

        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.5)
            await pilot.press("g")
            await pilot.pause(0.2)
            save("confirm")
            await pilot.press("y")
            # mid-rollout: something draining or upgrading while another reboots
            busy = min(3, max(2, appliances // 2))
            end = time.monotonic() + 120
            while time.monotonic() < end:
                states = {r.state for r in app.model.in_flight()}
                if app.model.reboots and len(app.model.in_flight()) >= busy and states - {"reboot"}:
                    break
                await pilot.pause(0.1)
            await pilot.pause(0.6)
            save("dashboard")
            await pilot.press("l")  # the event log under the table
            await pilot.pause(0.3)
            save("eventlog")
            await pilot.press("l", "b")  # the batch view
            await pilot.pause(0.3)
            save("batches")
            await pilot.press("b")
            await pilot.press("question_mark")
            await pilot.pause(0.2)
            save("help")
            await pilot.press("escape")
            await pilot.press("enter")
            await pilot.pause(0.3)
            save("detail")
            await pilot.press("escape")
            rollout.abort()
            await pilot.pause(0.5)
            end = time.monotonic() + 120
            while app.outcome is None and time.monotonic() < end:
                await pilot.pause(0.2)
    finally:
        await fleet.stop()
    return shots


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
    for shot in asyncio.run(capture(target)):
        print(shot)
