"""Expected durations learned from the appliances finished in this rollout (median per number of upgrades)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from segtui.rollout.events import State
from segtui.rollout.journal import ApplianceRecord


def upgrades_of(rec: ApplianceRecord) -> int:
    """How many upgrades a finished appliance went through (a hop counts as one)."""
    return max(1, rec.upgrades_confirmed or len(rec.hops) + 1)


class Durations:
    """Measured procedure durations of done appliances, per number of upgrades."""

    def __init__(self) -> None:
        self._by_upgrades: dict[int, list[float]] = {}

    @classmethod
    def of(cls, records: Iterable[ApplianceRecord]) -> Durations:
        d = cls()
        for rec in records:
            if rec.state == State.DONE and rec.started and rec.finished and rec.finished >= rec.started:
                d.add(upgrades_of(rec), rec.finished - rec.started)
        return d

    def add(self, upgrades: int, seconds: float) -> None:
        self._by_upgrades.setdefault(max(1, upgrades), []).append(seconds)

    def __bool__(self) -> bool:
        return bool(self._by_upgrades)

    def expected(self, upgrades: int) -> float | None:
        """The median for this number of upgrades; else scaled from the nearest measured count; None untaught."""
        upgrades = max(1, upgrades)
        if upgrades in self._by_upgrades:
            return statistics.median(self._by_upgrades[upgrades])
        if not self._by_upgrades:
            return None
        nearest = min(self._by_upgrades, key=lambda k: (abs(k - upgrades), k))
        return statistics.median(self._by_upgrades[nearest]) * upgrades / nearest
