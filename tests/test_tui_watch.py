"""`segtui watch`: the dashboard of a rollout another segtui drives, from the journal alone; and the bell."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from segtui.rollout.events import ApplianceStateChanged, RolloutState, State
from segtui.rollout.lock import InventoryLock
from segtui.tui.app import SegtuiApp
from segtui.tui.screens import ConfirmScreen, TypeNameScreen
from segtui.tui.watch import run_watch, watch_rollout
from segtui.tui.widgets import FleetTable
from tests.test_tui_support import SIZE, drawn, make_static, notes, screen_text, until
from tests.tmux import TmuxSession

WIDE = (240, 45)


def cells(app: SegtuiApp, name: str) -> dict[str, str]:
    return app.query_one(FleetTable).drawn_cells(name)


async def test_watch_follows_the_driver_changes_nothing_and_names_the_lock_holder(tmp_path: Path) -> None:
    driver = make_static(tmp_path, "production")  # the other segtui: its journal, its lock
    lock = InventoryLock(driver.settings.state_dir, driver.inventory.path, "run")
    lock.acquire()
    try:
        journal_path = driver.journal.path
        rollout, feed = watch_rollout(journal_path, driver.inventory, driver.settings)
        app = SegtuiApp(rollout, watching=feed.holder(), feed=feed)
        async with app.run_test(size=WIDE) as pilot:
            header = app.query_one("#header")
            await until(pilot, lambda: "driven by" in drawn(header) and ", run) since" in drawn(header))
            assert "READ-ONLY" in drawn(header)
            # the driver starts and upgrades esa01; the watcher sees it from the journal
            driver.start()
            rec = driver.records["esa01"]
            rec.state, rec.step, rec.started = State.RUNNING, "drain", 1.0
            driver.journal.save(rec)
            await until(pilot, lambda: cells(app, "esa01")["State"] == "drain")
            await until(pilot, lambda: "[running]" in drawn(header))
            rec.state, rec.step, rec.current, rec.version_before = State.DONE, None, "16.0.0-123", "15.0.0-104"
            rec.finished = 61.0
            driver.journal.save(rec)
            await until(pilot, lambda: cells(app, "esa01")["State"] == "done")
            assert cells(app, "esa01")["Last message"].startswith("upgraded 15.0.0-104 -> 16.0.0-123")
            # changing keys do nothing but say why; the driver's journal is untouched by the watcher
            before = driver.journal.db.execute("SELECT COUNT(*) FROM actions").fetchone()
            for key in ("g", "p", "a", "x", "R", "s"):
                await pilot.press(key)
                assert not isinstance(app.screen, (ConfirmScreen, TypeNameScreen))
            await until(pilot, lambda: sum("watching" in n for n in notes(app)) >= 6)
            assert driver.journal.db.execute("SELECT COUNT(*) FROM actions").fetchone() == before
            # the detail view reads steps and transcript from the journal
            driver.journal.command("esa01", "version", "Version: 16.0.0-123\n")
            await pilot.press("enter")
            await until(pilot, lambda: "Version: 16.0.0-123" in screen_text(app))
            await pilot.press("escape")
            # the driver ends (or crashes): the lock is free, the watcher says so and keeps going
            lock.release()
            await until(pilot, lambda: "no segtui holds the lock" in drawn(header))
            driver.journal.finish("completed")
            await until(pilot, lambda: "[" in drawn(header) and rollout.state == RolloutState.DONE)
            # the event log is the driver's own, read from the journal: who started it
            assert any(e.kind == "action" and ": start" in e.text for e in app.model.log)
    finally:
        lock.release()


async def test_watch_with_nothing_to_watch_is_one_line(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    driver = make_static(tmp_path)
    assert await run_watch(tmp_path / "nowhere" / "journal.sqlite", driver.inventory) == 2
    assert capsys.readouterr().err.count("\n") == 1


async def test_bell_rings_on_needs_attention(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    app = SegtuiApp(rollout, run_rollout=False)
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        rollout._emit(ApplianceStateChanged(appliance="esa01", state=State.FAILED, error="x"))
        await until(pilot, lambda: cells(app, "esa01")["State"] == "failed")
        assert rings == []
        rollout._emit(ApplianceStateChanged(appliance="esa02", state=State.NEEDS_ATTENTION, error="host key changed"))
        await until(pilot, lambda: rings == [1])
    quiet = SegtuiApp(make_static(tmp_path / "q"), run_rollout=False, bell=False)
    quiet.bell = lambda: rings.append(2)  # type: ignore[method-assign]
    async with quiet.run_test(size=SIZE) as pilot:
        quiet.rollout._emit(ApplianceStateChanged(appliance="esa02", state=State.NEEDS_ATTENTION, error="x"))
        await until(pilot, lambda: quiet.model.bell_pending == 0 and not quiet.model.dirty)
        assert cells(quiet, "esa02")["State"] == "needs-attention"
        assert rings == [1]


@pytest.mark.needs("tmux")
def test_watch_in_a_real_terminal_at_100x30(tmp_path: Path) -> None:
    """A second process drives (writes the journal); `run_watch` in tmux at 100x30 follows it live."""
    driver = make_static(tmp_path)
    script = tmp_path / "watch.py"
    script.write_text(
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from segtui.inventory import load_inventory\n"
        "from segtui.settings import load_settings\n"
        "from segtui.tui.watch import run_watch\n"
        f"inv = load_inventory(Path({str(driver.inventory.path)!r}))\n"
        f"s = load_settings().model_copy(update={{'state_dir': Path({str(driver.settings.state_dir)!r})}})\n"
        f"rc = asyncio.run(run_watch(Path({str(driver.journal.path)!r}), inv, s))\n"
        "print('EXIT', rc)\n"
    )
    term = TmuxSession(
        "segtui-watch", f"cd {tmp_path} && SEGTUI_PASSWORD=x {sys.executable} {script}; sleep 30", 100, 30
    )
    try:
        s = term.wait_for("READ-ONLY", 30)
        assert "State" in s and "esa01" in s
        driver.start()
        rec = driver.records["esa02"]
        rec.state, rec.current, rec.version_before, rec.started, rec.finished = (
            State.DONE,
            "16.0.0-123",
            "15.0.0-104",
            1.0,
            61.0,
        )
        driver.journal.save(rec)
        term.wait_for("done", 20)
        term.keys("g")
        term.wait_for("watching: this dashboard only shows", 10)
        term.keys("q")
        term.wait_for("EXIT 0", 20)
    finally:
        term.kill()


_ = asyncio
