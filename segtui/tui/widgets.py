"""Dashboard widgets: header, fleet table, work-queue, progress and reboot panels, event log, batch view."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.containers import Vertical
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import RichLog, Sparkline, Static

from segtui.rollout.events import RolloutState
from segtui.textsafe import one_line
from segtui.tui.model import BAKE_STEP, GUARD_STEP, FleetModel, Row, fmt_age, fmt_duration

# State -> component class: the themes restyle them (high-contrast too); nothing here names a colour.
STATE_CLASS = {
    "done": "fleet-table--done",
    "failed": "fleet-table--failed",
    "needs-attention": "fleet-table--attention",
    "pending": "fleet-table--pending",
    "skipped": "fleet-table--skipped",
    GUARD_STEP: "fleet-table--guard",
    BAKE_STEP: "fleet-table--guard",
}
IN_FLIGHT_CLASS = "fleet-table--inflight"
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
    "Time",
    "Last message",
)
# Which columns go first when the terminal is narrow (higher: kept longer). State and Name never go.
COLUMN_PRIORITY = (9, 10, 7, 2, 6, 10, 8, 6, 1, 5, 4, 8)
SORT_KEYS = ("name", "group", "state", "version", "depth", "percent", "batch")
SORT_COLUMN = {
    "name": "Name",
    "group": "Group",
    "state": "State",
    "version": "Version",
    "depth": "Queue",
    "percent": "Progress",
    "batch": "Last message",
}


def bar(percent: float, width: int = 10) -> str:
    filled = round(width * max(0.0, min(100.0, percent)) / 100)
    return "█" * filled + "░" * (width - filled)


class FleetHeader(Static):
    """Fleet, environment (production in red), target, rollout state, batch, counts, elapsed, ETA, badges."""

    def __init__(self, model: FleetModel, *, readonly: bool = False, watching: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.readonly = readonly
        self.watching = watching  # who holds the lock, for `segtui watch`
        self._lines = -1

    def build(self) -> Text:
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
        if self.readonly:
            text.append(" READ-ONLY ", style="bold black on yellow")
        text.append(f"  target {r.target}  ")
        label = m.state_label()
        state_style = {
            "running": "bold green",
            "paused": "bold yellow",
            "aborted": "bold red",
            "done": "bold blue",
            "finished with failures": "bold red",
            "ready": "bold",
        }.get(label, "")
        text.append(f"[{label}]", style=state_style)
        batch, total = m.batch
        if batch:
            text.append(f"  batch {batch} of {max(total, batch)}")
        text.append("  ")
        c = m.counts()
        for key, style in (
            ("done", "green"),
            ("in flight", "cyan"),
            ("failed", "red"),
            ("pending", "dim"),
            ("needs-attention", "bold magenta"),
            ("skipped", "yellow"),
            ("guard", "bold yellow"),
        ):
            if key in ("skipped", "needs-attention", "guard") and not c[key]:
                continue  # shown only when they happen, to keep the header on one line
            label_key = "waiting on a guard" if key == "guard" else key
            text.append(f"{label_key} {c[key]}", style=style)
            text.append("  ")
        elapsed = m.clock() - r.started_at if r.started_at else None
        text.append(f"elapsed {fmt_duration(elapsed)}  ")
        if r.state == RolloutState.PAUSED:
            text.append("ETA paused", style="yellow")
        else:
            eta = m.eta()
            left = m.window_left()
            late = eta is not None and left is not None and eta > left
            text.append(f"ETA {fmt_duration(eta)}", style="bold red" if late else "")
            if left is not None:
                text.append(f"  window {fmt_duration(left)}", style="bold red" if late else "")
        cap = getattr(r, "cap_note", None)
        note = cap() if callable(cap) else None
        if note:
            text.append(f"\n  {one_line(str(note))}", style="yellow")
        if self.watching:
            text.append(f"\n  watching: {one_line(self.watching)}", style="cyan")
        if r.state == RolloutState.PAUSED and r.pause_reason:
            text.append(f"\n  paused: {one_line(r.pause_reason)}", style="yellow")
        return text

    def refresh_from_model(self) -> None:
        text = self.build()
        # The header's height changes only when a second line comes or goes.
        lines = text.plain.count("\n")
        self.update(text, layout=lines != self._lines)
        self._lines = lines


class FleetTable(ScrollView, can_focus=True):
    """One line per appliance, drawn with the Line API: a repaint touches only the visible rows that
    changed, and each row's strip is cached until its data, cursor or mark changes.
    (DataTable's update_cell throws its whole render cache away on every call.)"""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "fleet-table--header",
        "fleet-table--cursor",
        "fleet-table--odd",
        "fleet-table--done",
        "fleet-table--failed",
        "fleet-table--attention",
        "fleet-table--pending",
        "fleet-table--skipped",
        "fleet-table--guard",
        "fleet-table--inflight",
        "fleet-table--suspended",
        "fleet-table--stale",
        "fleet-table--mark",
    }
    DEFAULT_CSS = """
    FleetTable { background: $surface; }
    FleetTable > .fleet-table--header { text-style: bold; background: $panel; color: $foreground; }
    FleetTable > .fleet-table--cursor { background: $primary 50%; }
    FleetTable:focus > .fleet-table--cursor { background: $primary; }
    FleetTable > .fleet-table--odd { background: $foreground 4%; }
    FleetTable > .fleet-table--done { color: $success; text-style: bold; }
    FleetTable > .fleet-table--failed { color: $error; text-style: bold; }
    FleetTable > .fleet-table--attention { color: $accent; text-style: bold reverse; }
    FleetTable > .fleet-table--pending { color: $text-muted; }
    FleetTable > .fleet-table--skipped { color: $warning; }
    FleetTable > .fleet-table--guard { color: $warning; text-style: bold; }
    FleetTable > .fleet-table--inflight { color: $secondary; text-style: bold; }
    FleetTable > .fleet-table--suspended { color: $warning; text-style: bold; }
    FleetTable > .fleet-table--stale { color: $text-muted; text-style: italic; }
    FleetTable > .fleet-table--mark { color: $warning; text-style: bold; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]
    WIDTHS = (1, 8, 6, 8, 21, 15, 9, 7, 7, 9, 6, 0)
    MIN_MESSAGE = 18

    def __init__(self, model: FleetModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.marks: set[str] = set()
        self.filter_text = ""
        self.sort_key = "name"
        self.sort_reverse = False
        self.shown: list[str] = []
        self._index: dict[str, int] = {}
        self.cursor_row = 0
        self._versions: dict[str, int] = {}
        self._cache: LRUCache[tuple[object, ...], Strip] = LRUCache(4000)
        self._styles: dict[str, Style] = {}
        self._style_generation = 0

    def on_mount(self) -> None:
        self.rebuild()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style_generation += 1  # a theme change re-renders every row
        self._cache.clear()
        self._styles.clear()

    def _style(self, component: str) -> Style:
        style = self._styles.get(component)
        if style is None:
            style = self._styles[component] = self.get_component_rich_style(component, partial=True)
        return style

    # --- data ----------------------------------------------------------------------------------
    def state_filter(self) -> str | None:
        """`/failed`-style filter: a state (or `in flight`) after a leading slash."""
        if self.filter_text.startswith("/"):
            return self.filter_text[1:].strip().lower()
        return None

    def matches(self, row: Row) -> bool:
        if not self.filter_text:
            return True
        state = self.state_filter()
        if state is not None:
            if state in ("in flight", "inflight", "running"):
                return row.in_flight
            return row.state == state or (state == "attention" and row.state == "needs-attention")
        needle = self.filter_text.lower()
        return any(
            needle in str(v).lower()
            for v in (row.name, row.group, row.cluster, row.state, row.version, row.listeners, self.model.outcome(row))
        )

    def ordered(self) -> list[str]:
        rows = [r for r in self.model.rows.values() if self.matches(r)]
        key = self.sort_key
        if key == "name":
            rows.sort(key=lambda r: r.name)
        elif key == "depth":
            rows.sort(key=lambda r: (-(self.model.fresh_depth(r) or 0), r.name))
        elif key == "percent":
            rows.sort(key=lambda r: (-(self.model.progress(r) or 0), r.name))
        elif key == "batch":
            rows.sort(key=lambda r: (r.batch is None, r.batch or 0, r.name))
        else:
            rows.sort(key=lambda r: (str(getattr(r, key) or ""), r.name))
        if self.sort_reverse:
            rows.reverse()
        return [r.name for r in rows]

    def cells(self, row: Row) -> list[Text]:
        m = self.model
        target = str(m.rollout.target)
        state_style = self._style(STATE_CLASS.get(row.state, IN_FLIGHT_CLASS))
        if row.version is None:
            version = Text(f"?→{target}" if not row.final else "?", style=self._style("fleet-table--stale"))
        elif row.version == target:
            version = Text(row.version, style=self._style("fleet-table--done"))
        else:
            version = Text(f"{row.version}→{target}" if not row.final else row.version)
        listeners = Text(row.listeners)
        if row.listeners != "active":
            listeners.stylize(self._style("fleet-table--suspended"))
        depth = Text("")
        if row.depth is not None:
            age = m.depth_age(row) or 0.0
            if age > m.stale_after():
                depth = Text(f"{row.depth} {fmt_age(age)}", style=self._style("fleet-table--stale"))
            else:
                depth = Text(f"{row.depth}" + (f" {fmt_age(age)}" if age >= 5 else ""))
                if row.draining:
                    depth.stylize(self._style("fleet-table--suspended"))
        progress = m.progress(row)
        if progress is None:
            progress_text = Text("-", style=self._style("fleet-table--pending"))
        else:
            progress_text = Text(f"{bar(progress, 4)} {int(progress):>3}%")
            if row.final and row.state != "done":
                progress_text.stylize(state_style)
        end = row.finished or m.clock()
        elapsed = fmt_duration(end - row.started) if row.started else "-"
        state_text = row.state
        if row.state == BAKE_STEP and row.bake_until is not None:
            state_text = f"baking {fmt_duration(row.bake_until - m.clock())}"
        image_style = (
            "fleet-table--done"
            if row.image == "staged"
            else ("fleet-table--skipped" if row.image != "-" else "fleet-table--pending")
        )
        return [
            Text("●", style=self._style("fleet-table--mark")) if row.name in self.marks else Text(""),
            Text(row.name, style="bold"),
            Text(row.group),
            Text(row.cluster),
            version,
            Text(state_text, style=state_style),
            listeners,
            depth,
            Text(row.image, style=self._style(image_style)),
            progress_text,
            Text(elapsed),
            Text(one_line(m.outcome(row))),
        ]

    def visible_columns(self, width: int) -> list[int]:
        """Column indexes that fit in `width`, dropping the lowest priority first; State always stays."""
        keep = list(range(len(COLUMNS)))

        def need(cols: list[int]) -> int:
            return sum(self.WIDTHS[c] + 1 for c in cols if self.WIDTHS[c]) + self.MIN_MESSAGE

        while need(keep) > width:
            droppable = [c for c in keep if COLUMNS[c] not in ("State", "Name", "Last message")]
            if not droppable:
                break
            keep.remove(min(droppable, key=lambda c: COLUMN_PRIORITY[c]))
        return keep

    def header_cells(self) -> list[Text]:
        arrow = "▼" if self.sort_reverse else "▲"
        wanted = SORT_COLUMN.get(self.sort_key, "")
        out = []
        for col in COLUMNS:
            label = f"{col}{arrow}" if col == wanted and col != "Last message" else col
            if col == "Last message" and self.sort_key == "batch":
                label = f"Last message (batch{arrow})"
            out.append(Text(label))
        return out

    def drawn_line(self, name: str) -> str:
        """The plain text of an appliance's line as it is on screen now (from the strip cache)."""
        idx = self._index[name]
        return self.render_line(idx - int(self.scroll_offset.y) + 1).text

    def drawn_cells(self, name: str) -> dict[str, str]:
        """The appliance's line as drawn now, cut at the column bounds: what the operator reads."""
        line = self.drawn_line(name)
        out: dict[str, str] = {}
        pos = 0
        width = self.size.width
        for col in self.visible_columns(width):
            w = self.WIDTHS[col] or max(0, width - pos - 1)
            out[COLUMNS[col]] = line[pos + 1 : pos + 1 + w].strip()
            pos += w + 1
        return out

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
        """Invalidate the changed rows; only those on screen are redrawn. A state change may move a row out of
        (or into) a state filter or a sort: then the order is rebuilt."""
        if dirty and (self.state_filter() is not None or self.sort_key != "name" or self.filter_text):
            if self.ordered() != self.shown:
                for name in dirty:
                    self._versions[name] = self._versions.get(name, 0) + 1
                self.rebuild()
                return
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
    def _line(self, cells: list[Text], width: int) -> Text:
        line = Text(no_wrap=True, overflow="ellipsis")
        used = 0
        for col in self.visible_columns(width):
            col_width = self.WIDTHS[col]
            w = col_width or max(0, width - used - 1)
            if w <= 0:
                break
            piece = cells[col].copy()
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
            key: tuple[object, ...] = ("header", width, self._style_generation, self.sort_key, self.sort_reverse)
            strip = self._cache.get(key)
            if strip is None:
                header = self.get_component_rich_style("fleet-table--header")
                strip = self._strip(self._line(self.header_cells(), width), width, base + header)
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
        return strip


class WorkQueuePanel(Vertical):
    """Work-queue depth over time: the selected appliance, the fleet, draining ones, and the in-service peers of
    the appliances out of service (where their mail goes)."""

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
        label = Text(f"{name or '-'}: ")
        if row is None or row.depth is None:
            label.append("-", style="dim")
        else:
            age = m.depth_age(row) or 0.0
            stale = age > m.stale_after()
            label.append(f"{row.depth} messages", style="dim italic" if stale else "")
            label.append(f" ({fmt_duration(age)} ago{', stale' if stale else ''})", style="dim")
        self.query_one("#wq-selected-label", Static).update(label, layout=False)
        self.query_one("#wq-selected", Sparkline).data = history
        fleet = list(m.fleet_depth)
        polled = [r for r in m.rows.values() if m.fresh_depth(r) is not None]
        fleet_label = Text(f"fleet: {fleet[-1] if fleet else 0} messages")
        fleet_label.append(f" ({len(polled)} polled)", style="dim")
        self.query_one("#wq-fleet-label", Static).update(fleet_label, layout=False)
        self.query_one("#wq-fleet", Sparkline).data = fleet
        draining = [r for r in m.rows.values() if r.draining and m.fresh_depth(r) is not None]
        text = Text("draining: ", style="bold")
        if not draining:
            text.append("none", style="dim")
        for r in draining[:8]:
            text.append(f"{r.name} {r.depth} ", style="bold yellow")
        peers = m.peers_of_out_of_service()
        if peers:
            text.append("\npeers: ", style="bold")
            for r in peers[:8]:
                depth = m.fresh_depth(r)
                text.append(f"{r.name} {'-' if depth is None else depth} ")
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
        finished = sum(1 for n in members if m.rows[n].final)
        if not members:  # no batch has started yet (or this is a read-only view of a rollout left as it was)
            head = Text(f"no batch under way ({m.batch[1]} planned)", style="dim")
        else:
            what = "retries" if m.batches and m.batches[-1].retries else f"batch {m.batch[0]} of {m.batch[1]}"
            head = Text(f"{what}: {finished}/{len(members)} finished  ", style="bold")
            head.append(bar(100 * finished / len(members), 20))
        table = Table.grid(padding=(0, 1))
        table.add_column(width=8)
        table.add_column(width=9)
        table.add_column()
        table.add_column(width=4, justify="right")
        for r in rows[:14]:
            pct = m.progress(r) or 0.0
            table.add_row(Text(r.name), Text(r.phase or r.state), Text(bar(pct, 16), style="cyan"), f"{int(pct)}%")
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
                Text(name),
                fmt_duration(now - st.since),
                Text(st.stage.upper(), style="bold cyan"),
                str(st.attempts),
                Text(fmt_duration(left), style="red" if left < 60 else ""),
                Text(one_line(st.error or "", 40), style="dim"),
            )
        if not m.reboots:
            self.update(Group(table, Text("no appliance rebooting", style="dim")), layout=False)
            return
        self.update(table, layout=False)


class EventLogPanel(RichLog):
    """Every state change, failure, pause and operator action, with its time; filtered like the table."""

    def __init__(self, model: FleetModel, **kwargs: object) -> None:
        super().__init__(markup=False, highlight=False, wrap=False, max_lines=4000, **kwargs)  # type: ignore[arg-type]
        self.model = model
        self.border_title = "Event log (l)"
        self._written = 0
        self._needle = ""

    def refresh_from_model(self, needle: str = "") -> None:
        m = self.model
        needle = needle.lower().lstrip("/")
        if needle != self._needle:
            self._needle = needle
            self.clear()
            self._written = max(0, m.log_version - len(m.log))
        new = m.log_version - self._written
        if new <= 0:
            return
        entries = list(m.log)[-min(new, len(m.log)) :]
        for entry in entries:
            line = entry.line()
            if needle and needle not in line.lower():
                continue
            style = {"error": "bold red", "warning": "yellow"}.get(entry.level, "")
            self.write(Text(line, style=style))
        self._written = m.log_version
        if needle:
            self.border_subtitle = f"filter {needle!r}"
        else:
            self.border_subtitle = ""


class BatchPanel(Static):
    """Which appliance is in which batch, the current batch, a summary line per finished batch, and the plan."""

    def __init__(self, model: FleetModel, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.model = model
        self.border_title = "Batches (b)"

    def build(self) -> Text:
        m = self.model
        text = Text()
        current = m.batch[0]
        for b in m.batches:
            mark = "▶ " if b.finished is None else "  "
            text.append(mark, style="bold cyan")
            if b.finished is not None:
                text.append(m.batch_summary(b), style="red" if b.failures else "green")
            else:
                text.append("retries: under way" if b.retries else f"batch {b.index}: under way", style="bold cyan")
            text.append(": ")
            for n in b.members:
                row = m.rows.get(n)
                style = self.state_style(row.state if row else "pending")
                text.append(n, style=style)
                text.append(" ")
            text.append("\n")
        planned = self.planned()
        first = max((b.index for b in m.batches if not b.retries), default=current) + 1
        for i, names in enumerate(planned, start=first):
            text.append(f"  batch {i} (planned): ", style="dim")
            text.append(" ".join(names) + "\n", style="dim")
        if not text:
            text.append("no batch yet", style="dim")
        return text

    @staticmethod
    def state_style(state: str) -> str:
        return {
            "done": "green",
            "failed": "bold red",
            "needs-attention": "bold magenta",
            "skipped": "yellow",
            "pending": "dim",
        }.get(state, "bold cyan")

    def planned(self) -> list[list[str]]:
        """The batches still to come, from the rollout's plan: pending appliances not yet in a started batch."""
        m = self.model
        r = m.rollout
        plan_of = getattr(r, "batches", None)
        plan: list[list[str]] = plan_of() if callable(plan_of) else []
        started = max((b.index for b in m.batches if not b.retries), default=m.batch[0])
        out: list[list[str]] = []
        for names in plan[started:]:
            left = [n for n in names if n in m.rows and m.rows[n].state == "pending" and m.rows[n].batch is None]
            if left:
                out.append(left)
        return out

    def refresh_from_model(self) -> None:
        self.update(self.build(), layout=False)
