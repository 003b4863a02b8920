"""Batch ramps (`1,2,25%`, the last step repeating), failure budgets and the batch plan."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from segtui.errors import InputError


@dataclass(frozen=True)
class BatchStep:
    count: int | None = None
    percent: float | None = None

    def size(self, fleet: int) -> int:
        if self.count is not None:
            return self.count
        assert self.percent is not None
        return max(1, math.ceil(fleet * self.percent / 100))


def parse_batch_spec(spec: str, source: str = "--batch") -> list[BatchStep]:
    steps: list[BatchStep] = []
    for raw in spec.split(","):
        item = raw.strip()
        try:
            if item.endswith("%"):
                pct = float(item[:-1])
                if not 0 < pct <= 100:
                    raise ValueError
                steps.append(BatchStep(percent=pct))
            else:
                n = int(item)
                if n < 1:
                    raise ValueError
                steps.append(BatchStep(count=n))
        except ValueError:
            raise InputError(
                [f"{source}: {item!r} is not a batch size (a whole number >= 1 or a percentage like 25%)"]
            ) from None
    if not steps:
        raise InputError([f"{source}: empty batch spec"])
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
class FailureBudget:
    count: int | None = None
    percent: float | None = None

    def allowed(self, fleet: int) -> int:
        if self.count is not None:
            return self.count
        assert self.percent is not None
        return math.floor(fleet * self.percent / 100)

    def __str__(self) -> str:
        return f"{self.count}" if self.count is not None else f"{self.percent:g}%"


def parse_failure_budget(spec: str, source: str = "--max-fail") -> FailureBudget:
    item = spec.strip()
    try:
        if item.endswith("%"):
            pct = float(item[:-1])
            if not 0 <= pct <= 100:
                raise ValueError
            return FailureBudget(percent=pct)
        n = int(item)
        if n < 0:
            raise ValueError
        return FailureBudget(count=n)
    except ValueError:
        raise InputError([f"{source}: {item!r} is not a failure budget (N or N%)"]) from None


def interleave_groups(names_by_group: dict[str, list[str]]) -> list[str]:
    """Round-robin across capacity groups so each batch spreads its load."""
    out: list[str] = []
    queues = [list(v) for _, v in sorted(names_by_group.items())]
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop(0))
    return out
