"""The headless printer (issues 13, 17): ISO 8601 lines with the zone, no duplicates, `--json-lines`, the
intermediate version of a two-hop upgrade, no escape sequence from an appliance, a closed pipe ends quietly."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from segtui.headless import HeadlessPrinter
from segtui.rollout.events import (
    ApplianceStateChanged,
    BatchStarted,
    Note,
    RolloutState,
    RolloutStateChanged,
    State,
    Step,
    StepFinished,
    StepStarted,
)
from segtui.rollout.journal import ApplianceRecord

ISO_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d \S")
HOSTILE = "listener \x1b]0;pwned\x07 in\x1b[31m red \x1b]52;c;SGVsbG8=\x07 \x9b2J done"


def fake_rollout(**records: ApplianceRecord) -> Any:
    inventory = SimpleNamespace(appliances=[SimpleNamespace(password="Pa55word-secret")], path=Path("/inv.toml"))
    return SimpleNamespace(
        records=records,
        target="16.0.0-123",
        inventory=inventory,
        batch_index=1,
        batch_total=2,
        subscribe=lambda cb: None,
    )


def test_lines_are_iso_with_zone_and_never_repeat() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(None, out)
    events = [
        BatchStarted(index=1, total=2, appliances=("esa1", "esa2")),
        StepStarted(appliance="esa1", step=Step.PRECHECK),
        ApplianceStateChanged(appliance="esa1", state=State.DONE, version="16.0.0-123"),
        ApplianceStateChanged(appliance="esa1", state=State.DONE, version="16.0.0-123"),  # the same news again
        RolloutStateChanged(state=RolloutState.PAUSED, reason="paused by operator"),
    ]
    for e in events:
        printer.on_event(e)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4, lines
    assert all(ISO_LINE.match(line) for line in lines), lines
    assert sum("DONE 16.0.0-123" in line for line in lines) == 1


def test_two_hop_upgrade_names_the_intermediate_version() -> None:
    out = io.StringIO()
    rec = ApplianceRecord(name="esa1", confirmed_upgrade_to="15.5.1-055")
    printer = HeadlessPrinter(cast(Any, fake_rollout(esa1=rec)), out)
    printer.on_event(StepFinished(appliance="esa1", step=Step.UPGRADE, ok=True))
    assert "upgrade confirmed to 15.5.1-055 (intermediate version; target 16.0.0-123)" in out.getvalue()
    rec.confirmed_upgrade_to = "16.0.0-123"
    printer.on_event(StepFinished(appliance="esa1", step=Step.UPGRADE, ok=True))
    assert out.getvalue().splitlines()[-1].endswith("upgrade confirmed to 16.0.0-123")


def test_appliance_text_reaches_the_terminal_without_escape_sequences_or_secrets() -> None:
    for json_lines in (False, True):
        out = io.StringIO()
        printer = HeadlessPrinter(cast(Any, fake_rollout()), out, json_lines=json_lines)
        printer.on_event(Note(appliance="esa1", text=HOSTILE + " Pa55word-secret", level="error"))
        printer.on_event(ApplianceStateChanged(appliance="esa1", state=State.FAILED, error=HOSTILE))
        text = out.getvalue()
        assert text.count("\n") == 2
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
        assert "\\u001b" not in text and "\\u0007" not in text  # not smuggled through JSON escapes either
        assert "Pa55word-secret" not in text


def test_json_lines_one_object_per_event() -> None:
    out = io.StringIO()
    printer = HeadlessPrinter(None, out, json_lines=True)
    printer.on_event(StepStarted(appliance="esa1", step=Step.DRAIN))
    printer.on_event(ApplianceStateChanged(appliance="esa1", state=State.FAILED, error="drain stuck"))
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["event"] for o in objects] == ["step-started", "appliance-state-changed"]
    assert objects[0]["appliance"] == "esa1" and objects[0]["step"] == "drain"
    assert objects[1]["state"] == "failed" and objects[1]["error"] == "drain stuck"
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", o["ts"]) for o in objects)


class ClosedPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_stops_the_printing_not_the_rollout() -> None:
    printer = HeadlessPrinter(None, ClosedPipe())
    printer.on_event(StepStarted(appliance="esa1", step=Step.DRAIN))  # no exception reaches the rollout
    printer.on_event(StepStarted(appliance="esa1", step=Step.UPGRADE))
    assert printer.closed


def test_end_of_rollout_summary_says_what_needs_a_person() -> None:
    from segtui.rollout.engine import HandWork

    out = io.StringIO()
    rollout = fake_rollout(esa1=ApplianceRecord(name="esa1", state=State.NEEDS_ATTENTION))
    rollout.needs_a_person = lambda: [
        HandWork("esa1", "listeners suspended", "ssh -p 22 admin@10.0.0.1 resumelistener"),
        HandWork("esa1", "needs attention: host key \x1b]0;x\x07changed", "segtui resume --inventory /srv/fleet.toml"),
    ]
    printer = HeadlessPrinter(cast(Any, rollout), out)
    printer.finish("finished-with-failures")
    text = out.getvalue()
    assert "esa1         NEEDS A PERSON: listeners suspended -> ssh -p 22 admin@10.0.0.1 resumelistener" in text
    assert "needs attention: host key changed -> segtui resume --inventory /srv/fleet.toml" in text
    assert text.splitlines()[-1].endswith("outcome finished-with-failures")
