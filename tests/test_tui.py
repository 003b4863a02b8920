"""The dashboard: Pilot against the simulated fleet, snapshots, coalesced repaint, and a real tmux terminal."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import asyncssh
import pytest

from segtui.asyncos.versions import Version
from segtui.inventory import load_inventory
from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.events import (
    ApplianceStateChanged,
    BatchFinished,
    BatchStarted,
    ListenersChanged,
    Note,
    RebootProbed,
    State,
    Step,
    StepStarted,
    UpgradeProgressed,
    WorkQueueDepth,
)
from segtui.rollout.journal import Journal
from segtui.settings import load_settings
from segtui.tui.app import SegtuiApp
from segtui.tui.screens import ConfirmScreen, HelpScreen, TypeNameScreen
from segtui.tui.widgets import FleetTable
from tests.conftest import TEST_PASSWORD, make_rollout, start_fleet
from tests.test_tui_support import drawn, until
from tests.tmux import TmuxSession

SIZE = (160, 45)
T0 = 1_795_000_000.0


async def wait_until(pilot, cond, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    await until(pilot, cond, timeout)


def text_of(widget: object) -> str:
    """The plain text a widget draws now (its lines as they reach the terminal)."""
    return drawn(widget)


def table_cell(app: SegtuiApp, name: str, column: str) -> str:
    """The cell as drawn on screen (through the strip cache): a stale row reads stale."""
    return app.query_one(FleetTable).drawn_cells(name)[column]


async def test_g_y_runs_the_rollout_with_live_panels(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 4, clusters=False)
    try:
        rollout = make_rollout(
            fleet, tmp_path, exit_on_pause=False, options=RolloutOptions(max_unavailable=2, batch="2")
        )
        app = SegtuiApp(rollout)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert rollout.state.value == "ready"
            table = app.query_one(FleetTable)
            assert table.shown == ["esa01", "esa02", "esa03", "esa04"] and table.cursor_row == 0
            await pilot.press("g")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_until(
                pilot,
                lambda: any(stage in text_of(app.query_one("#reboots")) for stage in ("TCP", "SSH", "CLI", "VERSION")),
            )
            progress = text_of(app.query_one("#progress"))
            assert "batch 1" in progress
            await wait_until(pilot, lambda: app.outcome is not None, 120)
            assert app.outcome == "completed"
            names = ("esa01", "esa02", "esa03", "esa04")
            await wait_until(pilot, lambda: all(table_cell(app, n, "State") == "done" for n in names), 10)
            for name in names:
                assert table_cell(app, name, "Listeners") == "active"
                assert table_cell(app, name, "Progress").endswith("100%")
                assert table_cell(app, name, "Last message").startswith("upgraded ")
            await wait_until(pilot, lambda: "[done]" in text_of(app.query_one("#header")), 10)
            assert "done 4" in text_of(app.query_one("#header"))
            # the drain was shown live: depths above zero, then zero, per appliance
            for row in app.model.rows.values():
                assert max(row.depth_history) > 0 and 0 in row.depth_history
    finally:
        await fleet.stop()


async def test_suspend_and_resume_listeners_from_the_keyboard(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 3, clusters=False)
    try:
        rollout = make_rollout(fleet, tmp_path, exit_on_pause=False)
        app = SegtuiApp(rollout)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("down")  # esa02
            await pilot.press("s")
            assert isinstance(app.screen, ConfirmScreen) and "esa02" in app.screen.question
            await pilot.press("y")
            await wait_until(pilot, lambda: table_cell(app, "esa02", "Listeners") == "suspended", 10)
            assert fleet.nodes["esa02"].appliance.suspended
            await pilot.press("r", "y")
            await wait_until(pilot, lambda: table_cell(app, "esa02", "Listeners") == "active", 10)
            assert not fleet.nodes["esa02"].appliance.suspended
            # marks: space on two rows, then suspend both
            await pilot.press("up", "space", "space")
            assert app.query_one(FleetTable).marks == {"esa01", "esa02"}
            await pilot.press("s")
            assert "esa01, esa02" in app.screen.question
            await pilot.press("n")
            assert not fleet.nodes["esa01"].appliance.suspended
            assert rollout.state.value == "ready"  # nothing started
    finally:
        await fleet.stop()


def static_rollout(tmp_path: Path, environment: str = "lab", n: int = 8) -> Rollout:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    (tmp_path / "known_hosts").write_text(f"esa.example.com {key}")
    rows = "".join(
        f'[[appliance]]\nname = "esa{i:02d}"\nhost = "esa{i:02d}.example.com"\ngroup = "dc{i % 2 + 1}"\n'
        + ('cluster = "mailcluster"\n' if i > n - 2 else "")
        for i in range(1, n + 1)
    )
    inv = tmp_path / "inventory.toml"
    inv.write_text(
        f'[fleet]\nname = "emea-prod"\nenvironment = "{environment}"\n'
        f'update_server = "http://updates.example.com"\n[defaults]\npassword_env = "SEGTUI_PASSWORD"\n'
        f"{rows}"
    )
    inventory = load_inventory(inv)
    settings = load_settings().model_copy(update={"state_dir": tmp_path / "state"})
    journal = Journal(settings.state_dir / "journal.sqlite")
    rollout = Rollout(inventory, settings, Version.parse("16.0.0-123"), journal, RolloutOptions())
    rollout.begin()
    return rollout


async def test_readonly_hides_and_refuses_changes(tmp_path: Path) -> None:
    rollout = static_rollout(tmp_path)
    app = SegtuiApp(rollout, readonly=True, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g", "s", "a", "x")
        assert not isinstance(app.screen, ConfirmScreen)
        assert rollout.state.value == "ready"
        footer_keys = {key for key, b in app.active_bindings.items() if b.binding.show and b.enabled}
        assert "g" not in footer_keys and "s" not in footer_keys and "question_mark" in footer_keys
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)


async def test_production_fleet_wide_actions_need_the_fleet_name(tmp_path: Path) -> None:
    rollout = static_rollout(tmp_path, "production")
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        header = text_of(app.query_one("#header"))
        assert "PRODUCTION" in header
        await pilot.press("g")
        assert isinstance(app.screen, TypeNameScreen)
        await pilot.press("y", "enter")  # 'y' is not the fleet's name
        await wait_until(pilot, lambda: not isinstance(app.screen, TypeNameScreen), 10)
        assert rollout.state.value == "ready"
        await pilot.press("g")
        await pilot.press(*"emea-prod", "enter")
        await wait_until(pilot, lambda: rollout.state.value == "running", 10)


async def test_filter_sort_detail_and_quit_asks(tmp_path: Path) -> None:
    rollout = static_rollout(tmp_path)
    rollout.journal.command("esa03", "workqueue status", "Status: Operational\nMessages: 12\n")
    rollout.journal.step_finished(rollout.journal.step_started("esa03", "precheck"), True)
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(FleetTable)
        await pilot.press("slash", *"esa03")
        await wait_until(pilot, lambda: table.shown == ["esa03"], 10)
        assert "1 of 8 match" in text_of(app.query_one("#status"))
        await pilot.press("enter")  # keep the filter, back to the table
        await pilot.press("enter")  # detail
        await wait_until(pilot, lambda: type(app.screen).__name__ == "ApplianceDetailScreen", 10)
        await pilot.press("escape")
        await pilot.press("escape")  # clears the filter
        await wait_until(pilot, lambda: len(table.shown) == 8, 10)
        await pilot.press("o")  # sort by group
        assert table.sort_key == "group" and table.shown[0] == "esa02"
        assert "Group▲" in table.render_line(0).text  # the sort is marked on screen
        await pilot.press("O")
        assert table.shown[0] == "esa07" and "Group▼" in table.render_line(0).text
        rollout.start()
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen) and "segtui resume" in app.screen.question
        await pilot.press("y")
    # Quitting a running rollout interrupts it: it is not `paused` (nobody paused it); resume continues it.
    assert app.return_value == "interrupted"


async def test_quitting_a_paused_rollout_leaves_it_paused(tmp_path: Path) -> None:
    rollout = static_rollout(tmp_path)
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        rollout.start()
        rollout.pause()
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
    assert app.return_value == "paused"


async def test_repaint_is_coalesced_whatever_the_event_rate(tmp_path: Path) -> None:
    rollout = static_rollout(tmp_path, n=200)
    app = SegtuiApp(rollout, run_rollout=False, repaint_hz=4)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(FleetTable)
        calls = {"repaint": 0, "render_line": 0}
        original_repaint, original_render = table.repaint, table.render_line

        def counting_repaint(dirty: set[str]) -> None:
            calls["repaint"] += 1
            original_repaint(dirty)

        def counting_render(y: int):  # type: ignore[no-untyped-def]
            calls["render_line"] += 1
            return original_render(y)

        table.repaint = counting_repaint  # type: ignore[method-assign]
        table.render_line = counting_render  # type: ignore[method-assign]
        start = time.monotonic()
        events = 0
        # a fixed number of events whatever the machine's load; the loop yields so the timer can fire
        while events < 8000 or time.monotonic() - start < 1.0:
            for i in range(1, 201):
                rollout._emit(WorkQueueDepth(appliance=f"esa{i:02d}" if i < 100 else f"esa{i}", depth=i, draining=True))
                events += 1
            await asyncio.sleep(0)
        await until(pilot, lambda: not app.model.dirty)  # the last events are painted
        elapsed = time.monotonic() - start
        # one repaint per timer tick, not per event
        assert calls["repaint"] <= elapsed * 4 + 3, calls
        # and each repaint draws at most the lines on screen
        assert calls["render_line"] <= (calls["repaint"] + 3) * table.size.height, calls


# --- snapshots (sync functions, as pytest-textual-snapshot requires) ------------------------------


def _busy_app(tmp_path: Path) -> SegtuiApp:
    rollout = static_rollout(tmp_path)
    rollout.started_at = T0
    rollout.state = rollout.state.RUNNING
    app = SegtuiApp(rollout, run_rollout=False, clock=lambda: T0 + 754)

    def feed() -> None:
        e = rollout._emit
        e(BatchStarted(index=1, total=4, appliances=("esa05", "esa06"), ts=T0))
        for name, state in (("esa05", State.DONE), ("esa06", State.FAILED)):
            rec = rollout.records[name]
            rec.version_before = "15.0.0-104"
            rec.current = "16.0.0-123" if state == State.DONE else "15.0.0-104"
            rec.state, rec.started, rec.finished = state, T0, T0 + 372
            e(StepStarted(appliance=name, step=Step.PRECHECK, ts=T0))
            e(
                ApplianceStateChanged(
                    appliance=name,
                    state=state,
                    version=rec.current,
                    error="drain exceeded its deadline of 1800 s" if state == State.FAILED else None,
                    ts=T0 + 372,
                )
            )
        e(BatchFinished(index=1, failures=1, ts=T0 + 372))
        e(Note(text="operator: pause, then unpause with --max-fail 1", ts=T0 + 380))
        e(BatchStarted(index=2, total=4, appliances=("esa01", "esa02", "esa03", "esa04"), ts=T0 + 400))
        e(StepStarted(appliance="esa01", step=Step.DRAIN, ts=T0 + 10))
        e(ListenersChanged(appliance="esa01", listeners="suspended", ts=T0 + 11))
        for d in (900, 700, 420, 260, 90, 12):
            e(WorkQueueDepth(appliance="esa01", depth=d, draining=True, ts=T0 + 750))
        e(UpgradeProgressed(appliance="esa01", phase="drain", percent=28, ts=T0 + 20))
        e(StepStarted(appliance="esa02", step=Step.UPGRADE, ts=T0 + 10))
        e(
            UpgradeProgressed(
                appliance="esa02", phase="install", percent=61, line="Installing application...", ts=T0 + 30
            )
        )
        e(StepStarted(appliance="esa03", step=Step.REBOOT, ts=T0 + 10))
        e(ListenersChanged(appliance="esa03", listeners="suspended", ts=T0 + 11))
        e(UpgradeProgressed(appliance="esa03", phase="reboot", percent=80, ts=T0 + 30))
        e(
            RebootProbed(
                appliance="esa03",
                stage="ssh",
                attempt=7,
                since=T0 + 500,
                deadline=T0 + 2300,
                error="connection refused",
                ts=T0 + 600,
            )
        )
        for i, name in enumerate(app.model.rows):
            for d in (300 + 40 * i, 320 + 30 * i, 280 + 50 * i):
                if name not in ("esa01", "esa05", "esa06"):
                    e(WorkQueueDepth(appliance=name, depth=d, draining=False, ts=T0 + 750))
        for v in (5000, 5200, 4800, 3900, 3100, 2600):
            app.model.fleet_depth.append(v)

    app.call_later(feed)
    return frozen(app)


def frozen(app: SegtuiApp) -> SegtuiApp:
    """The once-a-second sampling would add a point to the fleet's sparkline whenever a snapshot takes over a
    second: frozen, like the clock."""
    app._tick = lambda: None  # type: ignore[method-assign]
    return app


def test_snapshot_ready(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = frozen(SegtuiApp(static_rollout(tmp_path), run_rollout=False, clock=lambda: T0))
    assert snap_compare(app, terminal_size=SIZE, run_before=_quiet)


def test_snapshot_mid_rollout(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_busy_app(tmp_path), terminal_size=SIZE, run_before=_settle)


def test_snapshot_help(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = frozen(SegtuiApp(static_rollout(tmp_path), run_rollout=False, clock=lambda: T0))
    assert snap_compare(app, terminal_size=SIZE, press=["question_mark"], run_before=_quiet)


def test_snapshot_confirm_production(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = frozen(SegtuiApp(static_rollout(tmp_path, "production"), run_rollout=False, clock=lambda: T0))
    assert snap_compare(app, terminal_size=SIZE, press=["g"], run_before=_quiet)


def test_snapshot_high_contrast_theme(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_busy_app(tmp_path), terminal_size=SIZE, press=["t", "t"], run_before=_settle)


def test_snapshot_event_log(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_busy_app(tmp_path), terminal_size=SIZE, press=["l"], run_before=_settle)


def test_snapshot_batch_view(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_busy_app(tmp_path), terminal_size=SIZE, press=["b"], run_before=_settle)


def test_snapshot_narrow_100x30(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert snap_compare(_busy_app(tmp_path), terminal_size=(100, 30), run_before=_settle)


def test_snapshot_readonly_badge(snap_compare, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = frozen(SegtuiApp(static_rollout(tmp_path, "production"), readonly=True, run_rollout=False, clock=lambda: T0))
    assert snap_compare(app, terminal_size=SIZE, run_before=_quiet)


async def _quiet(pilot) -> None:  # type: ignore[no-untyped-def]
    """A static app: its first paint done, the footer's keys settled, nothing scheduled."""
    app = pilot.app
    await until(pilot, lambda: app._applies != ())
    await _focused_and_painted(pilot)


async def _focused_and_painted(pilot) -> None:  # type: ignore[no-untyped-def]
    """The table has the focus (its cursor row is drawn focused) and every line is drawn afresh."""
    app = pilot.app
    table = app.query_one(FleetTable)
    await until(pilot, lambda: app.focused is table or app.screen is not app.screen_stack[0])
    app.repaint()
    table._cache.clear()
    table.refresh()
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


async def _settle(pilot) -> None:  # type: ignore[no-untyped-def]
    """Wait for the feed (a call_later) to land, then paint it: conditions, not time."""
    app = pilot.app
    await until(pilot, lambda: app.model.events_seen > 0)
    await _focused_and_painted(pilot)


# --- a real terminal ------------------------------------------------------------------------------


@pytest.mark.needs("tmux")
def test_demo_in_a_real_terminal_under_tmux(tmp_path: Path) -> None:
    cmd = (
        f"cd {tmp_path} && SEGTUI_PASSWORD='{TEST_PASSWORD}' {sys.executable} -m segtui demo --appliances 4 "
        f"--time-scale 0.002 --max-unavailable 2 --report {tmp_path / 'report.json'}; echo EXIT=$?; sleep 30"
    )
    term = TmuxSession("segtui-demo", cmd, 170, 45)
    try:
        term.wait_for("[ready]")
        s = term.wait_for("Reboot polling")  # the panels, once the terminal's width (170) has reached the app
        assert "LAB · sim-lab" in s and "esa01" in s and "esa04" in s and "Reboot polling" in s
        term.keys("g")
        term.wait_for("Start the rollout of 4 appliances")
        term.keys("y")
        term.wait_for("[running]", 20)
        term.wait_for("[done]", 120)
        s = term.wait_for("done 4", 10)
        (tmp_path / "screen.txt").write_text(s)
        term.keys("q")
        s = term.wait_for("EXIT=", 20)
        assert "EXIT=0" in s and "outcome: completed" in s
    finally:
        term.kill()


async def test_image_column_shows_staged_downloading_and_not_staged(tmp_path: Path) -> None:
    from segtui.rollout.events import StagingChanged

    rollout = static_rollout(tmp_path)
    rollout.journal.set_staged(str(rollout.inventory.path), "esa01", "staged", "16.0.0-123")
    again = Rollout(rollout.inventory, rollout.settings, rollout.target, rollout.journal, RolloutOptions())
    again.begin()
    app = SegtuiApp(again, run_rollout=False)
    async with app.run_test(size=(220, 45)) as pilot:
        assert table_cell(app, "esa01", "Image") == "staged"
        assert table_cell(app, "esa02", "Image") == "-"
        again._emit(StagingChanged(appliance="esa02", status="downloading", version="16.0.0-123", percent=40))
        # read from the screen: without the repaint the cached strip would still say "-"
        await wait_until(pilot, lambda: table_cell(app, "esa02", "Image") == "dl 40%", 10)
