"""Dashboard widgets: FleetHeader, FleetTable, WorkQueuePanel, UpgradeProgressPanel, RebootPanel."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Sparkline, Static

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
        self.update(text)


class FleetTable(DataTable[Text | str]):
    """One row per appliance; repainted from the model's dirty set on a timer, never per event."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("o", "app.sort_next", "Sort", show=False)]

    def __init__(self, model: FleetModel, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.model = model
        self.marks: set[str] = set()
        self.filter_text = ""
        self.sort_key = "name"
        self.shown: list[str] = []

    def on_mount(self) -> None:
        widths = (1, 8, 5, 8, 21, 15, 9, 5, 11, 6, 40)
        for label, width in zip(COLUMNS, widths, strict=True):
            self.add_column(label, key=label or "mark", width=width)
        self.rebuild()

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
        depth_text = Text(depth, style="bold yellow" if row.draining else "")
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
            depth_text,
            f"{bar(row.percent, 6)} {int(row.percent):>3}%",
            elapsed,
            row.message[:80],
        ]

    def rebuild(self) -> None:
        """Re-create rows (filter or sort changed); keeps the cursor on the same appliance."""
        current = self.selected_name()
        self.clear()
        self.shown = self.ordered()
        for name in self.shown:
            self.add_row(*self.cells(self.model.rows[name]), key=name)
        if current in self.shown:
            self.move_cursor(row=self.shown.index(current))
        self.model.take_dirty()

    def repaint(self, dirty: set[str]) -> None:
        if not dirty:
            return
        shown = set(self.shown)
        for name in dirty:
            if name not in shown:
                continue
            cells = self.cells(self.model.rows[name])
            for label, value in zip(COLUMNS, cells, strict=True):
                # update_width stays False on this hot path: widths are fixed.
                self.update_cell(name, label or "mark", value)

    def selected_name(self) -> str | None:
        if not self.shown or self.cursor_row < 0 or self.cursor_row >= len(self.shown):
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:
            return None

    def targets(self) -> list[str]:
        """Marked appliances, or the selected one."""
        if self.marks:
            return sorted(self.marks)
        name = self.selected_name()
        return [name] if name else []


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
            f"{name or '-'}: {row.depth if row and row.depth is not None else '-'} messages"
        )
        self.query_one("#wq-selected", Sparkline).data = history or [0]
        fleet = list(m.fleet_depth)
        self.query_one("#wq-fleet-label", Static).update(f"fleet: {fleet[-1] if fleet else 0} messages")
        self.query_one("#wq-fleet", Sparkline).data = fleet or [0]
        draining = [r for r in m.rows.values() if r.draining]
        text = Text("draining: ", style="bold")
        if not draining:
            text.append("none", style="dim")
        for r in draining[:12]:
            text.append(f"{r.name} {r.depth} ", style="bold yellow")
        self.query_one("#wq-draining", Static).update(text)


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
            self.update(Group(head, Text("nothing in flight", style="dim")))
            return
        self.update(Group(head, table))


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
            self.update(Group(table, Text("no appliance rebooting", style="dim")))
            return
        self.update(table)
