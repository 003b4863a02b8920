"""The dashboard: the fleet table, live panels, keys, and the rollout running as an async worker.

Keys, help, palette, footer and the read-only filter come from one table (`segtui.tui.actions.KEYS` over
`segtui.rollout.controls.ACTIONS`); every operator action, whatever its path, passes `_operate`, which asks the
gate `gate_for` names. Text from appliances and the inventory is never markup: notifications included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import Worker, WorkerState

from segtui.asyncos.errors import ApplianceError
from segtui.rollout import events as rollout_events
from segtui.rollout.controls import ACTIONS, Gate, gate_for
from segtui.rollout.engine import Rollout
from segtui.rollout.events import Outcome, RolloutState
from segtui.rollout.journal import operator
from segtui.tui import actions
from segtui.tui.actions import BY_HANDLER, BY_KEY, KEYS
from segtui.tui.model import FleetModel
from segtui.tui.screens import ApplianceDetailScreen, BudgetScreen, ConfirmScreen, HelpScreen, TypeNameScreen
from segtui.tui.themes import BASE_THEME, THEMES, theme_paths
from segtui.tui.widgets import (
    SORT_KEYS,
    BatchPanel,
    EventLogPanel,
    FleetHeader,
    FleetTable,
    RebootPanel,
    UpgradeProgressPanel,
    WorkQueuePanel,
)

NARROW = 140  # below this many columns the side panels fold under the table (and hide behind `w`)
STATE_FILTERS = ("/failed", "/needs-attention", "/in flight", "/pending", "/done", "")


class SegtuiApp(App[str]):
    TITLE = "segtui"
    CSS_PATH: ClassVar[list[Any]] = [str(p) for p in theme_paths()]
    BINDINGS: ClassVar[list[BindingType]] = [
        *actions.bindings(),
        # Textual's own ctrl+q would quit at once, even mid-rollout: it asks like `q`.
        Binding("ctrl+q", "quit_app", "Quit", show=False, priority=True),
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
        survey: bool = False,
        demo: bool = False,
        ask_to_start: bool = False,
        watching: str | None = None,
        bell: bool = True,
        feed: Any = None,
    ) -> None:
        super().__init__()
        self.rollout = rollout
        self.readonly = readonly or watching is not None
        self.watching = watching  # `segtui watch`: fed from the journal, holder of the lock
        self.model = FleetModel(rollout, clock)
        self.repaint_hz = repaint_hz
        self.theme_name = theme_name if theme_name in THEMES else "noc-dark"
        self.run_rollout = run_rollout and not self.readonly
        self.survey = survey
        self.demo = demo
        self.ask_to_start = ask_to_start and not self.readonly
        self.ring_bell = bell
        self.outcome: str | None = None
        self._rollout_worker: Worker[str] | None = None
        self._panels_shown: bool | None = None  # None: by width
        self._applies: tuple[bool, ...] = ()
        self.feed = feed  # `segtui watch`: polls the journal (segtui.tui.watch.JournalFeed)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """Never markup: notifications carry appliance and inventory text (`[/]` in a listener's name)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # --- layout --------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield FleetHeader(self.model, readonly=self.readonly, watching=self.watching or "", id="header")
        with Horizontal(id="body"):
            with Vertical(id="main"):
                yield FleetTable(self.model, id="fleet")
                yield EventLogPanel(self.model, id="log")
                yield BatchPanel(self.model, id="batches")
            with Vertical(id="panels"):
                yield WorkQueuePanel(self.model, id="workqueue")
                yield UpgradeProgressPanel(self.model, id="progress")
                yield RebootPanel(self.model, id="reboots")
        yield Static(id="status")
        yield Input(placeholder="filter: name, group, text; /failed for a state (enter keeps, esc clears)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        self._apply_theme(self.theme_name)
        if self.rollout.inventory.production:
            self.sub_title = "PRODUCTION"
        self._layout_for(self.size.width)
        self.query_one(FleetTable).focus()
        self.repaint()
        self.set_interval(1 / self.repaint_hz, self.repaint, name="repaint")
        self.set_interval(1.0, self._tick, name="tick")
        if self.run_rollout:
            self._rollout_worker = self.run_rollout_worker()
        if self.survey:
            self.survey_worker()
        if self.feed is not None:
            self.feed.model = self.model
            self._poll_feed()
            self.set_interval(0.5, self._poll_feed, name="journal-feed")
        if self.ask_to_start:
            self.call_after_refresh(self.action_go)

    def on_resize(self, event: events.Resize) -> None:
        self._layout_for(event.size.width)

    def _layout_for(self, width: int) -> None:
        if not self.query("#panels"):
            return  # closing
        narrow = width < NARROW
        self.set_class(narrow, "narrow")
        shown = self._panels_shown if self._panels_shown is not None else not narrow
        self.query_one("#panels").display = shown

    @work(exclusive=True, group="rollout", exit_on_error=False)
    async def run_rollout_worker(self) -> str:
        outcome = await self.rollout.run()
        self.outcome = outcome
        return outcome

    @work(group="survey", exit_on_error=False)
    async def survey_worker(self) -> None:
        """Read every appliance once, read-only (version, status, work queue): the table opens on the truth."""
        r = self.rollout
        self.model.survey_running = True

        async def one(spec: Any) -> None:
            client = r.ctx.appliance(spec, journal_commands=False)
            try:
                await client.session()  # outside the deadline: the handshake queue is ours (connect has its own)
                async with asyncio.timeout(r.settings.deadlines.precheck):
                    info = await client.version()
                    try:
                        status = await client.status_detail()
                    except ApplianceError:
                        status = None
                self.model.surveyed(
                    spec.name,
                    version=str(info.version),
                    serial=info.serial,
                    status=status.system_status if status else None,
                    depth=status.workqueue_messages if status else None,
                    listeners=("suspended" if status.receiving_suspended else "active") if status else None,
                )
            except ApplianceError as exc:
                self.model.surveyed(spec.name, problem=exc.message)
            except TimeoutError:
                self.model.surveyed(spec.name, problem="timed out reading `version`")
            except OSError as exc:
                self.model.surveyed(spec.name, problem=str(exc) or type(exc).__name__)
            finally:
                await client.close()

        try:
            await asyncio.gather(*(one(s) for s in r.inventory.appliances))
        finally:
            self.model.survey_running = False

    @on(Worker.StateChanged)
    def _worker_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "rollout" and event.state == WorkerState.ERROR:
            self.notify(f"rollout stopped: {event.worker.error}", severity="error", timeout=30)
        elif event.worker.group == "rollout" and event.state == WorkerState.SUCCESS:
            self.notify(f"rollout {event.worker.result}", timeout=10)
            self.repaint()

    def _poll_feed(self) -> None:
        self.feed.poll()
        header = self.query_one(FleetHeader)
        header.watching = self.feed.holder()

    # --- repaint -------------------------------------------------------------------------------
    def _tick(self) -> None:
        self.model.tick()
        self.model.sample_fleet_depth()

    def repaint(self) -> None:
        """At a steady few Hz: fold all events since the last paint into the widgets at once."""
        try:
            self._repaint()
        except NoMatches:  # the app is closing: its widgets are gone before its timers stop
            return

    def _repaint(self) -> None:
        table = self.query_one(FleetTable)
        table.repaint(self.model.take_dirty())
        self.query_one(FleetHeader).refresh_from_model()
        if self.query_one("#panels").display:
            wq = self.query_one(WorkQueuePanel)
            wq.selected = table.selected_name()
            wq.refresh_from_model()
            self.query_one(UpgradeProgressPanel).refresh_from_model()
            self.query_one(RebootPanel).refresh_from_model()
        log = self.query_one(EventLogPanel)
        if log.has_class("visible"):
            log.refresh_from_model(table.filter_text)
        batches = self.query_one(BatchPanel)
        if batches.has_class("visible"):
            batches.refresh_from_model()
        self._status()
        applies = tuple(self._why_not(k) is None for k in KEYS if k.actions)
        if applies != self._applies:
            self._applies = applies
            self.refresh_bindings()  # the footer shows only the keys that apply now
        if self.model.bell_pending:
            if self.ring_bell:
                self.bell()
            self.model.bell_pending = 0

    def _status(self) -> None:
        from rich.text import Text

        table = self.query_one(FleetTable)
        text = Text()
        if table.filter_text:
            text.append(f"filter {table.filter_text!r}: ", style="bold")
            text.append(f"{len(table.shown)} of {len(self.model.rows)} match")
            text.append("   ")
        text.append(f"sorted by {table.sort_key} {'▼' if table.sort_reverse else '▲'}", style="dim")
        if self.readonly:
            text.append("   READ-ONLY", style="bold black on yellow")
        self.query_one("#status", Static).update(text)

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

    # --- the one gate ---------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        key = BY_HANDLER.get(action)
        if key is not None and key.actions:
            # Hidden from the footer when it does not apply now; pressing it says why (on_key).
            return self._why_not(key) is None
        return True

    def _why_not(self, key: actions.Key) -> str | None:
        try:
            selected = self.query_one(FleetTable).selected_name()
        except NoMatches:
            selected = None
        return actions.why_not(key, self.rollout, self.readonly, watching=self.watching is not None, selected=selected)

    def on_key(self, event: events.Key) -> None:
        key = BY_KEY.get(event.key)
        if key is None or not key.actions or not isinstance(self.screen, Screen) or self.screen.is_modal:
            return
        why = self._why_not(key)
        if why:
            event.stop()
            self.notify(why, severity="warning")

    def _operate(
        self,
        action_id: str,
        question: str,
        then: Callable[[], object],
        *,
        name: str | None = None,
    ) -> None:
        """Every operator action passes here: read-only refusal, when it applies, why not (before asking),
        then the gate of `gate_for` (typed fleet name on production for capacity actions, `y` otherwise)."""
        action = ACTIONS[action_id]
        if self.readonly and action.changes:
            self.notify("read-only: nothing is changed from this dashboard", severity="warning")
            return
        if self.rollout.state not in action.when:
            self.notify(f"rollout is {self.rollout.state.value}: {action.title.lower()} does not apply")
            return
        if name is not None:
            why = actions.can(self.rollout, action_id, name)
            if why:
                self.notify(why, severity="warning")
                return
        inv = self.rollout.inventory
        gate = gate_for(action, inv.production)

        def done(ok: bool | None) -> None:
            if not ok:
                return
            result = then()
            self._continue_if_taken_up()
            if not hasattr(rollout_events, "OperatorActed"):
                self.model.operator_acted(action_id, name, operator())
            if isinstance(result, str) and result:
                self.notify(result)
            self.repaint()

        if gate == Gate.TYPE_NAME:
            self.push_screen(TypeNameScreen(question, inv.name), done)
        elif gate == Gate.CONFIRM:
            self.push_screen(ConfirmScreen(question), done)
        else:
            done(True)

    def _continue_if_taken_up(self) -> None:
        """A retry after the end takes the rollout up again: its worker runs again."""
        worker = self._rollout_worker
        if (
            self.run_rollout
            and worker is not None
            and worker.is_finished
            and self.rollout.state == RolloutState.RUNNING
        ):
            self.outcome = None
            self._rollout_worker = self.run_rollout_worker()

    def _table(self) -> FleetTable:
        return self.query_one(FleetTable)

    # --- operator actions -----------------------------------------------------------------------
    def action_go(self) -> None:
        r = self.rollout
        name = self._table().selected_name()
        if name and r.state in (RolloutState.RUNNING, RolloutState.PAUSED) and actions.waiting_on_guard(r, name):
            self._operate(
                "override_guard",
                f"Override the mail-flow guard of {name}? It goes on without the peers' or the bake's evidence.",
                lambda: actions.per_appliance(r, "override_guard", name),
                name=name,
            )
        elif r.state == RolloutState.READY:
            n = self.model.to_start()
            skipped = len(self.model.rows) - n
            extra = f" ({skipped} skipped or finished are left alone)" if skipped else ""
            cap = min(r.options.concurrency, r.settings.concurrency)
            capped = f" At most {cap} at a time (the concurrency cap)." if n > cap else ""
            self._operate("start", f"Start the rollout of {n} appliances to {r.target}?{extra}{capped}", r.start)
        elif r.state == RolloutState.PAUSED:
            self._unpause("Promote: unpause and continue with the next batch?")
        else:
            self.notify(f"rollout is {r.state.value}")

    def _unpause(self, question: str) -> None:
        r = self.rollout
        if self.readonly:
            self.notify("read-only: nothing is changed from this dashboard", severity="warning")
            return
        if actions.budget_spent(r):

            def with_budget(value: str | None) -> None:
                if value is None:
                    self.notify("unpause cancelled: the failure budget is unchanged")
                    return
                self._operate(
                    "unpause",
                    f"{question} The failure budget becomes {value}.",
                    lambda: actions.unpause(r, value) or f"unpaused; failure budget {value}",
                )

            self.push_screen(BudgetScreen(r.pause_reason or "failures", str(r.options.max_fail)), with_budget)
            return
        self._operate("unpause", question, lambda: actions.unpause(r) or "unpaused")

    def action_pause(self) -> None:
        r = self.rollout
        if r.state == RolloutState.RUNNING:
            self._operate("pause", "Pause the rollout? Appliances under way finish the step they are in.", r.pause)
        elif r.state == RolloutState.PAUSED:
            self._unpause("Unpause the rollout and continue with the next batch?")
        else:
            self.notify(f"rollout is {r.state.value}: nothing to pause")

    def action_abort(self) -> None:
        self._operate(
            "abort",
            "ABORT the rollout? This is final: nothing new starts; appliances not yet upgrading are resumed and "
            "restored; upgrades under way finish safely.",
            self.rollout.abort,
        )

    def _listeners(self, suspend: bool) -> None:
        names = self._table().targets()
        if not names:
            return
        verb = "Suspend" if suspend else "Resume"
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")

        def go() -> None:
            self.set_listeners_worker(names, suspend)

        self._operate("suspend_listeners" if suspend else "resume_listeners", f"{verb} listeners on {shown}?", go)

    @work(group="listeners", exit_on_error=False)
    async def set_listeners_worker(self, names: list[str], suspend: bool) -> None:
        results = await self.rollout.change_listeners(names, suspend)
        for name, result in results.items():
            ok = result in ("suspended", "active")
            self.notify(f"{name}: listeners {result}", severity="information" if ok else "error")

    def action_suspend_listeners(self) -> None:
        self._listeners(True)

    def action_resume_listeners(self) -> None:
        self._listeners(False)

    def action_skip(self) -> None:
        r = self.rollout
        name = self._table().selected_name()
        if not name:
            return
        row = self.model.rows[name]
        if row.state == "needs-attention":
            question = f"Give up on {name}? It stays as it is, for a person to finish by hand."
        elif row.state == "reboot":
            question = (
                f"Give up on {name}'s reboot? It becomes needs-attention (left for a person); the rest continues."
            )
        elif row.in_flight:
            question = f"Skip {name} (now: {row.state})? It is made safe and left on its version."
        else:
            question = f"Skip {name}?"
        self._operate("skip", question, lambda: actions.per_appliance(r, "skip", name), name=name)

    def action_retry(self) -> None:
        r = self.rollout
        name = self._table().selected_name()
        if not name:
            return
        row = self.model.rows[name]
        if row.state == "needs-attention":
            question = f"Re-probe {name}? It is read again and continues from what is found."
        else:
            question = f"Retry {name}?"
        self._operate("retry", question, lambda: actions.per_appliance(r, "retry", name), name=name)

    # --- view actions ---------------------------------------------------------------------------
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

    def action_state_filter(self) -> None:
        table = self._table()
        current = table.filter_text if table.filter_text in STATE_FILTERS else ""
        nxt = STATE_FILTERS[(STATE_FILTERS.index(current) + 1) % len(STATE_FILTERS)]
        self.query_one("#filter", Input).value = nxt
        table.filter_text = nxt
        table.rebuild()
        self._status()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        table = self._table()
        table.filter_text = event.value.strip()
        table.rebuild()
        self._status()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._table().focus()

    def action_close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("visible") or box.value:
            box.value = ""
            box.remove_class("visible")
            self._table().focus()

    def action_sort_next(self) -> None:
        table = self._table()
        table.sort_key = SORT_KEYS[(SORT_KEYS.index(table.sort_key) + 1) % len(SORT_KEYS)]
        table.rebuild()
        self._status()

    def action_sort_reverse(self) -> None:
        table = self._table()
        table.sort_reverse = not table.sort_reverse
        table.rebuild()
        self._status()

    def action_toggle_log(self) -> None:
        log = self.query_one(EventLogPanel)
        log.toggle_class("visible")
        self.repaint()

    def action_toggle_batches(self) -> None:
        panel = self.query_one(BatchPanel)
        panel.toggle_class("visible")
        self.repaint()

    def action_toggle_panels(self) -> None:
        panels = self.query_one("#panels")
        self._panels_shown = not panels.display
        self._layout_for(self.size.width)
        self.repaint()

    def action_detail(self) -> None:
        name = self._table().selected_name()
        if name:
            self.push_screen(ApplianceDetailScreen(name, self.rollout.journal, self.model))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.readonly, self.rollout.inventory.production))

    def action_quit_app(self) -> None:
        r = self.rollout
        if r.state in (RolloutState.RUNNING, RolloutState.PAUSED) and self.outcome is None and not self.readonly:
            if self.demo:
                question = "Quit the demo while the rollout runs? The simulated fleet stops with it."
            else:
                question = (
                    "Quit while the rollout runs? It stops where it is; `segtui resume --inventory FILE` continues it."
                )
            self.push_screen(
                ConfirmScreen(question), lambda ok: self.exit(self.outcome or self._stopped()) if ok else None
            )
            return
        self.exit(self.outcome or ("not started" if r.state == RolloutState.READY else self._stopped()))

    def _stopped(self) -> str:
        """What quitting now leaves: a paused rollout stays paused; a running one is interrupted where it is."""
        running = self.rollout.state == RolloutState.RUNNING and not self.readonly
        return Outcome.INTERRUPTED.value if running else self.rollout.outcome().value

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Our actions (through the same gates as their keys) and our three themes; not Textual's defaults."""
        for key in KEYS:
            if key.changes and self.readonly:
                continue
            if key.actions and not key.applies(self.rollout.state):
                continue
            yield SystemCommand(key.title, f"{key.description} ({key.shown})", getattr(self, f"action_{key.handler}"))
        for name in THEMES:
            yield SystemCommand(f"Theme: {name}", f"switch to the {name} theme", lambda n=name: self._theme_cmd(n))

    def _theme_cmd(self, name: str) -> None:
        self._apply_theme(name)
        self.notify(f"theme: {name}")


def make_dashboard(rollout: Rollout, *, readonly: bool, autostart: bool, sim: Any = None) -> SegtuiApp:
    """The dashboard for `run`, `resume` and `demo`.

    Read-only never starts anything: a resumed rollout is shown as it was left, and waits. `autostart` (resume)
    on production asks for the fleet's name before anything moves."""
    settings = rollout.settings
    production = rollout.inventory.production
    ask = autostart and not readonly and gate_for(ACTIONS["start"], production) == Gate.TYPE_NAME
    app = SegtuiApp(
        rollout,
        readonly=readonly,
        theme_name=settings.theme,
        repaint_hz=settings.repaint_hz,
        run_rollout=not readonly,
        survey=True,
        demo=sim is not None,
        ask_to_start=ask,
        bell=settings.tui.bell,
    )
    if autostart and not readonly and not ask:
        rollout.start()
    return app


async def run_dashboard(rollout: Rollout, *, readonly: bool, autostart: bool, sim: Any = None) -> str:
    app = make_dashboard(rollout, readonly=readonly, autostart=autostart, sim=sim)
    result = await app.run_async()
    worker = app._rollout_worker
    if worker is not None and not worker.is_finished:
        worker.cancel()
        await asyncio.sleep(0)
    return app.outcome or result or Outcome.PAUSED.value
