"""Dashboard widgets: FleetHeader, FleetTable, WorkQueuePanel, UpgradeProgressPanel, RebootPanel."""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Sparkline, Static

from segtui.rollout.events import RolloutState
from segtui.tui.model import FleetModel, Row

STATE_STYLE = {
    "done": "bold green",
    "failed": "bold red",
    "needs-attention": "bold reverse magenta",
    "pending": "dim",
    "skipped": "yellow",
}
IN_FLIGHT_STYLE = "bold cyan"
COLUMNS = (
    "",
    "Name",
    "Group",
    "Cluster",
    "Version",
    "State",
    "Listeners",
    "Queue",
    "Image",
    "Progress",
    "Elapsed",
    "Last message",
)
SORT_KEYS = ("name", "group", "state", "version", "depth", "percent")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}:{seconds % 60:02d}"


def bar(percent: float, width: int = 10) -> str:
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "█" * filled + "░" * (width - filled)


class FleetHeader(Static):
    """Fleet, environment (production in red), target, rollout state, batch, counts, elapsed, ETA."""

    def __init__(self, model: FleetModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self._lines = -1

    def refresh_from_model(self) -> None:
        m = self.model
        r = m.rollout
        inv = r.inventory
        env = inv.environment.upper()
        text = Text()
        if inv.production:
            text.append(f" ■ PRODUCTION · {inv.name} ", style="bold white on red")
        else:
            text.append(
                f" {env} · {inv.name} ",
                style="bold black on green" if env == "LAB" else "bold black on yellow",
            )
        state = r.state.value
        state_style = {
            "running": "bold green",
            "paused": "bold yellow",
            "aborted": "bold red",
            "done": "bold blue",
            "ready": "bold",
        }.get(state, "")
        text.append(f"  target {r.target}  ")
        text.append(f"[{state}]", style=state_style)
        batch, total = m.batch
        text.append(f"  batch {batch} of {max(total, batch)}  ")
        c = m.counts()
        for key, style in (
            ("done", "green"),
            ("in flight", "cyan"),
            ("failed", "red"),
            ("pending", "dim"),
            ("needs-attention", "bold magenta"),
            ("skipped", "yellow"),
        ):
            if key in ("skipped", "needs-attention") and not c[key]:
                continue  # shown only when they happen, to keep the header on one line
            text.append(f"{key} {c[key]}", style=style)
            text.append("  ")
        elapsed = m.clock() - r.started_at if r.started_at else None
        text.append(f"elapsed {fmt_duration(elapsed)}  ETA {fmt_duration(m.eta())}")
        if r.state == RolloutState.PAUSED and r.pause_reason:
            text.append(f"\n  paused: {r.pause_reason}", style="yellow")
        # The header's height changes only when the pause line comes or goes.
        lines = text.plain.count("\n")
        self.update(text, layout=lines != self._lines)
        self._lines = lines


class FleetTable(ScrollView, can_focus=True):
    """One line per appliance, drawn with the Line API: a repaint touches only the visible rows that
    changed, and each row's strip is cached until its data, cursor or mark changes.
    (DataTable's update_cell throws its whole render cache away on every call.)"""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"fleet-table--header", "fleet-table--cursor", "fleet-table--odd"}
    DEFAULT_CSS = """
    FleetTable { background: $surface; }
    FleetTable > .fleet-table--header { text-style: bold; background: $panel; color: $foreground; }
    FleetTable > .fleet-table--cursor { background: $primary 50%; }
    FleetTable:focus > .fleet-table--cursor { background: $primary; }
    FleetTable > .fleet-table--odd { background: $foreground 4%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]
    WIDTHS = (1, 8, 5, 8, 21, 15, 9, 5, 7, 11, 6, 0)

    class Highlighted(Message):
        def __init__(self, name: str | None) -> None:
            super().__init__()
            self.name = name

    def __init__(self, model: FleetModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.marks: set[str] = set()
        self.filter_text = ""
        self.sort_key = "name"
        self.shown: list[str] = []
        self._index: dict[str, int] = {}
        self.cursor_row = 0
        self._versions: dict[str, int] = {}
        self._cache: OrderedDict[tuple[object, ...], Strip] = OrderedDict()
        self._style_generation = 0

    def on_mount(self) -> None:
        self.rebuild()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style_generation += 1  # a theme change re-renders every row
        self._cache.clear()

    # --- data ----------------------------------------------------------------------------------
    def matches(self, row: Row) -> bool:
        if not self.filter_text:
            return True
        needle = self.filter_text.lower()
        return any(
            needle in str(v).lower()
            for v in (row.name, row.group, row.cluster, row.state, row.version, row.listeners, row.message)
        )

    def ordered(self) -> list[str]:
        rows = [r for r in self.model.rows.values() if self.matches(r)]
        key = self.sort_key
        if key == "name":
            rows.sort(key=lambda r: r.name)
        elif key == "depth":
            rows.sort(key=lambda r: (-(r.depth or 0), r.name))
        elif key == "percent":
            rows.sort(key=lambda r: (-r.percent, r.name))
        else:
            rows.sort(key=lambda r: (str(getattr(r, key)), r.name))
        return [r.name for r in rows]

    def cells(self, row: Row) -> list[Text | str]:
        target = str(self.model.rollout.target)
        style = STATE_STYLE.get(row.state, IN_FLIGHT_STYLE)
        version = row.version if row.version == target else f"{row.version}→{target}"
        listeners = Text(
            row.listeners,
            style="bold yellow"
            if row.listeners == "suspended"
            else ("bold magenta" if row.listeners == "unknown" else "green"),
        )
        depth = "" if row.depth is None else str(row.depth)
        end = row.finished or self.model.clock()
        elapsed = fmt_duration(end - row.started) if row.started else "-"
        return [
            Text("●", style="bold yellow") if row.name in self.marks else "",
            Text(row.name, style="bold"),
            row.group,
            row.cluster,
            Text(version, style="green" if row.version == target else ""),
            Text(row.state, style=style),
            listeners,
            Text(depth, style="bold yellow" if row.draining else ""),
            Text(row.image, style="green" if row.image == "staged" else ("yellow" if row.image != "-" else "dim")),
            f"{bar(row.percent, 6)} {int(row.percent):>3}%",
            elapsed,
            row.message,
        ]

    def cell_text(self, name: str, column: str) -> str:
        return str(self.cells(self.model.rows[name])[COLUMNS.index(column)])

    @property
    def row_count(self) -> int:
        return len(self.shown)

    def rebuild(self) -> None:
        """Re-order rows (filter or sort changed); keeps the cursor on the same appliance."""
        current = self.selected_name()
        self.shown = self.ordered()
        self._index = {name: i for i, name in enumerate(self.shown)}
        self.virtual_size = Size(self.size.width, len(self.shown) + 1)
        self.cursor_row = self._index.get(current, 0) if current else 0
        self.cursor_row = min(self.cursor_row, max(0, len(self.shown) - 1))
        self.model.take_dirty()
        self._cache.clear()
        self._scroll_to_cursor()
        self.refresh()

    def repaint(self, dirty: set[str]) -> None:
        """Invalidate the changed rows; only those on screen are redrawn."""
        top = int(self.scroll_offset.y)
        bottom = top + self.size.height
        for name in dirty:
            self._versions[name] = self._versions.get(name, 0) + 1
            idx = self._index.get(name)
            if idx is not None and top <= idx < bottom:
                self.refresh_line(idx + 1)

    # --- cursor --------------------------------------------------------------------------------
    def selected_name(self) -> str | None:
        if 0 <= self.cursor_row < len(self.shown):
            return self.shown[self.cursor_row]
        return None

    def targets(self) -> list[str]:
        """Marked appliances, or the selected one."""
        if self.marks:
            return sorted(self.marks)
        name = self.selected_name()
        return [name] if name else []

    def move_cursor(self, row: int) -> None:
        if not self.shown:
            return
        old = self.cursor_row
        self.cursor_row = max(0, min(row, len(self.shown) - 1))
        if old != self.cursor_row:
            self.refresh_line(old + 1)
            self.refresh_line(self.cursor_row + 1)
            self._scroll_to_cursor()
            self.post_message(self.Highlighted(self.selected_name()))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)  # the first line is the header
        top = int(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_jump(self, row: int) -> None:
        self.move_cursor(row if row >= 0 else len(self.shown) - 1)

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(int(self.scroll_offset.y) + event.y - 1)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.refresh()

    # --- drawing -------------------------------------------------------------------------------
    def _line(self, cells: list[Text | str], width: int) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        used = 0
        for value, col_width in zip(cells, self.WIDTHS, strict=True):
            text = value if isinstance(value, Text) else Text(value)
            w = col_width or max(0, width - used - 1)
            if w <= 0:
                break
            piece = text.copy()
            piece.truncate(w, overflow="ellipsis", pad=True)
            line.append(" ")
            line.append_text(piece)
            used += w + 1
        return line

    def _strip(self, text: Text, width: int, style: Style) -> Strip:
        segments = list(text.render(self.app.console))
        return Strip(segments).adjust_cell_length(width).apply_style(style)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if y == 0:
            key: tuple[object, ...] = ("header", width, self._style_generation)
            strip = self._cache.get(key)
            if strip is None:
                header = self.get_component_rich_style("fleet-table--header")
                strip = self._strip(self._line(list(COLUMNS), width), width, base + header)
                self._cache[key] = strip
            return strip
        idx = int(self.scroll_offset.y) + y - 1
        if idx >= len(self.shown):
            return Strip.blank(width, base)
        name = self.shown[idx]
        cursor = idx == self.cursor_row
        key = (name, self._versions.get(name, 0), cursor, name in self.marks, idx % 2, width, self._style_generation)
        strip = self._cache.get(key)
        if strip is None:
            style = base
            if idx % 2:
                style = style + self.get_component_rich_style("fleet-table--odd")
            if cursor:
                style = style + self.get_component_rich_style("fleet-table--cursor")
            strip = self._strip(self._line(self.cells(self.model.rows[name]), width), width, style)
            self._cache[key] = strip
            if len(self._cache) > 4000:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return strip


class WorkQueuePanel(Vertical):
    """Work-queue depth over time: the selected appliance and the fleet; draining ones highlighted."""

    def __init__(self, model: FleetModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.selected: str | None = None
        self.border_title = "Work queue"

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(id="wq-selected-label")
        yield Sparkline([], id="wq-selected")
        yield Static(id="wq-fleet-label")
        yield Sparkline([], id="wq-fleet")
        yield Static(id="wq-draining")

    def refresh_from_model(self) -> None:
        m = self.model
        name = self.selected
        row = m.rows.get(name) if name else None
        history = list(row.depth_history) if row else []
        self.query_one("#wq-selected-label", Static).update(
            f"{name or '-'}: {row.depth if row and row.depth is not None else '-'} messages", layout=False
        )
        self.query_one("#wq-selected", Sparkline).data = history
        fleet = list(m.fleet_depth)
        self.query_one("#wq-fleet-label", Static).update(f"fleet: {fleet[-1] if fleet else 0} messages", layout=False)
        self.query_one("#wq-fleet", Sparkline).data = fleet
        draining = [r for r in m.rows.values() if r.draining]
        text = Text("draining: ", style="bold")
        if not draining:
            text.append("none", style="dim")
        for r in draining[:12]:
            text.append(f"{r.name} {r.depth} ", style="bold yellow")
        self.query_one("#wq-draining", Static).update(text, layout=False)


class UpgradeProgressPanel(Static):
    """A bar per appliance in flight, by phase, and the batch's overall progress."""

    def __init__(self, model: FleetModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.border_title = "Upgrade progress"

    def refresh_from_model(self) -> None:
        m = self.model
        rows = sorted(m.in_flight(), key=lambda r: r.name)
        members = m.batch_members
        finished = sum(1 for n in members if m.rows[n].state in ("done", "failed", "skipped", "needs-attention"))
        head = Text(f"batch {m.batch[0]}: {finished}/{len(members)} finished  ", style="bold")
        head.append(bar(100 * finished / len(members) if members else 0, 20))
        table = Table.grid(padding=(0, 1))
        table.add_column(width=8)
        table.add_column(width=9)
        table.add_column()
        table.add_column(width=4, justify="right")
        for r in rows[:14]:
            table.add_row(r.name, r.phase or r.state, Text(bar(r.percent, 16), style="cyan"), f"{int(r.percent)}%")
        if len(rows) > 14:
            table.add_row("", f"+{len(rows) - 14} more", "", "")
        if not rows:
            self.update(Group(head, Text("nothing in flight", style="dim")), layout=False)
            return
        self.update(Group(head, table), layout=False)


class RebootPanel(Static):
    """Each rebooting appliance: time since reboot, probe stage, attempts, last error, time left."""

    def __init__(self, model: FleetModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.border_title = "Reboot polling"

    def refresh_from_model(self) -> None:
        m = self.model
        now = m.clock()
        table = Table.grid(padding=(0, 1))
        for col, width in (("name", 8), ("since", 6), ("stage", 7), ("try", 4), ("left", 6), ("error", None)):
            table.add_column(col, width=width)
        table.add_row(*(Text(h, style="bold") for h in ("appliance", "since", "stage", "try", "left", "last error")))
        for name, st in sorted(m.reboots.items()):
            left = st.deadline - now
            table.add_row(
                name,
                fmt_duration(now - st.since),
                Text(st.stage.upper(), style="bold cyan"),
                str(st.attempts),
                Text(fmt_duration(left), style="red" if left < 60 else ""),
                Text((st.error or "")[:40], style="dim"),
            )
        if not m.reboots:
            self.update(Group(table, Text("no appliance rebooting", style="dim")), layout=False)
            return
        self.update(table, layout=False)
