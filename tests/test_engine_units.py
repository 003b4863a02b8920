"""The engine's bookkeeping without a fleet: outcomes and exit codes, counts, cap note, ETA, settings kept for resume."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import pytest

from segtui.errors import InputError
from segtui.rollout.engine import RolloutOptions
from segtui.rollout.events import Outcome, RolloutState, State
from tests.conftest import offline_rollout


@pytest.mark.parametrize(
    ("outcome", "code", "final"),
    [
        (Outcome.COMPLETED, 0, True),
        (Outcome.FINISHED_WITH_FAILURES, 1, True),
        (Outcome.PAUSED, 1, False),
        (Outcome.WINDOW_CLOSED, 1, False),
        (Outcome.ABORTED, 1, True),
    ],
)
def test_one_mapping_of_outcomes_to_exit_codes(outcome: Outcome, code: int, final: bool) -> None:
    assert outcome.exit_code == code and outcome.final is final


def test_outcome_is_completed_only_when_every_appliance_is_done(tmp_path: Path) -> None:
    r = offline_rollout(tmp_path, n=3)
    r.begin()
    assert r.outcome() == Outcome.PAUSED and r.to_upgrade() == 3
    for rec in r.records.values():
        rec.state = State.DONE
    r.state = RolloutState.DONE
    assert r.outcome() == Outcome.COMPLETED and r.status() == "completed"
    for state in (State.SKIPPED, State.FAILED, State.NEEDS_ATTENTION):
        r.records["esa02"].state = state
        assert r.outcome() == Outcome.FINISHED_WITH_FAILURES and r.status() == "finished-with-failures"
    r.state = RolloutState.ABORTED
    assert r.outcome() == Outcome.ABORTED


def test_skip_before_start_and_counts(tmp_path: Path) -> None:
    r = offline_rollout(tmp_path, n=4)
    r.begin()
    assert r.batch_total == 4  # 1, then 25% of 4 = 1 repeating: planned at begin
    assert r.skip("esa03", who="ann") == "esa03: skipped"
    assert r.to_upgrade() == 3 and r.counts() == {"pending": 3, "skipped": 1}
    assert (
        r.can("retry", "esa01")
        == "esa01: is pending; only failed, skipped or needs-attention appliances can be retried"
    )
    assert r.can("skip", "esa03") == "esa03: is skipped, nothing to skip"
    assert r.can("unpause") is not None and "not while the rollout is ready" in (r.can("unpause") or "")
    assert r.can("nonsense") == "nonsense: no such action"


def test_cap_note_says_when_concurrency_limits_a_batch(tmp_path: Path) -> None:
    r = offline_rollout(tmp_path, n=8, options=RolloutOptions(batch="2,100%", concurrency=3, max_unavailable=8))
    r.begin()
    # groups interleaved (dc1: even numbers, dc2: odd)
    assert r.batches() == [["esa02", "esa01"], ["esa04", "esa03", "esa06", "esa05", "esa08", "esa07"]]
    assert r.cap_note() == "batch 2: 6 appliances, 3 at a time (concurrency cap)"
    wide = offline_rollout(tmp_path / "w", n=8, options=RolloutOptions(batch="100%", concurrency=50))
    wide.begin()
    assert wide.cap_note() is None


def test_eta_from_measured_durations_and_frozen_while_paused(tmp_path: Path) -> None:
    r = offline_rollout(tmp_path, n=4, options=RolloutOptions(batch="100%", max_unavailable=1))
    r.begin()
    r.state = RolloutState.RUNNING
    now = time.time()
    assert r.eta(now) is None  # nothing measured yet
    done = r.records["esa01"]
    done.state, done.started, done.finished = State.DONE, now - 600, now - 300  # 300 s
    # 3 left, dc1 (esa02, esa04) and dc2 (esa03) at one at a time each: 2 in parallel, 900 s of work
    assert r.eta(now) == pytest.approx(450)
    # esa02 under way for 100 s: 200 s left of it
    r.records["esa02"].started = now - 100
    r._running["esa02"] = cast(Any, (None, None))
    assert r.eta(now) == pytest.approx(400)
    assert r.eta(now + 100) == pytest.approx(350)  # it counts down while running
    r.pause(who="ann")
    frozen = r.eta(now + 1000)  # stops while paused, at its value when paused (now)
    assert frozen == pytest.approx(400, abs=2) and r.eta(now + 5000) == frozen
    r.options.until = now + 100
    assert r.window_left(now) == pytest.approx(100) and r.window_left(now + 500) == 0.0


def test_bad_options_refuse_with_one_line() -> None:
    for kwargs, source in (
        ({"batch": "0"}, "--batch"),
        ({"max_fail": "x"}, "--max-fail"),
        ({"concurrency": 0}, "--concurrency"),
        ({"max_unavailable": 0}, "--max-unavailable"),
        ({"bake": -1.0}, "--bake"),
        ({"peer_queue_max": -1}, "--peer-queue-max"),
    ):
        with pytest.raises(InputError) as info:
            RolloutOptions(**kwargs)
        assert len(info.value.problems) == 1 and info.value.problems[0].startswith(source)


def test_a_demo_keeps_its_settings_for_resume(tmp_path: Path) -> None:
    r = offline_rollout(tmp_path)
    r.begin(persist_settings=True)
    assert r.journal.rollout_id is not None
    info = r.journal.rollout_info(r.journal.rollout_id)
    assert info is not None
    kept = info.options["_settings"]
    assert kept["deadlines"]["reboot"] == r.settings.deadlines.reboot
    assert type(r.settings).model_validate(kept).deadlines == r.settings.deadlines
    # raising the budget later keeps them
    r.state = RolloutState.PAUSED
    r.unpause(max_fail="2")
    row = r.journal.db.execute("SELECT options FROM rollouts WHERE id = ?", (r.journal.rollout_id,)).fetchone()
    assert "_settings" in json.loads(row[0]) and json.loads(row[0])["max_fail"] == "2"


async def test_a_timed_out_guard_pauses_the_rollout(tmp_path: Path) -> None:
    from segtui.rollout.events import GuardTimedOut

    r = offline_rollout(tmp_path, n=4, options=RolloutOptions(batch="100%", concurrency=1, max_unavailable=4))
    r.begin()
    r.exit_on_pause = True
    r.state = RolloutState.RUNNING
    launched: list[str] = []

    def fake_launch(name: str) -> None:  # the procedure itself is d2's: here only what it tells the engine
        launched.append(name)
        if len(launched) == 1:
            r._emit(GuardTimedOut(appliance=name, reason="peer esa03 work queue 9000 >= 5000"))
        else:
            r.records[name].state = State.DONE
        r._wake.set()

    r._launch = fake_launch  # type: ignore[method-assign]
    await r._run_batch(["esa01", "esa02", "esa03", "esa04"])
    assert r.state == RolloutState.PAUSED and r.outcome() == Outcome.PAUSED
    assert r.pause_reason == f"guard: {launched[0]}: peer esa03 work queue 9000 >= 5000"
    assert len(launched) == 1  # nothing else started
    assert sorted(r._retries) == sorted(n for n in ("esa01", "esa02", "esa03", "esa04") if n != launched[0])
