"""The operator's actions: one table, with the gate each passes, whatever path it comes from (key, palette, CLI).

The dashboard builds its bindings, help, palette, footer and read-only filter from `ACTIONS`; the CLI's `resume`
and unpause paths ask through the same `gate_for`. An action that can take mail capacity down or restart work is
`capacity=True`: on a production fleet it needs the fleet's name typed, elsewhere `y`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from segtui.rollout.events import RolloutState


class Gate(StrEnum):
    NONE = "none"  # no question
    CONFIRM = "confirm"  # `y`
    TYPE_NAME = "type-name"  # type the fleet's name


_ANY = frozenset(RolloutState)
_LIVE = frozenset({RolloutState.RUNNING, RolloutState.PAUSED})


@dataclass(frozen=True)
class OperatorAction:
    id: str
    title: str
    description: str
    changes: bool = False  # changes an appliance or the rollout: hidden and refused in read-only mode
    capacity: bool = False  # can take mail capacity down or restart work
    when: frozenset[RolloutState] = _ANY  # rollout states in which it applies


ACTIONS: dict[str, OperatorAction] = {
    a.id: a
    for a in (
        OperatorAction(
            "start", "Start", "start the rollout", changes=True, capacity=True, when=frozenset({RolloutState.READY})
        ),
        OperatorAction(
            "unpause",
            "Unpause / promote",
            "continue with the next batch",
            changes=True,
            capacity=True,
            when=frozenset({RolloutState.PAUSED}),
        ),
        OperatorAction("pause", "Pause", "nothing new starts", changes=True, when=frozenset({RolloutState.RUNNING})),
        OperatorAction(
            "abort",
            "Abort",
            "final: nothing new starts; appliances not yet upgrading are made safe",
            changes=True,
            capacity=True,
            when=frozenset({RolloutState.READY, RolloutState.RUNNING, RolloutState.PAUSED}),
        ),
        OperatorAction(
            "suspend_listeners",
            "Suspend listeners",
            "on the marked appliances (or the selected one)",
            changes=True,
            capacity=True,
        ),
        OperatorAction(
            "resume_listeners", "Resume listeners", "on the marked appliances (or the selected one)", changes=True
        ),
        OperatorAction(
            "skip",
            "Skip / give up",
            "skip the selected appliance, or give up on a stuck one (left for a person)",
            changes=True,
            when=_LIVE | {RolloutState.READY, RolloutState.DONE},
        ),
        OperatorAction(
            "retry",
            "Retry / re-probe",
            "retry a failed or skipped appliance; re-probe one that needs attention",
            changes=True,
            capacity=True,
            when=_LIVE | {RolloutState.READY, RolloutState.DONE},
        ),
        OperatorAction(
            "override_guard",
            "Override guard",
            "let the selected appliance past a mail-flow guard or its bake",
            changes=True,
            capacity=True,
            when=_LIVE,
        ),
    )
}


def gate_for(action: OperatorAction, production: bool) -> Gate:
    if action.capacity and production:
        return Gate.TYPE_NAME
    if action.changes:
        return Gate.CONFIRM
    return Gate.NONE
