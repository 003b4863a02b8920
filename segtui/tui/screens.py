"""Modal screens: confirmations scaled to risk, the failure budget, help, and the live appliance detail.

Every text that can hold appliance or inventory text is a `rich.text.Text` (never markup): a fleet named
`emea[/]` or a listener named `[/]` is shown as written.
"""

from __future__ import annotations

import time
from typing import ClassVar, Protocol

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, RichLog, Static

from segtui.rollout.controls import Gate, gate_for
from segtui.textsafe import one_line
from segtui.tui.actions import KEYS
from segtui.tui.model import FleetModel, fmt_took


class ConfirmScreen(ModalScreen[bool]):
    """`y` accepts, anything else declines. The box wraps its text and is sized to it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.question), id="confirm-question")
            keys = Text()
            keys.append("y", style="bold")
            keys.append(" confirm   ")
            keys.append("n", style="bold")
            keys.append("/")
            keys.append("esc", style="bold")
            keys.append(" cancel")
            yield Static(keys, id="confirm-keys")

    def on_key(self, event: events.Key) -> None:
        if event.key not in ("y", "n", "escape"):
            event.stop()
            self.dismiss(False)  # anything else declines

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class TypeNameScreen(ModalScreen[bool]):
    """Production: type the fleet's name to confirm (the name is shown as data, never as markup)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, expected: str) -> None:
        super().__init__()
        self.question = question
        self.expected = expected

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="production"):
            yield Static(Text(self.question), id="confirm-question")
            prompt = Text("Type the fleet's name (")
            prompt.append(self.expected, style="bold")
            prompt.append(") and press enter; esc cancels.")
            yield Static(prompt, id="confirm-prompt")
            yield Input(placeholder=self.expected, id="confirm-name")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.expected.strip():
            self.dismiss(True)
        else:
            self.app.notify("The name does not match: nothing was done.", severity="warning", markup=False)
            self.dismiss(False)

    def action_cancel(self) -> None:
        self.app.notify("Cancelled: nothing was done.", markup=False)
        self.dismiss(False)


class BudgetScreen(ModalScreen[str | None]):
    """The failure budget is spent: unpausing needs a new, higher `--max-fail` value, typed explicitly."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, why: str, current: str) -> None:
        super().__init__()
        self.why = why
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="budget"):
            yield Static(
                Text(
                    f"The failure budget is spent ({self.why}). Unpausing goes on into the next batch only with a "
                    f"higher budget. The budget now: {self.current}."
                ),
                id="confirm-question",
            )
            yield Static(Text("New --max-fail (a count like 3, or a share like 20%); enter sets it, esc cancels."))
            yield Input(placeholder="e.g. 3 or 20%", id="budget-value")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        from segtui.errors import InputError
        from segtui.rollout.batches import parse_failure_budget

        try:
            parse_failure_budget(value)
        except (InputError, ValueError) as exc:
            self.app.notify(f"not a failure budget: {one_line(str(exc))}", severity="warning", markup=False)
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def help_text(readonly: bool, production: bool) -> Text:
    """The keys, from the one table (`KEYS` over `ACTIONS`): help and README cannot disagree."""
    text = Text()
    text.append("segtui keys\n\n", style="bold")
    for key in KEYS:
        if readonly and key.changes:
            continue
        text.append(f"  {key.shown:<7}", style="bold cyan")
        text.append(key.description)
        gates = {gate_for(a, production) for a in key.operator_actions()}
        if Gate.TYPE_NAME in gates:
            text.append("  [asks: type the fleet's name]", style="dim")
        elif Gate.CONFIRM in gates:
            text.append("  [asks: y]", style="dim")
        text.append("\n")
    text.append("  ctrl+p ", style="bold cyan")
    text.append("command palette: the same actions, the same questions\n")
    if readonly:
        text.append("\nread-only mode: every changing action is hidden and refused.\n", style="yellow")
    text.append(
        "\nActions that can take mail capacity down or restart work ask for the fleet's name on production, "
        "`y` elsewhere.",
        style="dim",
    )
    return text


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close"),
        Binding("q", "close", "Close"),
    ]

    def __init__(self, readonly: bool, production: bool = False) -> None:
        super().__init__()
        self.readonly = readonly
        self.production = production

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box"):
            yield Static(help_text(self.readonly, self.production))

    def action_close(self) -> None:
        self.dismiss(None)


class History(Protocol):
    def steps_of(self, name: str) -> list[tuple[str, float, float | None, int | None, str | None]]: ...
    def commands_of(self, name: str) -> list[tuple[float, str, str]]: ...


class ApplianceDetailScreen(ModalScreen[None]):
    """Live: identity, path, listeners, backups, step timeline with durations, and the transcript (searchable:
    the view jumps to the first match)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("slash", "focus_search", "Search"),
    ]

    def __init__(self, name: str, history: History, model: FleetModel) -> None:
        super().__init__()
        self.appliance = name
        self.history = history
        self.model = model
        self._commands_seen = -1
        self._needle = ""
        self.first_match: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box"):
            title = Text()
            title.append(self.appliance, style="bold")
            title.append("  live detail  (esc back, / search the transcript)", style="dim")
            yield Label(title)
            with Horizontal(id="timeline"):
                with VerticalScroll(id="detail-info-box"):
                    yield Static(self.info(), id="detail-info")
                with VerticalScroll(id="timeline-box"):
                    yield Static(self.timeline(), id="timeline-text")
            yield Input(placeholder="search the transcript", id="detail-search")
            yield RichLog(id="transcript", wrap=False, markup=False, highlight=False)

    def info(self) -> Text:
        m = self.model
        row = m.rows[self.appliance]
        rec = m.rollout.records.get(self.appliance)
        text = Text()

        def field(label: str, value: object) -> None:
            text.append(f"{label:<11}", style="bold")
            text.append(f"{value}\n")

        field("address", f"{row.host}:{row.port}")
        field("hostname", row.hostname or "-")
        field("serial", row.serial or "-")
        field("group", row.group + (f"   cluster {row.cluster}" if row.cluster else ""))
        hops = list(rec.hops) if rec else []
        path = [row.version_before or row.version or "?", *[h for h in hops if h != str(m.rollout.target)]]
        field("path", " -> ".join([*path, str(m.rollout.target)]))
        field("state", row.state + (f"   {one_line(m.outcome(row))}" if m.outcome(row) else ""))
        field("listeners", row.listeners + (f"   system {row.system_status}" if row.system_status else ""))
        if row.unreachable:
            field("reach", f"unreachable: {row.unreachable}")
        for b in rec.backups if rec else []:
            field("backup", f"{b.get('kind', '?')} {b.get('path', '?')} sha256 {b.get('sha256', '?')}")
        questions = [e for e in m.log if e.appliance == self.appliance and "question" in e.text.lower()]
        for e in questions[-5:]:
            field("question", e.text)
        return text

    def timeline(self) -> Text:
        text = Text()
        now = self.model.clock()
        for step, started, finished, ok, message in self.history.steps_of(self.appliance):
            stamp = time.strftime("%H:%M:%S", time.localtime(started))
            took = fmt_took((finished or now) - started)
            mark, style = ("✔", "green") if ok else (("✘", "red") if ok == 0 else ("…", "cyan"))
            text.append(f"{stamp} {took:>7} ", style="dim")
            text.append(f"{mark} {step:<18}", style=style)
            text.append(f" {one_line(message or '')}\n", style="red" if ok == 0 else "")
        if not text:
            text.append("no steps yet", style="dim")
        return text

    def on_mount(self) -> None:
        self.refresh_live()
        self.set_interval(1.0, self.refresh_live, name="detail-live")

    def refresh_live(self) -> None:
        self.query_one("#detail-info", Static).update(self.info())
        self.query_one("#timeline-text", Static).update(self.timeline())
        commands = self.history.commands_of(self.appliance)
        if len(commands) != self._commands_seen:
            self._fill(self._needle, commands)

    def _fill(self, needle: str, commands: list[tuple[float, str, str]] | None = None) -> None:
        if commands is None:
            commands = self.history.commands_of(self.appliance)
        self._commands_seen = len(commands)
        self._needle = needle
        log = self.query_one("#transcript", RichLog)
        log.clear()
        lines: list[Text] = []
        first: int | None = None
        low = needle.lower()
        for ts, command, output in commands:
            stamp = time.strftime("%H:%M:%S", time.localtime(ts))
            head = Text(f"{stamp} > {command}", style="bold cyan")
            if low and low in command.lower():
                head.stylize("reverse")
                first = len(lines) if first is None else first
            lines.append(head)
            for line in output.splitlines():
                hit = bool(low) and low in line.lower()
                if hit and first is None:
                    first = len(lines)
                lines.append(Text(f"    {line}", style="reverse yellow" if hit else ""))
        if not lines:
            lines.append(Text("no commands yet", style="dim"))
        elif low and first is None:
            lines.append(Text(f"no line matching {needle!r}", style="dim"))
        for entry in lines:
            log.write(entry, scroll_end=False)
        self.first_match = first
        if first is not None:
            log.scroll_to(y=first, animate=False, immediate=True)
        elif not low:
            log.scroll_end(animate=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value.strip())

    def action_focus_search(self) -> None:
        self.query_one("#detail-search", Input).focus()

    def action_close(self) -> None:
        self.dismiss(None)
