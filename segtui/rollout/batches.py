"""Batch ramps (`1,2,25%`, the last step repeating), failure budgets, queue order and the batch plan."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from segtui.errors import InputError


@dataclass(frozen=True)
class CountOrPercent:
    """`N` or `N%` of the fleet: the one home of that notation (batch steps, failure budgets)."""

    count: int | None = None
    percent: float | None = None

    def of(self, fleet: int) -> float:
        if self.count is not None:
            return self.count
        assert self.percent is not None
        return fleet * self.percent / 100

    def __str__(self) -> str:
        return f"{self.count}" if self.count is not None else f"{self.percent:g}%"


def parse_count_or_percent(item: str, *, minimum: int, zero_percent: bool) -> CountOrPercent:
    """Raises ValueError when `item` is not a whole number >= minimum or a percentage in range."""
    item = item.strip()
    if item.endswith("%"):
        pct = float(item[:-1])
        if not math.isfinite(pct) or not (0 <= pct if zero_percent else 0 < pct) or pct > 100:
            raise ValueError(item)
        return CountOrPercent(percent=pct)
    n = int(item)
    if n < minimum:
        raise ValueError(item)
    return CountOrPercent(count=n)


@dataclass(frozen=True)
class BatchStep(CountOrPercent):
    def size(self, fleet: int) -> int:
        return max(1, math.ceil(self.of(fleet)))


def parse_batch_spec(spec: str, source: str = "--batch") -> list[BatchStep]:
    steps: list[BatchStep] = []
    for raw in spec.split(","):
        item = raw.strip()
        try:
            parsed = parse_count_or_percent(item, minimum=1, zero_percent=False)
        except ValueError:
            raise InputError(
                [f"{source}: {item!r} is not a batch size (a whole number >= 1 or a percentage like 25%)"]
            ) from None
        steps.append(BatchStep(count=parsed.count, percent=parsed.percent))
    return steps


def batch_sizes(steps: Sequence[BatchStep], fleet: int) -> list[int]:
    """Sizes covering the fleet; the last step repeats (like Ansible's serial)."""
    sizes: list[int] = []
    left = fleet
    i = 0
    while left > 0:
        step = steps[min(i, len(steps) - 1)]
        n = min(left, step.size(fleet))
        sizes.append(n)
        left -= n
        i += 1
    return sizes


@dataclass(frozen=True)
class FailureBudget(CountOrPercent):
    def allowed(self, fleet: int) -> int:
        return math.floor(self.of(fleet))


def parse_failure_budget(spec: str, source: str = "--max-fail") -> FailureBudget:
    try:
        parsed = parse_count_or_percent(spec, minimum=0, zero_percent=True)
    except ValueError:
        raise InputError([f"{source}: {spec.strip()!r} is not a failure budget (N or N%)"]) from None
    return FailureBudget(count=parsed.count, percent=parsed.percent)


class Placed(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def group(self) -> str: ...


def interleave_groups(names_by_group: dict[str, list[str]]) -> list[str]:
    """Round-robin across capacity groups (sorted by name) so each batch spreads its load."""
    out: list[str] = []
    queues = [list(v) for _, v in sorted(names_by_group.items())]
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out


def plan_order(specs: Iterable[Placed]) -> list[str]:
    """The one queue order of a rollout (run and plan both use it): groups interleaved, inventory order within."""
    groups: dict[str, list[str]] = {}
    for spec in specs:
        groups.setdefault(spec.group, []).append(spec.name)
    return interleave_groups(groups)


def plan_batches(order: Sequence[str], steps: Sequence[BatchStep]) -> list[list[str]]:
    """The queue cut into batches by the ramp; every name in exactly one batch, in order."""
    out: list[list[str]] = []
    at = 0
    for size in batch_sizes(steps, len(order)):
        out.append(list(order[at : at + size]))
        at += size
    return out
