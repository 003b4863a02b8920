"""Parsers are pure: tested against the example transcripts in tests/data and DIALOGUES.md's examples."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segtui.asyncos import parsers
from segtui.asyncos.errors import ParseError
from segtui.asyncos.versions import Version, VersionError

TRANSCRIPTS = Path(__file__).parent / "data" / "transcripts"


def transcript(name: str) -> str:
    return (TRANSCRIPTS / name).read_text()


def test_version_tags_both_ways() -> None:
    v = Version.parse("phoebe-15-0-0-104")
    assert v == Version.parse("15.0.0-104")
    assert v.tag() == "phoebe-15-0-0-104"
    assert str(v) == "15.0.0-104"
    assert Version.parse("14.2.1-15").tag() == "phoebe-14-2-1-015"
    assert Version.parse("phoebe-14-2-1-015") == Version(14, 2, 1, 15)
    assert Version.from_build("15.5.1", "055") == Version.parse("15.5.1-055")


def test_version_ordering() -> None:
    ordered = ["14.2.1-015", "15.0.0-104", "15.0.0-200", "15.5.1-055", "16.0.0-123"]
    versions = [Version.parse(v) for v in ordered]
    assert sorted(reversed(versions)) == versions
    assert Version.parse("15.10.0-1") > Version.parse("15.9.9-999")


@pytest.mark.parametrize("bad", ["", "15.0.0", "15-0-0-104", "phoebe-15-0-0", "zeus", "15.0.0-x", "1.2.3.4-5"])
def test_version_rejects(bad: str) -> None:
    with pytest.raises(VersionError):
        Version.parse(bad)


@given(st.text(max_size=40))
def test_version_parse_never_crashes(text: str) -> None:
    try:
        v = Version.parse(text)
    except VersionError:
        return
    assert Version.parse(str(v)) == v


def test_main_prompt_anchored_at_end() -> None:
    assert parsers.prompt_at_end("\nesa1.example.com> ") == "esa1.example.com"
    assert parsers.prompt_at_end("x\n(Cluster mailcluster)> ") == "(Cluster mailcluster)"
    assert parsers.prompt_at_end("x\n(Machine esa2.example.com)> ") == "(Machine esa2.example.com)"
    assert parsers.prompt_at_end("x\n(Group Main_Group)> ") == "(Group Main_Group)"
    # Questions end in "> " too: never a prompt.
    assert parsers.prompt_at_end("Choose\n[1]> ") is None
    assert parsers.prompt_at_end("Are you sure? [Y]> ") is None
    # A prompt in the middle of the buffer is not the end of a command.
    assert parsers.prompt_at_end("esa1> version\nCurrent Version\n") is None


def test_question_defaults() -> None:
    assert parsers.question_at_end("Are you sure you want to proceed with upgrade? [Y]> ") == "Y"
    assert parsers.question_at_end("Please enter comments:\n[]> ") == ""
    assert parsers.question_at_end("[30]> ") == "30"
    assert parsers.question_at_end("esa1> ") is None


def test_normalize_crlf_pager_and_erasure() -> None:
    raw = "line one\r\n-Press Any Key For More-\r                        \rline two\r\n"
    assert parsers.normalize(raw) == "line one\nline two\n"


def test_status_detail_paged_transcript() -> None:
    text = transcript("status-detail-paged.txt")
    detail = parsers.parse_status_detail(text)
    assert detail.workqueue_messages == 57
    assert detail.system_status == "Receiving Suspended"
    assert detail.receiving_suspended


def test_cluster_transcript_workqueue_and_listeners() -> None:
    text = transcript("cluster-suspendlistener.txt")
    wq = parsers.parse_workqueue_status(text.split("workqueue status", 1)[1])
    assert wq.messages == 318 and wq.status == "Operational" and not wq.paused
    assert parsers.prompt_at_end(text.rstrip("\n") + " ") == "(Machine esa2.example.com)"


def test_upgrade_transcript_offers_and_progress() -> None:
    text = transcript("upgrade-downloadinstall.txt")
    offers = parsers.parse_upgrades_available(text)
    assert [str(o.version) for o in offers] == ["15.5.1-055", "16.0.0-123"]
    assert [o.number for o in offers] == [1, 2]
    phases = [p.phase for line in text.splitlines() if (p := parsers.parse_progress_line(line))]
    assert phases[0] == "analysis"
    assert "download" in phases and "install" in phases and phases[-1] == "reboot"


def test_version_output_by_key_with_extra_lines() -> None:
    text = """
Current Version
===============
Product: Cisco C300V Secure Email Gateway Virtual
Model: C300V
Version: 15.0.0-104
Build Date: 2023-06-12
Install Date: 2024-02-01 09:12:44
Serial #: 4229F1C3E7A9-ABCD1234EFGH
Some New Field: value: with colon
BIOS: 6.00
"""
    info = parsers.parse_version(text)
    assert info.version == Version.parse("15.0.0-104")
    assert info.model == "C300V"
    assert info.serial == "4229F1C3E7A9-ABCD1234EFGH"
    reordered = "Serial #: X\r\nVersion: 16.0.0-123\r\nModel: C600V\r\n"
    assert parsers.parse_version(reordered).version == Version.parse("16.0.0-123")
    # A line cut short (no newline after it) is not a value.
    with pytest.raises(ParseError):
        parsers.parse_version("Model: C300V\nVersion: 15.0.0-10")


VERSION_TEXT = "Current Version\n===============\nModel: C300V\nVersion: 15.0.0-104\nSerial #: 42-AB\n"


@given(cut=st.integers(min_value=0, max_value=len(VERSION_TEXT)))
def test_truncated_version_is_error_or_exact(cut: int) -> None:
    try:
        info = parsers.parse_version(VERSION_TEXT[:cut])
    except ParseError:
        return
    assert info.version == Version.parse("15.0.0-104")


def test_workqueue_paused_wording() -> None:
    wq = parsers.parse_workqueue_status("Status: Paused by admin: maintenance\nMessages: 1,243\n")
    assert wq.paused and wq.messages == 1243


def test_saveconfig_and_slbl_outputs() -> None:
    out = (
        'File written on machine "esa1.example.com" to the location '
        '"/configuration/C300V-4229F1C3E7A9-20261129T031500.xml".'
    )
    assert parsers.parse_saveconfig(out) == "/configuration/C300V-4229F1C3E7A9-20261129T031500.xml"
    assert parsers.parse_slbl_export("The file slbl-1234.csv was written.") == "/configuration/slbl-1234.csv"
    assert parsers.parse_slbl_export("The feature must be enabled through GUI.") is None
    with pytest.raises(ParseError):
        parsers.parse_saveconfig("Configuration saved.")


def test_update_settings_cisco_and_own() -> None:
    cisco = (
        "Service (images):   Update URL:\nAsyncOS upgrades                Cisco IronPort Servers\n"
        "Service (list):\nAsyncOS upgrades                Cisco IronPort Servers\n"
    )
    assert parsers.parse_update_settings(cisco).is_cisco
    own = (
        "AsyncOS upgrades                http://updates.example.com:80/\n"
        "AsyncOS upgrades                http://updates.example.com/asyncos/phoebe-15-0-0-104.xml\n"
    )
    src = parsers.parse_update_settings(own)
    assert src.images == "updates.example.com:80"
    assert src.manifest == "http://updates.example.com/asyncos/phoebe-15-0-0-104.xml"


def test_failure_strings_found() -> None:
    for failure in parsers.UPGRADE_FAILURE_MARKERS:
        assert parsers.find_marker(f"blah\n{failure}\n", parsers.UPGRADE_FAILURE_MARKERS)
    assert parsers.find_marker("Unknown command or missing feature key: frob", parsers.UNKNOWN_COMMAND_MARKERS)


def test_cluster_machine_choices() -> None:
    text = "Choose the machine(s) to disconnect.\n1. esa2.example.com (group Main_Group)\n2. esa3.example.com (group Main_Group)\n[]> "
    machines = parsers.parse_machine_choices(text)
    assert [(m.number, m.name, m.group) for m in machines] == [
        (1, "esa2.example.com", "Main_Group"),
        (2, "esa3.example.com", "Main_Group"),
    ]


PARSERS = [
    parsers.parse_version,
    parsers.parse_workqueue_status,
    parsers.parse_status_detail,
    parsers.parse_saveconfig,
    parsers.parse_saveconfig_machine,
    parsers.parse_slbl_export,
    parsers.parse_update_settings,
    parsers.parse_download_status,
]
LIST_PARSERS = [
    parsers.parse_upgrades_available,
    parsers.parse_machine_choices,
    parsers.parse_cluster_list,
    parsers.parse_listeners,
    parsers.versions_named,
]


@pytest.mark.parametrize("parse", PARSERS, ids=lambda p: p.__name__)
@given(text=st.text(max_size=400))
def test_parsers_typed_error_or_result(parse, text: str) -> None:  # type: ignore[no-untyped-def]
    try:
        parse(text)
    except ParseError as exc:
        assert exc.appliance == "?" and "\n" not in exc.message


@pytest.mark.parametrize("parse", LIST_PARSERS, ids=lambda p: p.__name__)
@given(text=st.text(max_size=400))
def test_list_parsers_never_raise(parse, text: str) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(parse(text), list)


HOSTILE = [
    "[" * 300_000,
    "a" * 300_000,
    "1" * 300_000,
    "1." * 150_000,
    "\r" + " " * 300_000,
    '"/' * 150_000,
    "AsyncOS upgrades" * 20_000,
    "x.csv" * 60_000 + "y" * 100_000,
    "1. " + "a-" * 150_000,
]


@pytest.mark.parametrize("parse", PARSERS + LIST_PARSERS, ids=lambda p: p.__name__)
def test_parsers_are_linear_on_hostile_text(parse) -> None:  # type: ignore[no-untyped-def]
    """300 KB of the worst shapes for each pattern: every parser answers within a generous bound."""
    import time

    for text in HOSTILE:
        started = time.process_time()
        try:
            parse(text)
        except ParseError:
            pass
        assert time.process_time() - started < 2.0, (parse.__name__, text[:20])


@pytest.mark.parametrize(
    "name", ["status-detail-paged.txt", "upgrade-downloadinstall.txt", "cluster-suspendlistener.txt"]
)
@given(cut=st.integers(min_value=0, max_value=2000))
def test_truncated_transcripts_never_crash_or_lie(name: str, cut: int) -> None:
    full_text = transcript(name)
    text = full_text[:cut]
    for parse in PARSERS:
        try:
            full = parse(full_text)
        except ParseError:
            full = None
        try:
            partial = parse(text)
        except ParseError:
            continue
        assert partial == full, f"{parse.__name__} gave a wrong success on truncated text"
    offers = parsers.parse_upgrades_available(text)
    full_offers = parsers.parse_upgrades_available(full_text)
    assert [(o.number, o.version) for o in offers] == [(o.number, o.version) for o in full_offers][: len(offers)]
    # Each complete line says what the same line of the full text says.
    complete = text.split("\n")[:-1]
    for line, full_line in zip(complete, full_text.split("\n"), strict=False):
        assert parsers.parse_progress_line(line) == parsers.parse_progress_line(full_line)
    # Lists read from truncated text are a prefix of the full list, never a different or cut-off item.
    for parse_list in (parsers.parse_machine_choices, parsers.parse_cluster_list, parsers.parse_listeners):
        partial_items = parse_list(text)
        full_items = parse_list(full_text)
        assert partial_items == full_items[: len(partial_items)], parse_list.__name__


def test_next_hop_is_the_target_or_the_newest_step_below_it() -> None:
    from segtui.asyncos.versions import next_hop

    v = Version.parse
    offers = [v("15.0.0-104"), v("15.5.1-055"), v("16.0.0-123")]
    assert next_hop(offers, v("16.0.0-123")) == v("16.0.0-123")
    assert next_hop(offers[:2], v("16.0.0-123")) == v("15.5.1-055")
    assert next_hop(offers[:2], v("16.0.0-123"), current=v("15.5.1-055")) is None  # no step forward
    assert next_hop([v("17.0.0-1")], v("16.0.0-123")) is None  # only beyond the target
    assert next_hop([], v("16.0.0-123")) is None
