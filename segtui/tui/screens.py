"""Modal screens: confirmations scaled to risk, help, appliance detail with a searchable transcript."""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, RichLog, Static

from segtui.rollout.journal import Journal


class ConfirmScreen(ModalScreen[bool]):
    """`y` accepts, anything else declines."""

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
            yield Label(self.question, id="confirm-question")
            yield Label("[b]y[/b] confirm   [b]n[/b]/[b]esc[/b] cancel", id="confirm-keys")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class TypeNameScreen(ModalScreen[bool]):
    """Fleet-wide actions on production: type the fleet's name to confirm."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, expected: str) -> None:
        super().__init__()
        self.question = question
        self.expected = expected

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="production"):
            yield Label(self.question, id="confirm-question")
            yield Label(f"Type the fleet's name ([b]{self.expected}[/b]) and press enter; esc cancels.")
            yield Input(placeholder=self.expected, id="confirm-name")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.expected:
            self.dismiss(True)
        else:
            self.notify("The name does not match: nothing was done.", severity="warning")
            self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)


HELP_KEYS = [
    ("g", "start the rollout, or promote (unpause) the next batch"),
    ("p", "pause / unpause (in-flight appliances finish the step they are in)"),
    ("a", "abort: nothing new starts; in-flight appliances are made safe"),
    ("s", "suspend listeners on the marked appliances (or the selected one)"),
    ("r", "resume listeners on the marked appliances (or the selected one)"),
    ("x", "skip the selected appliance"),
    ("R", "retry the selected failed appliance"),
    ("space", "mark / unmark the selected appliance"),
    ("/", "filter rows (name, group, state, version, message)"),
    ("o", "sort by the next column (name, group, state, version, queue, progress)"),
    ("enter", "appliance detail: step timeline and transcript (searchable)"),
    ("t", "next theme (noc-dark, noc-light, high-contrast)"),
    ("ctrl+p", "command palette: every action"),
    ("?", "this help"),
    ("q", "quit (asks while a rollout runs; `segtui resume` continues it)"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close"),
        Binding("q", "close", "Close"),
    ]

    def __init__(self, readonly: bool) -> None:
        super().__init__()
        self.readonly = readonly

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("segtui keys\n\n", style="bold")
        changing = {"g", "p", "a", "s", "r", "x", "R"}
        for key, what in HELP_KEYS:
            if self.readonly and key in changing:
                continue
            text.append(f"  {key:<8}", style="bold cyan")
            text.append(f"{what}\n")
        if self.readonly:
            text.append("\nread-only mode: every changing action is hidden and refused.\n", style="yellow")
        text.append("\nEvery action that changes an appliance asks for confirmation (y).", style="dim")
        with Vertical(id="help-box"):
            yield Static(text)

    def action_close(self) -> None:
        self.dismiss(None)


class ApplianceDetailScreen(ModalScreen[None]):
    """Step timeline and the transcript of commands and answers (secrets redacted), searchable."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("slash", "focus_search", "Search"),
    ]

    def __init__(self, name: str, journal: Journal) -> None:
        super().__init__()
        self.appliance = name
        self.journal = journal

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-box"):
            yield Label(f"[b]{self.appliance}[/b]  step timeline and transcript  (esc back, / search)")
            with VerticalScroll(id="timeline"):
                yield Static(self._timeline(), id="timeline-text")
            yield Input(placeholder="search the transcript", id="detail-search")
            yield RichLog(id="transcript", wrap=False, markup=False, highlight=False)

    def _timeline(self) -> Text:
        text = Text()
        for step, started, finished, ok, message in self.journal.steps_of(self.appliance):
            stamp = time.strftime("%H:%M:%S", time.localtime(started))
            took = f"{finished - started:6.1f}s" if finished else "  …   "
            mark, style = ("✔", "green") if ok else (("✘", "red") if ok == 0 else ("…", "cyan"))
            text.append(f"{stamp} {took} ", style="dim")
            text.append(f"{mark} {step:<18}", style=style)
            text.append(f" {message or ''}\n", style="red" if ok == 0 else "")
        if not text:
            text.append("no steps yet", style="dim")
        return text

    def on_mount(self) -> None:
        self._fill("")

    def _fill(self, needle: str) -> None:
        log = self.query_one("#transcript", RichLog)
        log.clear()
        count = 0
        for ts, command, output in self.journal.commands_of(self.appliance):
            block = [f"{command}", *output.splitlines()]
            if needle and not any(needle.lower() in line.lower() for line in block):
                continue
            count += 1
            stamp = time.strftime("%H:%M:%S", time.localtime(ts))
            log.write(Text(f"{stamp} > {command}", style="bold cyan"))
            for line in output.splitlines():
                style = "reverse yellow" if needle and needle.lower() in line.lower() else ""
                log.write(Text(f"    {line}", style=style))
        if count == 0:
            log.write(Text("no commands" + (f" matching {needle!r}" if needle else " yet"), style="dim"))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value.strip())

    def action_focus_search(self) -> None:
        self.query_one("#detail-search", Input).focus()

    def action_close(self) -> None:
        self.dismiss(None)
