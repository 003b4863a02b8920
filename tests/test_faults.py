"""The fault matrix: every simulator fault and a dropped connection in every phase, in one fleet.

One rollout of 20 appliances runs once for the module; each test then checks one row of the matrix
(docs/FAULTS.md publishes it): the appliance's final state, its real listeners (read from the
simulator), its update settings, the report and the journal.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from segtui.rollout.engine import Outcome, RolloutOptions
from segtui.rollout.report import build_report
from tests.conftest import make_rollout, start_fleet

FAULTS: dict[str, set[str]] = {
    "esa01": {"reboot-hang"},
    "esa02": {"drain-stuck"},
    "esa03": {"upgrade-fail"},
    "esa04": {"drop-during-upgrade"},
    "esa05": {"wrong-version"},
    "esa06": {"auth-fail"},
    "esa07": {"hostkey-change"},
    "esa09": {"no-manifest"},
    "esa10": {"flaky"},
    "esa11": {"drop@saveconfig"},  # backup
    "esa12": {"drop@updateconfig#2"},  # pointing the update settings
    "esa13": {"drop@suspendlistener"},  # suspend
    "esa14": {"drop@workqueue status"},  # drain
    "esa15": {"drop@upgrade"},  # upgrade, before confirmation
    "esa16": {"drop@version#3"},  # verify after the reboot
    "esa17": {"drop@resumelistener"},  # resume
    "esa19": {"drop@updateconfig#3"},  # restoring the update settings
    "esa20": {"drop@commit#2"},  # committing the restore
}

# A drop row: the phase (journaled step) it must land in, and the command typed again after it.
DROPS: dict[str, tuple[str, str]] = {
    "esa11": ("backup", "saveconfig"),
    "esa12": ("point-updates", "updateconfig"),
    "esa13": ("suspend", "suspendlistener"),
    "esa14": ("drain", "workqueue status"),
    "esa15": ("upgrade", "upgrade"),
    "esa16": ("verify", "version"),
    "esa17": ("resume-listeners", "resumelistener"),
    "esa19": ("restore-updates", "updateconfig"),
    "esa20": ("restore-updates", "commit"),
}

# fault -> (state, listeners in the report, listeners really suspended on the appliance, upgraded)
EXPECTED: dict[str, tuple[str, str, bool, bool]] = {
    "esa01": ("needs-attention", "unknown", True, True),  # rebooting forever: nobody can know
    "esa02": ("failed", "active", False, False),
    "esa03": ("failed", "active", False, False),
    "esa04": ("done", "active", False, True),
    "esa05": ("failed", "active", False, False),
    "esa06": ("failed", "active", False, False),
    "esa07": ("needs-attention", "unknown", True, True),  # new key: we must not talk to it
    "esa09": ("failed", "active", False, False),
    "esa10": ("done", "active", False, True),
    **{
        n: ("done", "active", False, True)
        for n in ("esa11", "esa12", "esa13", "esa14", "esa15", "esa16", "esa17", "esa19", "esa20")
    },
    "esa08": ("done", "active", False, True),  # untouched by faults, and a two-hop upgrade
    "esa18": ("done", "active", False, True),
}


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("faults")
    mp = pytest.MonkeyPatch()
    from tests.conftest import TEST_PASSWORD

    mp.setenv("SEGTUI_PASSWORD", TEST_PASSWORD)

    async def run() -> dict[str, Any]:
        fleet = await start_fleet(tmp, 20, faults=FAULTS, clusters=False, events_out=tmp / "sim-events.log")
        try:
            # esa06 refuses segtui's credentials: the capacity guard of its group could never verify it carries
            # mail and would (rightly) hold the group until the rollout pauses. The matrix is about each
            # appliance's own fault, so esa06 stands in a capacity group of its own.
            inventory = fleet.inventory_path.read_text()
            isolated = re.sub(r'(name = "esa06"\n(?:[^\n]*\n){2})group = "[^"]*"', r'\1group = "auth-lab"', inventory)
            assert isolated != inventory
            fleet.inventory_path.write_text(isolated)
            rollout = make_rollout(
                fleet, tmp, options=RolloutOptions(batch="100%", max_unavailable=10, max_fail="100%")
            )
            outcome = await rollout.run(autostart=True)
            report = build_report(rollout, outcome)
            sim = {
                name: {
                    "suspended": node.appliance.suspended,
                    "version": node.appliance.version,
                    "upgrades": list(node.appliance.upgrades_done),
                    "listing": node.appliance.committed.listing,
                    "pending": node.appliance.pending,
                    "commands": dict(node.appliance.command_counts),
                }
                for name, node in fleet.nodes.items()
            }
            steps = {name: rollout.journal.steps_of(name) for name in fleet.nodes}
            return {
                "outcome": outcome,
                "report": report,
                "sim": sim,
                "steps": steps,
                "records": rollout.records,
                "sim_events": _sim_events(tmp / "sim-events.log"),
            }
        finally:
            await fleet.stop()

    try:
        return asyncio.run(run())
    finally:
        mp.undo()


def _sim_events(path: Path) -> list[tuple[str, str, float]]:
    """The simulator's own log: `name what epoch` per line."""
    out = []
    for line in path.read_text().splitlines():
        name, rest = line.split(" ", 1)
        what, _, ts = rest.rpartition(" ")
        out.append((name, what, float(ts)))
    return out


def test_rollout_ends_failed_not_hung(scenario: dict[str, Any]) -> None:
    assert scenario["outcome"] == Outcome.FINISHED_WITH_FAILURES
    counts = scenario["report"]["counts"]
    assert counts == {"done": 13, "failed": 5, "needs-attention": 2}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fault_matrix_row(scenario: dict[str, Any], name: str) -> None:
    state, listeners, really_suspended, upgraded = EXPECTED[name]
    row = next(a for a in scenario["report"]["appliances"] if a["name"] == name)
    sim = scenario["sim"][name]
    assert row["state"] == state, row
    assert row["listeners"] == listeners, row
    assert sim["suspended"] == really_suspended, sim
    if upgraded:
        assert sim["upgrades"][-1] == (16, 0, 0, 123) and sim["version"] == (16, 0, 0, 123)
        # no upgrade done twice: one per version on the path
        assert len(sim["upgrades"]) == len(set(sim["upgrades"]))
    else:
        assert sim["upgrades"] == []
    if state == "done":
        assert row["error"] is None and row["version_after"] == "16.0.0-123"
        assert sim["listing"] == "cisco" and sim["pending"] is None  # update settings put back
    else:
        assert row["error"]
    if state == "failed" and name != "esa06":
        assert sim["listing"] == "cisco", "a failed appliance gets its update settings back"
    # the journal says exactly what happened: failures have a failed step with the same message
    steps = scenario["steps"][name]
    if state != "done":
        failed = [s for s in steps if s[3] == 0]
        assert failed, steps
        assert any(msg and msg in str(row["error"]) for *_, msg in failed), (failed, row["error"])


def test_messages_name_the_problem(scenario: dict[str, Any]) -> None:
    errors = {a["name"]: a["error"] for a in scenario["report"]["appliances"]}
    assert "did not come back" in errors["esa01"]
    assert "drain exceeded its deadline" in errors["esa02"]
    assert "upgrade" in errors["esa03"].lower()
    assert "came back on 15.0.0-104" in errors["esa05"]
    assert "authentication failed" in errors["esa06"]
    assert "ssh-keyscan" in errors["esa07"] and "known_hosts" in errors["esa07"]
    assert "No available upgrades" in errors["esa09"]


@pytest.mark.parametrize("name", sorted(DROPS))
def test_dropped_phases_were_retried(scenario: dict[str, Any], name: str) -> None:
    phase, command = DROPS[name]
    # The simulator really dropped the session, once, while segtui was in that phase...
    drops = [(what, ts) for n, what, ts in scenario["sim_events"] if n == name and what.startswith("dropped:")]
    nth = max(int(f.partition("#")[2] or 1) for f in FAULTS[name])
    assert [what for what, _ in drops] == [f"dropped:{command}#{nth}"], drops
    dropped_at = drops[0][1]
    steps = scenario["steps"][name]
    in_phase = [s for s in steps if s[0] == phase and s[1] <= dropped_at <= (s[2] or float("inf"))]
    assert in_phase, (phase, dropped_at, steps)
    # ...and the step was retried in place: the command was typed again, the step finished well
    assert in_phase[0][3] == 1, in_phase
    assert scenario["sim"][name]["commands"][command] > nth, scenario["sim"][name]["commands"]
    assert not [s for s in steps if s[3] == 0], steps


def test_hop_appliances_upgraded_twice_only_once_each(scenario: dict[str, Any]) -> None:
    for name in ("esa08", "esa18"):
        assert scenario["sim"][name]["upgrades"] == [(15, 0, 0, 104), (16, 0, 0, 123)]
        assert scenario["records"][name].hops == ["15.0.0-104"]


def test_matrix_is_published() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "FAULTS.md").read_text()
    for _name, faults in FAULTS.items():
        for fault in faults:
            assert fault in doc, fault


def test_only_truly_unknown_questions_are_recorded(scenario: dict[str, Any]) -> None:
    # The simulator asks some appliances a question no rule knows (a notification before `upgrade`): each is
    # recorded for the operator. The defaults segtui takes by design (other services in updateconfig SETUP,
    # leaving a menu) are not noise in that list.
    asked = {name: [q["question"] for q in rec.unrecognized_questions] for name, rec in scenario["records"].items()}
    recorded = [q for questions in asked.values() for q in questions]
    assert recorded, "the simulator's unknown question was never recorded"
    assert all("notification" in q.lower() for q in recorded), recorded
