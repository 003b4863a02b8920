"""The dashboard: the fleet table, live panels, keys, and the rollout running as an async worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input
from textual.worker import Worker, WorkerState

from segtui.rollout.engine import Rollout
from segtui.rollout.events import RolloutState
from segtui.tui.model import FleetModel
from segtui.tui.screens import ApplianceDetailScreen, ConfirmScreen, HelpScreen, TypeNameScreen
from segtui.tui.themes import BASE_THEME, THEMES, theme_paths
from segtui.tui.widgets import (
    SORT_KEYS,
    FleetHeader,
    FleetTable,
    RebootPanel,
    UpgradeProgressPanel,
    WorkQueuePanel,
)

CHANGING_ACTIONS = {"start", "pause", "abort", "suspend", "resume_listeners", "skip", "retry"}


class SegtuiApp(App[str]):
    TITLE = "segtui"
    CSS_PATH: ClassVar[list[Any]] = [str(p) for p in theme_paths()]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "start", "Go/promote"),
        Binding("p", "pause", "Pause"),
        Binding("a", "abort", "Abort"),
        Binding("s", "suspend", "Suspend"),
        Binding("r", "resume_listeners", "Resume"),
        Binding("x", "skip", "Skip"),
        Binding("R", "retry", "Retry"),
        Binding("space", "mark", "Mark", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("o", "sort_next", "Sort", show=False),
        Binding("enter", "detail", "Detail", show=False),
        Binding("t", "next_theme", "Theme", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit_app", "Quit"),
        Binding("escape", "close_filter", show=False),
    ]

    def __init__(
        self,
        rollout: Rollout,
        *,
        readonly: bool = False,
        theme_name: str = "noc-dark",
        repaint_hz: float = 4.0,
        clock: Callable[[], float] = time.time,
        run_rollout: bool = True,
    ) -> None:
        super().__init__()
        self.rollout = rollout
        self.readonly = readonly
        self.model = FleetModel(rollout, clock)
        self.repaint_hz = repaint_hz
        self.theme_name = theme_name if theme_name in THEMES else "noc-dark"
        self.run_rollout = run_rollout
        self.outcome: str | None = None
        self._rollout_worker: Worker[str] | None = None

    # --- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield FleetHeader(self.model, id="header")
        with Horizontal(id="body"):
            yield FleetTable(self.model, id="fleet")
            with Vertical(id="panels"):
                yield WorkQueuePanel(self.model, id="workqueue")
                yield UpgradeProgressPanel(self.model, id="progress")
                yield RebootPanel(self.model, id="reboots")
        yield Input(placeholder="filter: name, group, state, version… (enter keeps, esc clears)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self._apply_theme(self.theme_name)
        if self.rollout.inventory.production:
            self.sub_title = "PRODUCTION"
        self.query_one(FleetTable).focus()
        self.repaint()
        self.set_interval(1 / self.repaint_hz, self.repaint, name="repaint")
        self.set_interval(1.0, self.model.sample_fleet_depth, name="fleet-depth")
        if self.run_rollout:
            self._rollout_worker = self.run_rollout_worker()

    @work(exclusive=True, group="rollout", exit_on_error=False)
    async def run_rollout_worker(self) -> str:
        outcome = await self.rollout.run()
        self.outcome = outcome
        return outcome

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "rollout" and event.state == WorkerState.ERROR:
            self.notify(f"rollout stopped: {event.worker.error}", severity="error", timeout=30)
        elif event.worker.group == "rollout" and event.state == WorkerState.SUCCESS:
            self.notify(f"rollout {event.worker.result}", timeout=10)
            self.repaint()

    # --- repaint -------------------------------------------------------------------------------
    def repaint(self) -> None:
        """At a steady few Hz: fold all events since the last paint into the widgets at once."""
        table = self.query_one(FleetTable)
        table.repaint(self.model.take_dirty())
        self.query_one(FleetHeader).refresh_from_model()
        wq = self.query_one(WorkQueuePanel)
        wq.selected = table.selected_name()
        wq.refresh_from_model()
        self.query_one(UpgradeProgressPanel).refresh_from_model()
        self.query_one(RebootPanel).refresh_from_model()

    # --- themes --------------------------------------------------------------------------------
    def _apply_theme(self, name: str) -> None:
        # Textual owns the `-theme-*` classes; ours are `-segtui-*`, set after its colour theme.
        self.theme = BASE_THEME[name]
        for other in THEMES:
            self.remove_class(f"-segtui-{other}")
        self.add_class(f"-segtui-{name}")
        self.theme_name = name

    def action_next_theme(self) -> None:
        name = THEMES[(THEMES.index(self.theme_name) + 1) % len(THEMES)]
        self._apply_theme(name)
        self.notify(f"theme: {name}")

    # --- guards --------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.readonly and action in CHANGING_ACTIONS:
            return False  # hidden from the footer and refused
        return True

    def _confirm(self, question: str, then: Callable[[], Any], *, fleet_wide: bool = False) -> None:
        inv = self.rollout.inventory

        def done(ok: bool | None) -> None:
            if ok:
                then()

        if fleet_wide and inv.production:
            self.push_screen(TypeNameScreen(question, inv.name), done)
        else:
            self.push_screen(ConfirmScreen(question), done)

    def _table(self) -> FleetTable:
        return self.query_one(FleetTable)

    # --- actions -------------------------------------------------------------------------------
    def action_start(self) -> None:
        r = self.rollout
        if r.state == RolloutState.READY:
            n = len(r.records)
            self._confirm(f"Start the rollout of {n} appliances to {r.target}?", r.start, fleet_wide=True)
        elif r.state == RolloutState.PAUSED:
            self._confirm("Promote: unpause and continue with the next batch?", r.unpause, fleet_wide=True)
        else:
            self.notify(f"rollout is {r.state.value}")

    def action_pause(self) -> None:
        r = self.rollout
        if r.state == RolloutState.RUNNING:
            self._confirm("Pause the rollout? In-flight appliances finish the step they are in.", r.pause)
        elif r.state == RolloutState.PAUSED:
            self._confirm("Unpause the rollout?", r.unpause)
        else:
            self.notify(f"rollout is {r.state.value}: nothing to pause")

    def action_abort(self) -> None:
        r = self.rollout
        if r.state in (RolloutState.DONE, RolloutState.ABORTED):
            self.notify(f"rollout is {r.state.value}")
            return
        self._confirm(
            "ABORT the rollout? Nothing new starts; appliances not yet upgrading are resumed and restored; "
            "upgrades under way finish safely.",
            r.abort,
            fleet_wide=True,
        )

    def _listeners(self, suspend: bool) -> None:
        names = self._table().targets()
        if not names:
            return
        verb = "Suspend" if suspend else "Resume"
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")

        def go() -> None:
            self.set_listeners_worker(names, suspend)

        self._confirm(f"{verb} listeners on {shown}?", go)

    @work(group="listeners", exit_on_error=False)
    async def set_listeners_worker(self, names: list[str], suspend: bool) -> None:
        results = await self.rollout.change_listeners(names, suspend)
        for name, result in results.items():
            ok = result in ("suspended", "active")
            self.notify(f"{name}: listeners {result}", severity="information" if ok else "error")

    def action_suspend(self) -> None:
        self._listeners(True)

    def action_resume_listeners(self) -> None:
        self._listeners(False)

    def action_skip(self) -> None:
        name = self._table().selected_name()
        if name:
            self._confirm(f"Skip {name}?", lambda: self.notify(self.rollout.skip(name)))

    def action_retry(self) -> None:
        name = self._table().selected_name()
        if name:
            self._confirm(f"Retry {name}?", lambda: self.notify(self.rollout.retry(name)))

    def action_mark(self) -> None:
        table = self._table()
        name = table.selected_name()
        if not name:
            return
        table.marks.symmetric_difference_update({name})
        table.repaint({name})
        table.move_cursor(table.cursor_row + 1)

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("visible")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        table = self._table()
        table.filter_text = event.value.strip()
        table.rebuild()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._table().focus()

    def action_close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("visible"):
            box.value = ""
            box.remove_class("visible")
            self._table().focus()

    def action_sort_next(self) -> None:
        table = self._table()
        table.sort_key = SORT_KEYS[(SORT_KEYS.index(table.sort_key) + 1) % len(SORT_KEYS)]
        table.rebuild()
        self.notify(f"sorted by {table.sort_key}")

    def action_detail(self) -> None:
        name = self._table().selected_name()
        if name:
            self.push_screen(ApplianceDetailScreen(name, self.rollout.journal))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.readonly))

    def action_quit_app(self) -> None:
        r = self.rollout
        if r.state in (RolloutState.RUNNING, RolloutState.PAUSED) and self.outcome is None:
            self.push_screen(
                ConfirmScreen(
                    "Quit while the rollout runs? It stops where it is; `segtui resume --inventory FILE` continues it."
                ),
                lambda ok: self.exit(self.outcome or "paused") if ok else None,
            )
            return
        self.exit(self.outcome or ("paused" if r.state != RolloutState.READY else "not started"))

    def get_system_commands(self, screen: Screen[Any]) -> Any:
        yield from super().get_system_commands(screen)
        commands = [
            ("Start / promote", "Start the rollout or promote the next batch (g)", self.action_start, True),
            ("Pause / unpause", "Pause or unpause the rollout (p)", self.action_pause, True),
            ("Abort", "Abort the rollout safely (a)", self.action_abort, True),
            ("Suspend listeners", "On the marked or selected appliances (s)", self.action_suspend, True),
            (
                "Resume listeners",
                "On the marked or selected appliances (r)",
                self.action_resume_listeners,
                True,
            ),
            ("Skip appliance", "Skip the selected appliance (x)", self.action_skip, True),
            ("Retry appliance", "Retry the selected failed appliance (R)", self.action_retry, True),
            ("Filter", "Filter the fleet table (/)", self.action_filter, False),
            ("Sort", "Sort by the next column (o)", self.action_sort_next, False),
            ("Appliance detail", "Step timeline and transcript (enter)", self.action_detail, False),
            ("Next theme", "noc-dark, noc-light, high-contrast (t)", self.action_next_theme, False),
            ("Keys", "Show every key (?)", self.action_help, False),
        ]
        for title, help_text, callback, changing in commands:
            if self.readonly and changing:
                continue
            yield SystemCommand(title, help_text, callback)


async def run_dashboard(rollout: Rollout, *, readonly: bool, autostart: bool, sim: Any = None) -> str:
    settings = rollout.settings
    app = SegtuiApp(rollout, readonly=readonly, theme_name=settings.theme, repaint_hz=settings.repaint_hz)
    if autostart:
        rollout.start()
    result = await app.run_async()
    worker = app._rollout_worker
    if worker is not None and not worker.is_finished:
        worker.cancel()
        await asyncio.sleep(0)
    return app.outcome or result or "paused"
