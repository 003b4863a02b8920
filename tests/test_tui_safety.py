"""The dashboard's controls are as safe as the procedure: one gate whatever the path, read-only that changes
nothing, keys that say why not before asking, and appliance/inventory text that is never markup."""

from __future__ import annotations

from pathlib import Path

from segtui.rollout.events import ApplianceStateChanged, RolloutState, State, Step, StepStarted
from segtui.tui.app import SegtuiApp, make_dashboard
from segtui.tui.screens import BudgetScreen, ConfirmScreen, HelpScreen, TypeNameScreen
from segtui.tui.widgets import FleetTable
from tests.test_tui_support import SIZE, actions_of, drawn, make_static, notes, screen_text, until


async def test_readonly_changes_nothing_and_says_why(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    app = SegtuiApp(rollout, readonly=True, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        for key in ("g", "s", "a", "x", "R", "r", "p"):
            await pilot.press(key)
            assert not isinstance(app.screen, (ConfirmScreen, TypeNameScreen)), key
        await until(pilot, lambda: len(notes(app)) >= 7)
        assert all("read-only" in n for n in notes(app)), notes(app)
        assert rollout.state == RolloutState.READY and actions_of(rollout) == ["created"]
        # the badge, drawn: in the header and in the status line
        assert "READ-ONLY" in drawn(app.query_one("#header"))
        footer_keys = {k for k, b in app.active_bindings.items() if b.binding.show and b.enabled}
        assert footer_keys.isdisjoint({"g", "s", "a", "x", "R", "r", "p"}) and "question_mark" in footer_keys
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        # the help is drawn (not an empty box), without the changing keys, saying why
        await until(pilot, lambda: "every key" in screen_text(app))
        shown = screen_text(app)
        assert "read-only mode" in shown and "start the rollout" not in shown and "reverse the sort order" in shown


async def test_readonly_resume_does_not_start_the_interrupted_rollout(tmp_path: Path) -> None:
    rollout = make_static(tmp_path, "production")
    app = make_dashboard(rollout, readonly=True, autostart=True)
    app.survey = False  # the appliances of this inventory do not exist
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert rollout.state == RolloutState.READY
        assert app._rollout_worker is None  # nothing runs the rollout
        assert not isinstance(app.screen, TypeNameScreen)
        assert "start" not in actions_of(rollout)


async def test_resume_on_production_asks_for_the_fleet_name_before_anything_moves(tmp_path: Path) -> None:
    rollout = make_static(tmp_path, "production")
    app = make_dashboard(rollout, readonly=False, autostart=True)
    app.survey = False
    app.run_rollout = False
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, TypeNameScreen))
        assert rollout.state == RolloutState.READY
        await pilot.press(*"emea-prod", "enter")
        await until(pilot, lambda: rollout.state.value == "running")


async def test_unpause_on_production_needs_the_name_and_a_spent_budget_a_new_value(tmp_path: Path) -> None:
    rollout = make_static(tmp_path, "production")
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        rollout.start()
        rollout.pause()
        await pilot.press("p")
        assert isinstance(app.screen, TypeNameScreen), "p on production asks for the fleet's name like g"
        await pilot.press("escape")
        assert rollout.state == RolloutState.PAUSED
        # one appliance failed with a budget of 0: the budget is spent
        rec = rollout.records["esa01"]
        rec.state = State.FAILED
        rollout._emit(ApplianceStateChanged(appliance="esa01", state=State.FAILED, error="drain deadline"))
        rollout.pause_reason = "failure budget spent: 1 failed, 0 allowed"
        for key in ("p", "g"):
            await pilot.press(key)
            assert isinstance(app.screen, BudgetScreen), f"{key} from a spent budget asks for the new value"
            await pilot.press("escape")
            assert rollout.state == RolloutState.PAUSED
        await pilot.press("p", "2", "enter")
        assert isinstance(app.screen, TypeNameScreen) and "budget becomes 2" in app.screen.question
        await pilot.press(*"emea-prod", "enter")
        await until(pilot, lambda: rollout.state.value == "running")
        assert rollout.options.max_fail == "2"


async def test_per_appliance_keys_say_not_allowed_before_asking(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        rollout.start()
        await pilot.press("R")  # esa01 is pending: nothing to retry
        assert not isinstance(app.screen, ConfirmScreen)
        await until(pilot, lambda: any("retried" in n for n in notes(app)))
        rec = rollout.records["esa01"]
        rec.state = State.DONE
        rollout._emit(ApplianceStateChanged(appliance="esa01", state=State.DONE, version="16.0.0-123"))
        await pilot.press("x")
        assert not isinstance(app.screen, ConfirmScreen)
        await until(pilot, lambda: any("nothing to skip" in n for n in notes(app)))
        # a needs-attention appliance can be re-probed and given up on: both ask
        rec.state = State.NEEDS_ATTENTION
        rollout._emit(ApplianceStateChanged(appliance="esa01", state=State.NEEDS_ATTENTION, error="host key changed"))
        await pilot.press("R")
        assert isinstance(app.screen, ConfirmScreen) and "Re-probe esa01" in app.screen.question
        await pilot.press("n")
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen) and "Give up on esa01" in app.screen.question
        await pilot.press("n")
        # a hung reboot can be given up on: x asks, and says what it does
        rollout._emit(StepStarted(appliance="esa02", step=Step.REBOOT))
        await pilot.press("down", "x")
        assert isinstance(app.screen, ConfirmScreen) and "Give up on esa02's reboot" in app.screen.question
        await pilot.press("n")


async def test_palette_offers_our_actions_and_themes_and_quit_asks(tmp_path: Path) -> None:
    rollout = make_static(tmp_path, "production")
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Go / promote" in titles and "Quit" in titles
        assert {"Theme: noc-dark", "Theme: noc-light", "Theme: high-contrast"} <= set(titles)
        assert not {"Keys", "Screenshot", "Maximize", "Change theme"} & set(titles), titles
        rollout.start()
        quit_cmd = next(c for c in app.get_system_commands(app.screen) if c.title == "Quit")
        quit_cmd.callback()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen), "Quit from the palette asks like q"
        await pilot.press("n")
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ConfirmScreen), "ctrl+q asks like q"
        await pilot.press("n")
        # the palette's start goes through the same gate as `g`
        go = next(c for c in app.get_system_commands(app.screen) if c.title == "Pause / unpause")
        go.callback()
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        rollout.pause()
        go = next(c for c in app.get_system_commands(app.screen) if c.title == "Pause / unpause")
        go.callback()
        await pilot.pause()
        assert isinstance(app.screen, TypeNameScreen)


async def test_hostile_fleet_names_are_shown_and_typed_as_written(tmp_path: Path) -> None:
    for i, name in enumerate(("emea[/]", "emea [prod]", "[bold]x[/bold]")):
        rollout = make_static(tmp_path / str(i), "production", fleet=name)
        app = SegtuiApp(rollout, run_rollout=False)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("g")
            assert isinstance(app.screen, TypeNameScreen)
            shown = drawn(app.screen.query_one("#confirm-prompt"))
            assert f"({name})" in shown, shown
            await pilot.press(*name, "enter")
            await until(pilot, lambda r=rollout: r.state == RolloutState.RUNNING)
            assert name in drawn(app.query_one("#header"))


async def test_appliance_text_with_markup_never_crashes_a_notification(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)

    async def hostile(names: list[str], suspend: bool, who: str | None = None) -> dict[str, str]:
        return {n: "listener [/] IncomingMail: [bold]not suspended" for n in names}

    rollout.change_listeners = hostile  # type: ignore[method-assign]
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=(200, 45), notifications=True) as pilot:
        await pilot.press("s", "y")
        await until(pilot, lambda: any("[/]" in n for n in notes(app)))
        rollout._emit(ApplianceStateChanged(appliance="esa02", state=State.FAILED, error="listener [/] [red]gone"))
        await pilot.pause()
        app.repaint()
        await until(pilot, lambda: "listener [/] [red]gone" in app.query_one(FleetTable).drawn_line("esa02"))
        app.screen.query("Toast")  # the toasts are on screen, drawn
        await pilot.pause()
        assert app.is_running


def test_help_and_the_readme_table_come_from_one_table() -> None:
    from segtui.rollout.controls import ACTIONS
    from segtui.tui.actions import KEYS, markdown_table
    from segtui.tui.screens import help_text

    table = markdown_table()
    text = help_text(readonly=False, production=False).plain
    for key in KEYS:
        assert f"| `{key.shown}` | {key.description} |" in table
        assert key.description in text
    served = {a for key in KEYS for a in key.actions}
    assert served == set(ACTIONS), "every operator action has a key (and so a palette entry and a gate)"
