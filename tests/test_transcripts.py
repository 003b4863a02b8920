"""Every transcript under tests/data/transcripts replays through the parsers against the expectations stored
beside it (`<name>.expected.json`): a field transcript becomes a regression test by adding those two files.

To write the expectation of a new transcript from what the parsers make of it today (then check it by eye):
    python -m tests.test_transcripts tests/data/transcripts/NEW.txt
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from segtui.asyncos.probe import PARSERS_FOR_COMMAND, READERS, read_output, split_transcript

TRANSCRIPTS = Path(__file__).parent / "data" / "transcripts"
ALL = sorted(TRANSCRIPTS.glob("*.txt"))


def expected_path(transcript: Path) -> Path:
    return transcript.with_name(transcript.stem + ".expected.json")


def expectations(text: str) -> dict[str, Any]:
    """What the parsers make of each exchange of a transcript today, in the expectation format."""
    out = []
    for index, (command, output) in enumerate(split_transcript(text)):
        for parser in PARSERS_FOR_COMMAND.get(command, ()):
            reading = read_output(parser, output)
            entry: dict[str, Any] = {"exchange": index, "command": command, "parser": parser, "ok": reading.ok}
            entry["fields" if reading.ok else "error"] = reading.fields if reading.ok else reading.error
            out.append(entry)
    return {"exchanges": out}


def test_there_are_transcripts_from_the_field_format_and_the_simulator() -> None:
    names = {p.name for p in ALL}
    assert {"status-detail-paged.txt", "upgrade-downloadinstall.txt", "cluster-suspendlistener.txt"} <= names
    assert any(n.startswith("sim-") for n in names)


@pytest.mark.parametrize("transcript", ALL, ids=lambda p: p.stem)
def test_transcript_replays_to_its_expectations(transcript: Path) -> None:
    expected_file = expected_path(transcript)
    assert expected_file.exists(), f"{transcript.name} has no {expected_file.name} beside it"
    expected = json.loads(expected_file.read_text())
    exchanges = split_transcript(transcript.read_text())
    assert expected["exchanges"], f"{expected_file.name} expects nothing"
    for entry in expected["exchanges"]:
        command, output = exchanges[entry["exchange"]]
        assert command == entry["command"]
        assert entry["parser"] in READERS, f"unknown parser {entry['parser']!r}"
        reading = read_output(entry["parser"], output)
        where = f"{transcript.name} #{entry['exchange']} {entry['parser']}"
        assert reading.ok == entry["ok"], f"{where}: {reading.error}"
        if reading.ok:
            # Only the fields the expectation names: a partial expectation is allowed.
            assert {k: reading.fields.get(k) for k in entry["fields"]} == entry["fields"], where
        else:
            assert entry.get("error", "") in (reading.error or ""), where


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        expected_path(path).write_text(json.dumps(expectations(path.read_text()), indent=2) + "\n")
        print(f"wrote {expected_path(path)}")


if __name__ == "__main__":
    main(sys.argv[1:])
