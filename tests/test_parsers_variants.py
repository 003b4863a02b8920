"""Every parser reads its printout by meaning: hypothesis renders each one in many plausible ways (vendor
prefixes, case, column widths, thousands separators, trailing spaces, CRLF, extra lines, stray erase-line
sequences) and the parser must read the same values from all of them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segtui.asyncos import parsers
from segtui.asyncos.errors import ApplianceError, ParseError
from segtui.asyncos.versions import Version

EXTRA_LINES = [
    "",
    "Note: this line is new in a later release",
    "BIOS Version: 6.00",
    "Feature - Sophos:              1042 days",
    "===============",
]


@dataclass(frozen=True)
class Dress:
    """How one rendering of a printout differs from another at the byte level."""

    crlf: bool
    erase: bool  # `ESC [ K` at line ends (the session strips it, parsers stay robust)
    trailing: int  # trailing spaces per line

    def apply(self, lines: list[str]) -> str:
        out = []
        for line in lines:
            line = line + " " * self.trailing
            if self.erase:
                line = line + "\x1b[K"
            out.append(line)
        text = "\n".join(out) + "\n"
        return text.replace("\n", "\r\n") if self.crlf else text


dresses = st.builds(Dress, crlf=st.booleans(), erase=st.booleans(), trailing=st.integers(0, 3))


def cased(draw: st.DrawFn, text: str) -> str:
    return draw(st.sampled_from([text, text.lower(), text.upper(), text.title()]))


def number(draw: st.DrawFn, n: int) -> str:
    return f"{n:,}" if draw(st.booleans()) else str(n)


def with_extras(draw: st.DrawFn, lines: list[str]) -> list[str]:
    """Extra lines inserted anywhere (never inside a line)."""
    out = list(lines)
    for extra in draw(st.lists(st.sampled_from(EXTRA_LINES), max_size=3)):
        out.insert(draw(st.integers(0, len(out))), extra)
    return out


versions = st.builds(Version, st.integers(10, 19), st.integers(0, 9), st.integers(0, 9), st.integers(1, 999))


# --- version --------------------------------------------------------------------------------------
@st.composite
def version_printouts(draw: st.DrawFn) -> tuple[str, Version, str]:
    v = draw(versions)
    serial = draw(st.from_regex(r"[0-9A-F]{12}-[A-Z0-9]{8}", fullmatch=True))
    pad = " " * draw(st.integers(0, 12))
    fields = [
        f"{cased(draw, 'Version')}:{pad} {v}",
        f"{cased(draw, 'Serial #')}: {serial}",
        f"{cased(draw, 'Model')}:{pad} C300V",
        "Product: Cisco C300V Secure Email Gateway Virtual",
    ]
    fields = draw(st.permutations(fields))
    lines = with_extras(draw, ["", "Current Version", "===============", *fields])
    return draw(dresses).apply(lines), v, serial


@given(version_printouts())
def test_version_variants(case: tuple[str, Version, str]) -> None:
    text, v, serial = case
    info = parsers.parse_version(text)
    assert info.version == v and info.serial == serial and info.model == "C300V"


# --- workqueue status -----------------------------------------------------------------------------
@st.composite
def workqueue_printouts(draw: st.DrawFn) -> tuple[str, str, int]:
    n = draw(st.integers(0, 5_000_000))
    status = draw(st.sampled_from(["Operational", "Paused by admin: maintenance", "Paused for delivery"]))
    pad = " " * draw(st.integers(1, 20))
    lines = [f"{cased(draw, 'Status')}:{pad}{status}", f"{cased(draw, 'Messages')}:{pad}{number(draw, n)}"]
    return draw(dresses).apply(with_extras(draw, ["", *lines])), status, n


@given(workqueue_printouts())
def test_workqueue_variants(case: tuple[str, str, int]) -> None:
    text, status, n = case
    wq = parsers.parse_workqueue_status(text)
    assert wq.status == status and wq.messages == n
    assert wq.paused == status.lower().startswith("paused")


# --- status detail --------------------------------------------------------------------------------
@st.composite
def status_detail_printouts(draw: st.DrawFn) -> tuple[str, str, int, int | None, int | None]:
    depth = draw(st.integers(0, 10_000_000))
    received = draw(st.none() | st.integers(0, 10**9))
    completed = draw(st.none() | st.integers(0, 10**9))
    completed_label = draw(st.sampled_from(["Completed Recipients", "Messages Delivered", "Delivered Recipients"]))
    system = draw(st.sampled_from(["Online", "Receiving Suspended", "Receiving and Delivery Suspended"]))
    w = draw(st.integers(1, 30))
    lines = ["", f"{cased(draw, 'System status')}:{' ' * w}{system}", "", "Counters:      Reset    Uptime    Lifetime"]
    if received is not None:
        lines.append(f"    Messages Received{' ' * w}{number(draw, 3)}  {number(draw, 7)}  {number(draw, received)}")
    lines.append(f"    Recipients Received{' ' * w}1,211,002      260,001   11,001,245")
    if completed is not None:
        lines.append(f"    {completed_label}{' ' * w}{number(draw, 1)}  {number(draw, completed)}")
    lines += [
        "Gauges:      Current",
        " Queue",
        f"   {cased(draw, 'Messages In Work Queue')}{' ' * w}{number(draw, depth)}",
    ]
    lines.append(f"   Kilobytes Used{' ' * w}4,096")
    return draw(dresses).apply(with_extras(draw, lines)), system, depth, received, completed


@given(status_detail_printouts())
def test_status_detail_variants(case: tuple[str, str, int, int | None, int | None]) -> None:
    text, system, depth, received, completed = case
    detail = parsers.parse_status_detail(text)
    assert detail.system_status == system and detail.workqueue_messages == depth
    assert detail.received == received  # the lifetime column: the last number on the row
    assert detail.completed == completed
    assert detail.receiving_suspended == ("Receiving" in system)


# --- updateconfig printout ------------------------------------------------------------------------
@st.composite
def update_printouts(draw: st.DrawFn) -> tuple[str, str, str]:
    own = draw(st.booleans())
    images_value = "http://updates.example.com:8080/" if own else "Cisco IronPort Servers"
    list_value = "http://updates.example.com/asyncos/phoebe-15-0-0-104.xml" if own else "Cisco Servers"
    label = draw(
        st.sampled_from(["AsyncOS upgrades", "Cisco AsyncOS upgrades", "AsyncOS Upgrade", "Cisco AsyncOS Upgrades"])
    )
    label = cased(draw, label)
    width = draw(st.integers(len(label) + 1, 70))

    def row(lbl: str, value: str) -> str:
        return f"{lbl:<{width}}{value}"

    lines = [
        "",
        row("Service (images):", "Update URL:"),
        "-" * 60,
        row("Feature Key updates", "http://downloads.ironport.com/"),
        row("McAfee Anti-Virus definitions", "Cisco IronPort Servers"),
        row(label, images_value),
        "",
        row("Service (list):", "Update URL:"),
        "-" * 60,
        row("McAfee Anti-Virus definitions", "Cisco IronPort Servers"),
        row(label, list_value),
        "",
        "Update interval: 5m",
        "",
        "Choose the operation you want to perform:",
        "- SETUP - Edit update configuration.",
        "For Cisco AsyncOS upgrades, please select where the system will download updates from (images):",
    ]
    images = "updates.example.com:8080" if own else "cisco"
    manifest = list_value if own else "cisco"
    return draw(dresses).apply(lines), images, manifest


@given(update_printouts())
def test_update_settings_variants(case: tuple[str, str, str]) -> None:
    text, images, manifest = case
    source = parsers.parse_update_settings(text)
    assert (source.images, source.manifest) == (images, manifest)


def test_update_settings_single_space_after_widest_label() -> None:
    text = "Cisco AsyncOS upgrades http://u.example:80/\nCisco AsyncOS upgrades http://u.example/a.xml\n"
    assert parsers.parse_update_settings(text).manifest == "http://u.example/a.xml"


# --- upgrades available ---------------------------------------------------------------------------
@st.composite
def upgrade_lists(draw: st.DrawFn) -> tuple[str, list[tuple[int, Version]]]:
    offered = draw(st.lists(versions, min_size=1, max_size=5, unique=True))
    tail = draw(
        st.sampled_from(
            [
                " upgrade For Email, 2024-03-01, is a release available for General Deployment",
                " upgrade for email",
                ", 2025-02-10, Limited Deployment",
                "",
            ]
        )
    )
    lead = draw(st.sampled_from(["AsyncOS ", "Cisco AsyncOS ", "asyncos ", ""]))
    lines = [cased(draw, "Upgrades available.")]
    items = []
    for i, v in enumerate(offered, start=1):
        build = f"{v.build:03d}" if draw(st.booleans()) else str(v.build)
        lines.append(f"{i}. {lead}{v.major}.{v.minor}.{v.patch} build {build}{tail}")
        items.append((i, v))
    lines.append(f"[{draw(st.integers(1, len(offered)))}]> ")
    text = draw(dresses).apply(lines)
    return text.rstrip("\r\n"), items


@given(upgrade_lists())
def test_upgrades_available_variants(case: tuple[str, list[tuple[int, Version]]]) -> None:
    text, items = case
    assert [(o.number, o.version) for o in parsers.parse_upgrades_available(text)] == items


# --- saveconfig, slblconfig -----------------------------------------------------------------------
@st.composite
def saveconfig_outputs(draw: st.DrawFn) -> tuple[str, str, str]:
    host = draw(st.sampled_from(["esa1.example.com", "gw7.mail.example.net", "MX-02.Corp.Example"]))
    name = draw(st.from_regex(r"C[0-9]{3}V-[0-9A-F]{12}-2026[0-9]{4}T[0-9]{6}\.xml", fullmatch=True))
    line = draw(
        st.sampled_from(
            [
                'File written on machine "{h}" to the location "/configuration/{n}".',
                'file written on machine "{h}" to the location "/configuration/{n}"',
                'The file was written on machine "{h}" to the location "{n}".',
            ]
        )
    ).format(h=host, n=name)
    return draw(dresses).apply(with_extras(draw, ["", line])), "/configuration/" + name, host


@given(saveconfig_outputs())
def test_saveconfig_variants(case: tuple[str, str, str]) -> None:
    text, path, host = case
    assert parsers.parse_saveconfig(text) == path
    assert parsers.parse_saveconfig_machine(text) == host


@given(st.from_regex(r"slbl[-_0-9A-Za-z]{0,20}\.csv", fullmatch=True), dresses)
def test_slbl_variants(name: str, dress: Dress) -> None:
    for wording in (f"Export completed: {name}", f'The file "{name}" was written.', f"/configuration/{name}"):
        assert parsers.parse_slbl_export(dress.apply(["", wording])) == f"/configuration/{name}"
    assert parsers.parse_slbl_export(dress.apply(["This feature MUST be enabled through GUI."])) is None


# --- clusters and listeners -----------------------------------------------------------------------
hostnames = st.from_regex(r"[a-z](?:[a-z0-9-]{0,7}[a-z0-9])?\.[a-z]{2,8}\.(com|net|example)", fullmatch=True)


@given(st.lists(hostnames, min_size=1, max_size=5, unique=True), dresses)
def test_machine_choices_and_cluster_list_variants(names: list[str], dress: Dress) -> None:
    menu = ["Choose the machine(s) to disconnect. Separate multiple choices with commas."]
    menu += [f"{i}. {n} (group Main_Group)" for i, n in enumerate(names, start=1)]
    text = dress.apply([*menu, "[]> "])
    assert [(m.number, m.name) for m in parsers.parse_machine_choices(text)] == list(enumerate(names, start=1))
    listing = ["", "Cluster mailcluster", "", "Group Main_Group:"]
    listing += [f"    Machine {n} (Serial #: 42ABC-{i})" for i, n in enumerate(names)]
    assert parsers.parse_cluster_list(dress.apply(listing)) == names
    sim_style = [f"{n} (group Main_Group) connected, AsyncOS 15.0.0" for n in names]
    assert parsers.parse_cluster_list(dress.apply(sim_style)) == names


@given(
    st.lists(st.from_regex(r"[A-Z][A-Za-z0-9_]{0,12}", fullmatch=True), min_size=1, max_size=5, unique=True), dresses
)
def test_listener_list_variants(names: list[str], dress: Dress) -> None:
    lines = ["", "Currently configured listeners:"]
    lines += [f"{i}. {n} (on Management, 192.0.2.{i}) SMTP TCP Port 25 Public" for i, n in enumerate(names, 1)]
    lines += ["", "Choose the operation you want to perform:", "- NEW - Create a new listener.", "[]> "]
    assert parsers.parse_listeners(dress.apply(lines)) == names


# --- download status (table-driven) ---------------------------------------------------------------
DOWNLOAD_STATUS_CASES = [
    (
        "Download of upgrade image (AsyncOS 16.0.0 build 123) is in progress (7% complete).\n",
        "downloading",
        "16.0.0-123",
        7,
    ),
    ("download IN PROGRESS for AsyncOS 16.0.0 build 123\n", "downloading", "16.0.0-123", None),
    ("Upgrade image AsyncOS 16.0.0 build 123 downloaded and ready to install.\n", "downloaded", "16.0.0-123", 100),
    ("AsyncOS 15.5.1 build 055 is ready to install\n", "downloaded", "15.5.1-055", 100),
    ("There is no upgrade image downloaded.\n", "none", None, None),
    ("No download in progress.\n", "none", None, None),
    # The last line that says something wins: a finished download after its progress lines.
    (
        "Download of upgrade image (AsyncOS 16.0.0 build 123) is in progress (99% complete).\n"
        "Upgrade image AsyncOS 16.0.0 build 123 downloaded.\n",
        "downloaded",
        "16.0.0-123",
        100,
    ),
]


@pytest.mark.parametrize(("text", "state", "version", "percent"), DOWNLOAD_STATUS_CASES)
def test_download_status_table(text: str, state: str, version: str | None, percent: int | None) -> None:
    for variant in (text, text.replace("\n", "\r\n"), "\x1b[K" + text):
        status = parsers.parse_download_status(variant)
        assert status.state == state
        assert status.version == (Version.parse(version) if version else None)
        assert status.percent == percent


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Choose the operation you want to perform:\n- DOWNLOADINSTALL\n",
        # A cut-off line is not evidence of anything.
        "Download of upgrade image (AsyncOS 16.0.0 build 123) is in progress (7% compl",
        "AsyncOS 16.0.0 build 123\n",
    ],
)
def test_download_status_says_nothing(text: str) -> None:
    with pytest.raises(ParseError):
        parsers.parse_download_status(text)


# --- every parser: typed error or the right answer ------------------------------------------------
def test_parse_error_is_an_appliance_error() -> None:
    with pytest.raises(ApplianceError) as info:
        parsers.parse_version("garbage\n")
    assert isinstance(info.value, ParseError) and info.value.appliance == "?"
