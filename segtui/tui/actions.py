"""Keys of the dashboard: each operator key serves actions of `segtui.rollout.controls.ACTIONS`; the rest view.

Bindings, help (`?`), the command palette, the footer and the read-only filter are all built from `KEYS`, and
every operator action passes `gate_for` whatever the path (key or palette). The `Rollout` calls that the engine is
growing (`can`, `unpause(who, max_fail)`, `skip/retry/override_guard(name, who)`) go through the small adapters
below, so the dashboard works against the engine on main and the one being extended.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.binding import Binding

from segtui.rollout.controls import ACTIONS, OperatorAction
from segtui.rollout.engine import Rollout
from segtui.rollout.events import FINAL_STATES, RolloutState, State
from segtui.rollout.journal import operator


@dataclass(frozen=True)
class Key:
    key: str  # Textual's key name
    shown: str  # how help and README write it
    handler: str  # the App's action name (without `action_`)
    title: str
    description: str
    actions: tuple[str, ...] = ()  # ids in ACTIONS this key serves; empty: a view key, never changes anything
    footer: bool = True
    short: str = ""  # the footer's label (the title when empty)

    @property
    def changes(self) -> bool:
        return any(ACTIONS[a].changes for a in self.actions)

    def operator_actions(self) -> list[OperatorAction]:
        return [ACTIONS[a] for a in self.actions]

    def applies(self, state: RolloutState) -> bool:
        """A view key always applies; an operator key when one of its actions applies in this state."""
        return not self.actions or any(state in ACTIONS[a].when for a in self.actions)


KEYS: tuple[Key, ...] = (
    Key(
        "g",
        "g",
        "go",
        "Go / promote",
        "start the rollout; promote (unpause) the next batch; override a guard",
        ("start", "unpause", "override_guard"),
        short="Go",
    ),
    Key(
        "p",
        "p",
        "pause",
        "Pause / unpause",
        "pause (appliances under way finish their step); unpause",
        ("pause", "unpause"),
        short="Pause",
    ),
    Key("a", "a", "abort", ACTIONS["abort"].title, ACTIONS["abort"].description, ("abort",), short="Abort"),
    Key(
        "s",
        "s",
        "suspend_listeners",
        ACTIONS["suspend_listeners"].title,
        f"{ACTIONS['suspend_listeners'].title.lower()} {ACTIONS['suspend_listeners'].description}",
        ("suspend_listeners",),
        short="Suspend",
    ),
    Key(
        "r",
        "r",
        "resume_listeners",
        ACTIONS["resume_listeners"].title,
        f"{ACTIONS['resume_listeners'].title.lower()} {ACTIONS['resume_listeners'].description}",
        ("resume_listeners",),
        short="Resume",
    ),
    Key("x", "x", "skip", ACTIONS["skip"].title, ACTIONS["skip"].description, ("skip",), short="Skip"),
    Key("R", "R", "retry", ACTIONS["retry"].title, ACTIONS["retry"].description, ("retry",), short="Retry"),
    Key("space", "space", "mark", "Mark", "mark / unmark the selected appliance", footer=False),
    Key("slash", "/", "filter", "Filter", "filter rows: text, or /failed (a state); the count of matches shows"),
    Key(
        "f",
        "f",
        "state_filter",
        "State filter",
        "cycle the state filter: failed, in flight, pending, done, all",
        footer=False,
    ),
    Key("o", "o", "sort_next", "Sort", "sort by the next column (the header marks it ▲/▼)", footer=False),
    Key("O", "O", "sort_reverse", "Reverse sort", "reverse the sort order", footer=False),
    Key(
        "enter",
        "enter",
        "detail",
        "Detail",
        "appliance detail: live steps, path, backups, transcript (/ search)",
        footer=False,
    ),
    Key(
        "l",
        "l",
        "toggle_log",
        "Event log",
        "show / hide the event log (every change, failure, operator action)",
        short="Log",
    ),
    Key(
        "b",
        "b",
        "toggle_batches",
        "Batches",
        "show / hide the batch view (which appliance in which batch)",
        short="Batches",
    ),
    Key(
        "w",
        "w",
        "toggle_panels",
        "Panels",
        "show / hide the side panels (folded under the table when narrow)",
        footer=False,
    ),
    Key("t", "t", "next_theme", "Theme", "next theme (noc-dark, noc-light, high-contrast)", footer=False),
    Key("question_mark", "?", "help", "Help", "every key"),
    Key("q", "q", "quit_app", "Quit", "quit (asks while a rollout runs; `segtui resume` continues it)"),
)
BY_HANDLER: dict[str, Key] = {k.handler: k for k in KEYS}
BY_KEY: dict[str, Key] = {k.key: k for k in KEYS}


def markdown_table(production: bool = False) -> str:
    """The README's key table, from the same rows as `?` (so the two cannot disagree)."""
    from segtui.rollout.controls import Gate, gate_for

    lines = ["| Key | What it does | Asks |", "|---|---|---|"]
    for key in KEYS:
        gates = {gate_for(a, production) for a in key.operator_actions()}
        asks = "fleet name (production)" if Gate.TYPE_NAME in gates else ("`y`" if Gate.CONFIRM in gates else "")
        if key.operator_actions() and not production:
            capacity = any(a.capacity for a in key.operator_actions())
            asks = "`y`; fleet name on production" if capacity else asks
        lines.append(f"| `{key.shown}` | {key.description} | {asks} |")
    lines.append("| `ctrl+p` | command palette: the same actions, the same questions | as the key |")
    return "\n".join(lines)


def bindings() -> list[Binding]:
    return [Binding(k.key, k.handler, k.short or k.title, show=k.footer) for k in KEYS] + [
        Binding("escape", "close_filter", show=False)
    ]


def why_not(
    key: Key, rollout: Rollout, readonly: bool, *, watching: bool = False, selected: str | None = None
) -> str | None:
    """Why this key does nothing now, or None when it applies."""
    if key.changes and watching:
        return "watching: this dashboard only shows the rollout; act from the segtui that drives it"
    if key.changes and readonly:
        return "read-only: nothing is changed from this dashboard"
    if not key.applies(rollout.state):
        return f"rollout is {rollout.state.value}: {key.title.lower()} does not apply"
    if (
        key.handler == "go"
        and rollout.state == RolloutState.RUNNING
        and not (selected and waiting_on_guard(rollout, selected))
    ):
        return "rollout is running: g starts, promotes a paused rollout, or overrides the guard of the selected one"
    return None


# --- adapters to the rollout's control API ----------------------------------------------------------


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def can(rollout: Rollout, action_id: str, name: str) -> str | None:
    """Why the action cannot be done on this appliance now (asked BEFORE any confirmation), or None."""
    engine_can = getattr(rollout, "can", None)
    if engine_can is not None:
        result: str | None = engine_can(action_id, name)
        return result
    rec = rollout.records.get(name)
    if rec is None:
        return f"{name}: not in this rollout"
    if action_id == "retry" and rec.state not in (State.FAILED, State.SKIPPED, State.NEEDS_ATTENTION):
        return f"{name}: is {rec.state}, only failed, skipped or needs-attention appliances can be retried"
    if action_id == "skip" and rec.state in FINAL_STATES and rec.state != State.NEEDS_ATTENTION:
        return f"{name}: is {rec.state}, nothing to skip"
    if action_id == "override_guard" and not waiting_on_guard(rollout, name):
        return f"{name}: is not waiting on a guard or a bake"
    return None


def waiting_on_guard(rollout: Rollout, name: str) -> bool:
    rec = rollout.records.get(name)
    return rec is not None and rec.state == State.RUNNING and (rec.step or "") in ("guard", "bake")


def budget_spent(rollout: Rollout) -> bool:
    return rollout.state == RolloutState.PAUSED and rollout.budget_spent()


def unpause(rollout: Rollout, max_fail: str | None = None) -> str | None:
    """Unpause; with `max_fail` the failure budget is raised first. Returns why not (budget still spent)."""
    from segtui.rollout import engine

    spent_error: type[Exception] | None = getattr(engine, "BudgetSpent", None)
    fn = rollout.unpause
    try:
        if _accepts(fn, "max_fail"):
            fn(who=operator(), max_fail=max_fail)
        else:
            if max_fail is not None:
                from segtui.rollout.batches import parse_failure_budget

                rollout._budget = parse_failure_budget(max_fail)
                rollout.options.max_fail = max_fail
                rollout.journal.action("max-fail", max_fail)
            if rollout.budget_spent():
                return f"failure budget still spent: {rollout.failures()} failed, {rollout._budget} allowed"
            fn()
    except Exception as exc:
        if spent_error is not None and isinstance(exc, spent_error):
            return str(exc)
        raise
    return None


def per_appliance(rollout: Rollout, action_id: str, name: str) -> str:
    """skip / retry / override_guard with the operator's name when the engine takes it."""
    fn = getattr(rollout, action_id, None)
    if fn is None:
        return f"{name}: {action_id.replace('_', ' ')} is not available in this version of the engine"
    if _accepts(fn, "who"):
        return str(fn(name, who=operator()))
    return str(fn(name))
