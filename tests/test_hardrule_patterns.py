"""Answer patterns stay linear on hostile question text (finding 16): a 16 KiB question made of a pattern's
leading words repeated must be matched in milliseconds, not in a backtracking scan per occurrence."""

from __future__ import annotations

import re
import time

import pytest

from segtui.asyncos.commands import UPDATECONFIG_IMAGES_Q, UPDATECONFIG_LIST_Q
from segtui.asyncos.session import MACHINE_MODE, QUESTION_CHARS

CASES = [
    (
        UPDATECONFIG_IMAGES_Q,
        "AsyncOS upgrades ",
        "For Cisco AsyncOS upgrades, please select where the system will download updates from (images):",
    ),
    (
        UPDATECONFIG_LIST_Q,
        "AsyncOS upgrades ",
        "For Cisco AsyncOS upgrades, please select where the system will download the list of available updates from:",
    ),
    (MACHINE_MODE.pattern, "switch to Machine ", 'Do you want to switch to "Machine esa1.example.com" mode?'),
]


@pytest.mark.parametrize(("pattern", "lead", "real"), CASES)
def test_answer_pattern_is_linear_on_hostile_text(pattern: str, lead: str, real: str) -> None:
    assert re.search(pattern, real, re.IGNORECASE | re.DOTALL)  # still answers the real question
    for joiner in (" ", "\n"):
        text = ((lead + joiner) * (QUESTION_CHARS // len(lead) + 1))[:QUESTION_CHARS] + "\n[]> "
        best = min(_timed(pattern, text) for _ in range(3))
        # The backtracking forms took 0.28-0.34 s per question here; the bounded ones take about a millisecond.
        assert best < 0.05, f"{pattern!r}: {best:.3f} s on 16 KiB of {lead!r}"


def _timed(pattern: str, text: str) -> float:
    started = time.perf_counter()
    re.search(pattern, text, re.IGNORECASE | re.DOTALL)
    return time.perf_counter() - started
