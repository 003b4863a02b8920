"""A screen that never lies (issue 13): every check reads what is drawn, after the state it depends on changed."""

from __future__ import annotations

from pathlib import Path

from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.events import (
    ApplianceStateChanged,
    BatchFinished,
    BatchStarted,
    Note,
    RolloutState,
    State,
    Step,
    StepStarted,
    UpgradeProgressed,
    WorkQueueDepth,
)
from segtui.sim.model import vdotted
from segtui.tui.app import SegtuiApp
from segtui.tui.screens import ApplianceDetailScreen, ConfirmScreen, TypeNameScreen
from segtui.tui.widgets import EventLogPanel, FleetTable
from tests.conftest import make_rollout, start_fleet
from tests.test_tui_support import SIZE, drawn, make_static, screen_text, until

T0 = 1_795_000_000.0
WIDE = (240, 45)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def cells(app: SegtuiApp, name: str) -> dict[str, str]:
    return app.query_one(FleetTable).drawn_cells(name)


def finish(rollout: Rollout, name: str, state: State, *, error: str | None = None, ts: float = T0 + 372) -> None:
    rec = rollout.records[name]
    rec.state = state
    rec.version_before = "15.0.0-104"
    rec.current = "16.0.0-123" if state == State.DONE else "15.0.0-104"
    rec.error = error
    rec.started = rec.started or T0
    rec.finished = ts
    rollout._emit(ApplianceStateChanged(appliance=name, state=state, version=rec.current, error=error, ts=ts))


async def test_the_table_opens_on_the_fleet_as_it_is(tmp_path: Path) -> None:
    """Before `g`: the real version of every appliance (skipped too), its queue; unreachable ones say why."""
    fleet = await start_fleet(tmp_path, 3, clusters=False)
    try:
        await fleet.nodes["esa03"].stop()
        rollout = make_rollout(fleet, tmp_path, exit_on_pause=False)
        rollout.skip("esa02")
        app = SegtuiApp(rollout, run_rollout=False, survey=True)
        async with app.run_test(size=WIDE) as pilot:
            await until(pilot, lambda: cells(app, "esa01")["Version"] not in ("", "?→16.0.0-123"), 60)
            version = vdotted(fleet.nodes["esa01"].appliance.version)
            assert cells(app, "esa01")["Version"].startswith(version)
            await until(pilot, lambda: "?" not in cells(app, "esa02")["Version"], 60)
            assert cells(app, "esa02")["State"] == "skipped"
            await until(pilot, lambda: "unreachable" in cells(app, "esa03")["Last message"], 60)
            assert rollout.state == RolloutState.READY  # the survey changed nothing
    finally:
        await fleet.stop()


async def test_finished_rows_show_their_outcome_and_a_progress_that_matches(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    clock = Clock(T0 + 400)
    app = SegtuiApp(rollout, run_rollout=False, clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        for name in ("esa01", "esa02"):
            rollout._emit(StepStarted(appliance=name, step=Step.PRECHECK, ts=T0))
            rollout._emit(UpgradeProgressed(appliance=name, phase="reboot", percent=80, line="Rebooting the system..."))
        finish(rollout, "esa01", State.DONE)
        finish(rollout, "esa02", State.FAILED, error="verify: still on 15.0.0-104 after its restart")
        rollout.skip("esa03")
        await until(pilot, lambda: cells(app, "esa01")["State"] == "done")
        assert cells(app, "esa01")["Last message"] == "upgraded 15.0.0-104 -> 16.0.0-123 in 6m12s"
        assert cells(app, "esa01")["Progress"].endswith("100%")
        await until(pilot, lambda: cells(app, "esa02")["State"] == "failed")
        assert cells(app, "esa02")["Last message"].startswith("verify: still on 15.0.0-104")
        assert not cells(app, "esa02")["Progress"].endswith("100%")
        assert cells(app, "esa03")["Progress"] == "-" and cells(app, "esa03")["State"] == "skipped"
        await pilot.press("slash", *"reboot")
        await until(pilot, lambda: app.query_one(FleetTable).shown == [])  # no finished row still says so


async def test_after_resume_progress_follows_the_journal(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    for name, state in (("esa01", State.DONE), ("esa02", State.FAILED)):
        rec = rollout.records[name]
        rec.state, rec.current, rec.version_before, rec.error = state, "16.0.0-123", "15.0.0-104", None
        rec.started, rec.finished = T0, T0 + 60
        rollout.journal.save(rec)
    rec = rollout.records["esa03"]
    rec.state, rec.step, rec.started = State.RUNNING, Step.REBOOT.value, T0
    rollout.journal.save(rec)
    again = Rollout(rollout.inventory, rollout.settings, rollout.target, rollout.journal, RolloutOptions())
    again.attach(rollout.journal.rollout_id or 0)
    app = SegtuiApp(again, run_rollout=False, clock=Clock(T0 + 100))
    async with app.run_test(size=WIDE):
        assert cells(app, "esa01")["Progress"].endswith("100%")
        assert cells(app, "esa01")["Last message"] == "upgraded 15.0.0-104 -> 16.0.0-123 in 1m00s"
        assert cells(app, "esa03")["State"] == "reboot" and cells(app, "esa03")["Progress"].endswith("72%")


async def test_queue_figures_are_cleared_when_finished_and_marked_stale(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    clock = Clock()
    app = SegtuiApp(rollout, run_rollout=False, clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        rollout._emit(StepStarted(appliance="esa01", step=Step.DRAIN, ts=T0))
        rollout._emit(WorkQueueDepth(appliance="esa01", depth=350, draining=True, ts=T0))
        rollout._emit(StepStarted(appliance="esa02", step=Step.DRAIN, ts=T0))
        rollout._emit(WorkQueueDepth(appliance="esa02", depth=647, draining=True, ts=T0))
        await until(pilot, lambda: cells(app, "esa01")["Queue"] == "350")
        finish(rollout, "esa01", State.FAILED, error="drain exceeded its deadline")
        await until(pilot, lambda: cells(app, "esa01")["Queue"] == "")
        app._tick()
        await until(pilot, lambda: "fleet: 647 messages" in screen_text(app))
        clock.now = T0 + 300  # esa02 no longer polled for 5 minutes: its figure is old, not current
        app._tick()
        await until(pilot, lambda: cells(app, "esa02")["Queue"] == "647 5m")
        await until(pilot, lambda: "fleet: 0 messages" in screen_text(app))
        assert "draining: none" in screen_text(app)


async def test_elapsed_ticks_every_second_and_eta_stops_while_paused(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    clock = Clock()
    rollout.started_at = T0
    rollout.state = RolloutState.RUNNING
    app = SegtuiApp(rollout, run_rollout=False, clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        rollout._emit(StepStarted(appliance="esa01", step=Step.PRECHECK, ts=T0))
        rollout._emit(StepStarted(appliance="esa02", step=Step.PRECHECK, ts=T0))
        finish(rollout, "esa02", State.DONE, ts=T0 + 100)
        await until(pilot, lambda: not app.model.dirty and cells(app, "esa01")["Time"] == "0:00")
        clock.now = T0 + 42  # no event arrives: the second timer alone moves the clock on screen
        await until(pilot, lambda: cells(app, "esa01")["Time"] == "0:42", 5)
        clock.now = T0 + 120
        await until(
            pilot,
            lambda: "ETA " in drawn(app.query_one("#header")) and "ETA -" not in drawn(app.query_one("#header")),
            5,
        )
        rollout.pause()
        await until(pilot, lambda: "ETA paused" in drawn(app.query_one("#header")), 5)
        # a retried appliance's time starts again at its retry, not at its first start
        rollout._emit(StepStarted(appliance="esa03", step=Step.PRECHECK, ts=T0 + 10))
        finish(rollout, "esa03", State.FAILED, error="x", ts=T0 + 50)
        await until(pilot, lambda: cells(app, "esa03")["Time"] == "0:40", 5)
        rollout.retry("esa03")
        await until(pilot, lambda: cells(app, "esa03")["State"] == "pending", 5)
        assert cells(app, "esa03")["Time"] == "-"


async def test_counts_agree_start_dialog_header_and_footer(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        rollout.skip("esa04")
        await pilot.press("g")
        assert isinstance(app.screen, ConfirmScreen)
        assert app.screen.question.startswith("Start the rollout of 3 appliances")
        await pilot.press("n")
        rollout.start()
        for name in ("esa01", "esa02"):
            finish(rollout, name, State.DONE)
        finish(rollout, "esa03", State.FAILED, error="boom")
        rollout._set_state(RolloutState.DONE, "failed")
        await until(pilot, lambda: "[finished with failures]" in drawn(app.query_one("#header")))
        footer = {k for k, b in app.active_bindings.items() if b.binding.show and b.enabled}
        assert "g" not in footer and "p" not in footer and "a" not in footer  # nothing to start after the end
        assert "question_mark" in footer


async def test_detail_view_updates_while_open_and_search_jumps(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    j = rollout.journal
    for i in range(60):
        j.command("esa02", f"status {i}", "System status: Online\n")
    j.command("esa02", "upgrade", "Installing...\nRebooting the system...\n")
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "enter")
        assert isinstance(app.screen, ApplianceDetailScreen)
        detail = app.screen
        assert "no steps yet" in drawn(detail.query_one("#timeline-text"))
        j.step_started("esa02", "precheck")
        rollout.records["esa02"].backups = [{"kind": "config", "path": "/b/esa02.xml", "sha256": "ab12cd"}]
        await until(pilot, lambda: "precheck" in drawn(detail.query_one("#timeline-text")), 5)
        assert "sha256 ab12cd" in drawn(detail.query_one("#detail-info"))
        assert "esa02.example.com:22" in drawn(detail.query_one("#detail-info"))
        transcript = detail.query_one("#transcript")
        await until(pilot, lambda: "Rebooting the system" in drawn(transcript), 5)  # the newest at the end
        await pilot.press("slash", *"status 17")
        await until(pilot, lambda: "> status 17" in drawn(transcript), 5)  # jumped to the first match
        assert "Rebooting the system" not in drawn(transcript)


async def test_confirmations_wrap_and_leave_the_table_visible(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=(100, 30)) as pilot:
        rollout.start()
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        shown = " ".join(screen_text(app).replace("█", " ").split())
        assert "`segtui resume --inventory FILE` continues it." in shown
        box = app.screen.query_one("#confirm-box")
        assert box.outer_size.height <= 8 and box.outer_size.width < 100  # sized to its text


async def test_narrow_terminal_keeps_the_state_column(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=(100, 30)) as pilot:
        header = app.query_one(FleetTable).render_line(0).text
        assert "State" in header and "Name" in header and "Version" in header
        assert not app.query_one("#panels").display  # folded away: `w` shows them under the table
        await pilot.press("w")
        await until(pilot, lambda: app.query_one("#panels").display)
        assert app.query_one("#panels").region.y > app.query_one(FleetTable).region.y
        assert "State" in app.query_one(FleetTable).render_line(0).text


async def test_event_log_and_batch_view(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        rollout.start()
        rollout._emit(BatchStarted(index=1, total=2, appliances=("esa01", "esa02")))
        finish(rollout, "esa01", State.DONE)
        finish(rollout, "esa02", State.FAILED, error="listener [/] gone")
        rollout._emit(BatchFinished(index=1, failures=1))
        rollout._emit(Note(text="a note about esa03", appliance="esa03"))
        rollout.pause()
        await pilot.press("l")
        log = app.query_one(EventLogPanel)
        await until(pilot, lambda: "batch 1: 1/2 done, 1 failed" in drawn(log))
        text = drawn(log)
        assert "paused" in text and "listener [/] gone" in text and "started" in text
        await pilot.press("b")
        batches = app.query_one("#batches")
        await until(pilot, lambda: "batch 1: 1/2 done, 1 failed" in drawn(batches))
        assert "esa01" in drawn(batches) and "planned" in drawn(batches)
        # the log follows the filter
        await pilot.press("slash", *"esa03", "enter")
        await until(pilot, lambda: "a note about esa03" in drawn(log) and "batch 1:" not in drawn(log))


async def test_state_filter_with_a_count(tmp_path: Path) -> None:
    rollout = make_static(tmp_path, n=6)
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        finish(rollout, "esa02", State.FAILED, error="x")
        finish(rollout, "esa05", State.FAILED, error="y")
        await pilot.press("slash", *"/failed", "enter")
        table = app.query_one(FleetTable)
        await until(pilot, lambda: table.shown == ["esa02", "esa05"])
        assert "2 of 6 match" in screen_text(app)
        finish(rollout, "esa01", State.FAILED, error="z")  # a new failure joins the filtered view
        await until(pilot, lambda: table.shown == ["esa01", "esa02", "esa05"])


async def test_mail_flow_guards_on_screen(tmp_path: Path) -> None:
    """`guard` with why, `baking` with time left and the latest sample, peers of out-of-service appliances, the
    header's count, and `g` on a waiting appliance asks to override (typed name on production)."""
    from segtui.rollout.events import BakeSampled, GuardWaiting

    rollout = make_static(tmp_path, "production")
    clock = Clock()
    app = SegtuiApp(rollout, run_rollout=False, clock=clock)
    async with app.run_test(size=WIDE) as pilot:
        rollout.start()
        rollout._emit(StepStarted(appliance="esa01", step=Step.DRAIN, ts=T0))  # dc2 out of service
        rollout._emit(WorkQueueDepth(appliance="esa03", depth=812, draining=False, ts=T0))  # its dc2 peer
        rec = rollout.records["esa02"]
        rec.state, rec.step = State.RUNNING, "guard"
        rollout._running["esa02"] = (None, None)  # type: ignore[assignment]  # in flight, as the engine sees it
        rollout._emit(GuardWaiting(appliance="esa02", reason="esa04 work queue 12,340 > 5,000", since=T0))
        rollout._emit(StepStarted(appliance="esa04", step=Step.BAKE, ts=T0))
        rollout._emit(
            BakeSampled(
                appliance="esa04",
                status="Online",
                queue=3,
                received=120,
                completed=161,
                until=T0 + 250,
                sample="Online, queue 3, received 120, completed 161",
            )
        )
        await until(pilot, lambda: cells(app, "esa02")["State"] == "guard")
        assert cells(app, "esa02")["Last message"] == "waiting: esa04 work queue 12,340 > 5,000"
        await until(pilot, lambda: cells(app, "esa04")["State"] == "baking 4:10")
        assert "Online, queue 3, received 120" in cells(app, "esa04")["Last message"]
        await until(pilot, lambda: "waiting on a guard 1" in drawn(app.query_one("#header")))
        await until(pilot, lambda: "peers: esa03 812" in screen_text(app))
        await pilot.press("down")  # esa02
        await pilot.press("g")
        assert isinstance(app.screen, TypeNameScreen) and "Override the mail-flow guard of esa02" in app.screen.question


async def test_a_retry_pass_adds_no_batch(tmp_path: Path) -> None:
    rollout = make_static(tmp_path)
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        rollout.start()
        rollout._emit(BatchStarted(index=2, total=2, appliances=("esa03", "esa04")))
        rollout._emit(BatchFinished(index=2, failures=0))
        rollout._emit(BatchStarted(index=2, total=2, appliances=("esa01",), retries=True))
        await pilot.press("b")
        await until(pilot, lambda: "retries: under way" in drawn(app.query_one("#batches")))
        header = drawn(app.query_one("#header"))
        assert "batch 2 of 2" in header and "batch 3" not in header
        assert "batch 2: 0/2 done" in drawn(app.query_one("#batches"))  # the real batch 2 is still listed


async def test_the_concurrency_cap_is_said(tmp_path: Path) -> None:
    base = make_static(tmp_path)
    rollout = Rollout(
        base.inventory, base.settings, base.target, base.journal, RolloutOptions(batch="100%", concurrency=2)
    )
    rollout.begin()
    app = SegtuiApp(rollout, run_rollout=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "2 at a time (concurrency cap)" in drawn(app.query_one("#header")))
        await pilot.press("g")
        assert isinstance(app.screen, ConfirmScreen) and "At most 2 at a time" in app.screen.question


def test_operator_actions_in_the_event_log_name_their_appliance(tmp_path: Path) -> None:
    from segtui.rollout.events import OperatorActed
    from segtui.tui.model import FleetModel

    rollout = make_static(tmp_path)
    model = FleetModel(rollout)
    model.on_event(OperatorActed(action="give-up", target="esa02", who="alice@noc1"))
    model.on_event(OperatorActed(action="raise-budget", target="--max-fail 0 -> 2", who="alice@noc1"))
    give_up, budget = list(model.log)[-2:]
    assert give_up.appliance == "esa02" and "alice@noc1: give-up esa02" in give_up.text
    assert budget.appliance is None and "--max-fail 0 -> 2" in budget.text
