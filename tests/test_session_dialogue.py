"""Dialogue rules of the session over real SSH: control sequences, questions split by the pager, unknown
questions, the appliance's own name, and the transcript of every command."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segtui.asyncos.errors import CommandTimeout, DialogueError, UnknownQuestion
from segtui.asyncos.session import (
    OTHERWISE_DEFAULT,
    Answer,
    DialoguePolicy,
    Exchange,
    clean_chunk,
    fold_progress,
)
from segtui.asyncos.versions import Version
from segtui.textsafe import strip_control
from tests.scripted import PAGER, ScriptedAppliance, Served, Turn, from_transcript, serving

TRANSCRIPTS = Path(__file__).parent / "data" / "transcripts"
ERASE = "\r" + " " * 24 + "\r"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path) as s:
        yield s


# --- control sequences are gone before anything is matched ----------------------------------------------------

OSC_TITLE = "\x1b]0;pwned by appliance\x07"
OSC_CLIPBOARD = "\x1b]52;c;cm0gLXJmIH4K\x07"
RED, RESET = "\x1b[1;31m", "\x1b[0m"


async def test_control_sequences_are_stripped_before_matching_and_from_everything(served: Served) -> None:
    page1 = f"\n{OSC_TITLE}System status:                 {RED}Online{RESET}\n"
    page2 = f"\r\x1b[K{ERASE}\x1b[2KGauges:\n   Messages In Work Queue            1,057\n{OSC_CLIPBOARD}"
    commit = [
        (f"\nPlease enter some comments describing your changes:\n{RED}[]{RESET}> ", "segtui: test"),
        (f"\nDo you want to save the current configuration for {OSC_TITLE}rollback? \x1b[33m[Y]\x1b[0m> ", "Y"),
        ("\nChanges committed: Sun Nov 29 03:15:00 2026\n", None),
    ]
    sa = ScriptedAppliance(
        crlf=True,
        prompt=f"{RED}gw7.mail.example.net{RESET}> ",
        banner=f"AsyncOS 15.0.0 {OSC_TITLE}\n{OSC_CLIPBOARD}Welcome\n\n",
        script={
            "status detail": [(page1 + f"\x1b[7m{PAGER}\x1b[0m", "KEY"), (page2, None)],
            "commit": commit,
        },
    )
    exchanges: list[Exchange] = []
    client = await served.connect(sa, transcript=exchanges.append)
    seen: list[str] = []
    async with client:
        session = await client.session()
        assert client.prompt == "gw7.mail.example.net" and client.hostname == "gw7.mail.example.net"
        detail = await client.status_detail()
        out = await session.run("status detail", timeout=5, on_output=seen.append)
        assert await client.commit("segtui: test")
    assert detail.workqueue_messages == 1057 and detail.system_status == "Online"
    assert "\x1b" not in out and "Gauges:" in out and PAGER not in out
    assert seen and all("\x1b" not in s and "\x07" not in s for s in seen)
    assert [e.command for e in exchanges] == ["status detail", "status detail", "commit"]
    for e in exchanges:
        assert "\x1b" not in e.output and "\x07" not in e.output and "52;c" not in e.output and "pwned" not in e.output


HOSTILE = f"a{OSC_TITLE}b{RED}c{RESET}\x1b[K\x1bP1$r\x1b\\d{OSC_CLIPBOARD}e\x1b]8;;http://x\x1b\\f\x9b31mg\x1b(Bh"


def test_a_control_sequence_split_across_chunks_is_removed_whole() -> None:
    whole = strip_control(HOSTILE)
    assert whole == "abcdefgh"
    for i in range(len(HOSTILE) + 1):
        first, held = clean_chunk("", HOSTILE[:i])
        second, held = clean_chunk(held, HOSTILE[i:])
        assert first + second == whole and held == "", i


@given(st.lists(st.integers(min_value=0, max_value=len(HOSTILE)), max_size=6))
def test_any_chunking_gives_the_same_clean_text(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(HOSTILE)]
    held, out = "", []
    for a, b in itertools.pairwise(bounds):
        clean, held = clean_chunk(held, HOSTILE[a:b])
        out.append(clean)
    assert "".join(out) == "abcdefgh" and held == ""


# --- a question is everything since the last answer, pager stops taken out ----------------------------------------


def paged_at(lines: list[str], at: int, answer: str) -> list[Turn]:
    """The question made of `lines`, with the pager stopping it after line `at`."""
    first = "\n".join(lines[:at]) + "\n" + PAGER
    rest = ERASE + "\n".join(lines[at:])
    return [(first, "KEY"), (rest, answer)]


UPGRADE_LIST = [
    "",
    "Upgrades available.",
    "1. AsyncOS 15.0.3 build 012 upgrade For Email, 2023-11-02, is a release available for General Deployment",
    "2. AsyncOS 15.5.1 build 055 upgrade For Email, 2024-03-01, is a release available for General Deployment",
    "3. AsyncOS 16.0.0 build 123 upgrade For Email, 2025-02-10, is a release available for General Deployment",
    "4. AsyncOS 16.0.1 build 017 upgrade For Email, 2025-06-10, is a release available for Early Deployment",
    "[4]> ",
]


@pytest.mark.parametrize("at", range(1, len(UPGRADE_LIST)))
async def test_upgrade_list_split_by_the_pager_anywhere(served: Served, at: int) -> None:
    sa = ScriptedAppliance(
        crlf=True,
        script={
            "upgrade": [
                ("\nAre you sure you want to proceed with upgrade? [Y]> ", "Y"),
                (
                    "\nChoose the operation you want to perform:\n- DOWNLOAD - Downloads the upgrade image.\n[]> ",
                    "DOWNLOAD",
                ),
                *paged_at(UPGRADE_LIST, at, "3"),
                ("\nDownloading application in the background.\n", None),
            ]
        },
    )
    client = await served.connect(sa)
    async with client:
        assert await client.download_image(Version.parse("16.0.0-123")) == Version.parse("16.0.0-123")
    assert sa.received[-1] == "3"


LISTENERS = [
    "",
    "Choose the listener(s) you wish to suspend.",
    "Separate multiple entries with commas.",
    "1. InboundMail",
    "2. OutboundMail",
    "3. All",
    "4. RelayDMZ",
    "[1]> ",
]


@pytest.mark.parametrize("at", range(1, len(LISTENERS)))
async def test_listener_list_split_by_the_pager_anywhere(served: Served, at: int) -> None:
    sa = ScriptedAppliance(
        script={
            "suspendlistener": [
                *paged_at(LISTENERS, at, "3"),
                ("\nEnter the number of seconds to wait before abruptly closing connections.\n[30]> ", "9"),
                ("\nReceiving suspended for InboundMail, OutboundMail, RelayDMZ.\n", None),
            ]
        },
    )
    client = await served.connect(sa)
    async with client:
        change = await client.suspend_listeners(9)
    assert change.listeners == ["InboundMail", "OutboundMail", "RelayDMZ"]


MACHINES = [
    "",
    "Choose the machine(s) to disconnect. Separate multiple choices with commas.",
    "1. gw1.mail.example.net (group Main_Group)",
    "2. gw3.mail.example.net (group Main_Group)",
    "3. gw7.mail.example.net (group DMZ)",
    "4. gw9.mail.example.net (group DMZ)",
    "[]> ",
]


@pytest.mark.parametrize("at", range(1, len(MACHINES)))
async def test_cluster_machine_list_split_by_the_pager_anywhere(served: Served, at: int) -> None:
    menu = (
        "\nCluster mailcluster\n\nChoose the operation you want to perform:\n"
        "- LIST - List the machines in the cluster.\n- DISCONNECT - Temporarily detach machines from the cluster.\n[]> "
    )
    sa = ScriptedAppliance(
        prompt="(Cluster mailcluster)> ",
        script={
            "clusterconfig": [
                (menu, "DISCONNECT"),
                *paged_at(MACHINES, at, "3"),
                ("\nAre you sure you want to disconnect gw7.mail.example.net? [Y]> ", "Y"),
                ("gw7.mail.example.net is now disconnected from the cluster.\n", None),
            ]
        },
    )
    client = await served.connect(sa)
    async with client:
        await client.cluster_disconnect("gw7.mail.example.net")
    assert sa.received[-2:] == ["3", "Y"]


# --- unknown questions are recorded; policy "stop" stops -------------------------------------------------------

COMMIT_WITH_UNKNOWN: list[Turn] = [
    ("\nPlease enter some comments describing your changes:\n[]> ", "segtui: test"),
    ("\nA brand new consideration.\nShould the frobnicator be enabled? [maybe]> ", ""),
    ("\nDo you want to save the current configuration for rollback? [Y]> ", "Y"),
    ("\nChanges committed: Sun Nov 29 03:15:00 2026\n", None),
]


@pytest.mark.parametrize("echo", [False, True])
async def test_unknown_question_takes_the_default_and_is_reported(served: Served, echo: bool) -> None:
    unknown: list[tuple[str, str]] = []
    sa = ScriptedAppliance(script={"commit": COMMIT_WITH_UNKNOWN}, echo=echo)
    client = await served.connect(sa, on_unknown=lambda cmd, q: unknown.append((cmd, q)))
    async with client:
        assert await client.commit("segtui: test")
    assert unknown == [("commit", "A brand new consideration.\nShould the frobnicator be enabled? [maybe]>")]


async def test_unknown_question_with_policy_stop_is_not_answered(served: Served) -> None:
    unknown: list[tuple[str, str]] = []
    sa = ScriptedAppliance(script={"commit": COMMIT_WITH_UNKNOWN[:2]})
    client = await served.connect(
        sa, policy=DialoguePolicy(on_unknown="stop"), on_unknown=lambda cmd, q: unknown.append((cmd, q))
    )
    with pytest.raises(UnknownQuestion, match="frobnicator"):
        await client.commit("segtui: test")
    await client.close()
    assert sa.received == ["commit", "segtui: test"]  # nothing was answered to the unknown question
    assert [cmd for cmd, _ in unknown] == ["commit"]


async def test_otherwise_default_makes_the_other_questions_known_but_never_answers_a_password(served: Served) -> None:
    unknown: list[tuple[str, str]] = []
    sa = ScriptedAppliance(
        script={
            "commit": COMMIT_WITH_UNKNOWN,
            "updateconfig": [("\nEnter the admin password:", ".*")],
        }
    )
    client = await served.connect(
        sa, policy=DialoguePolicy(on_unknown="stop"), on_unknown=lambda cmd, q: unknown.append((cmd, q))
    )
    session = await client.session()
    answers = [
        Answer(r"comments describing your changes", "segtui: test"),
        Answer(r"save the current configuration for rollback", "Y"),
        OTHERWISE_DEFAULT,
    ]
    out = await session.run("commit", timeout=5, answers=answers)
    assert "Changes committed" in out and unknown == []
    with pytest.raises(DialogueError, match="secret"):
        await session.run("updateconfig", timeout=5, answers=[OTHERWISE_DEFAULT])
    await client.close()


# --- the appliance's own name ---------------------------------------------------------------------------------

SWITCH = (
    "\nThis command is restricted to run in machine mode of the machine you are logged in to.  "
    'Do you want to switch to "Machine gw7.mail.example.net" mode? [Y]> '
)
SUSPENDED = "\nReceiving suspended for IncomingMail.\n"
DELAY = "\nEnter the number of seconds to wait before abruptly closing connections.\n[30]> "


async def test_hostname_from_the_plain_prompt(served: Served) -> None:
    client = await served.connect(ScriptedAppliance(prompt="gw7.mail.example.net> "))
    async with client:
        await client.session()
        assert client.hostname == "gw7.mail.example.net"
    assert client.hostname == "gw7.mail.example.net"  # still known after the session closed


async def test_hostname_from_the_machine_prompt_not_the_cluster_prompt(served: Served) -> None:
    sa = ScriptedAppliance(
        prompt="(Cluster mailcluster)> ",
        script={"suspendlistener": [(SWITCH, "Y"), (DELAY, "30"), (SUSPENDED, None)]},
        prompt_after={"suspendlistener": "(Machine gw7.mail.example.net)> "},
    )
    client = await served.connect(sa)
    async with client:
        await client.session()
        assert client.hostname is None
        await client.suspend_listeners()
        assert client.prompt == "(Machine gw7.mail.example.net)" and client.hostname == "gw7.mail.example.net"


async def test_hostname_from_the_machine_mode_question(served: Served) -> None:
    sa = ScriptedAppliance(
        prompt="(Group east)> ", script={"suspendlistener": [(SWITCH, "Y"), (DELAY, "30"), (SUSPENDED, None)]}
    )
    client = await served.connect(sa)
    async with client:
        await client.suspend_listeners()
        assert client.prompt == "(Group east)" and client.hostname == "gw7.mail.example.net"


async def test_hostname_from_saveconfig(served: Served) -> None:
    written = (
        '\nFile written on machine "gw7.mail.example.net" to the location '
        '"/configuration/C300V-4229F1C3E7A9-20261129T031500.xml".\n'
    )
    sa = ScriptedAppliance(
        prompt="(Cluster mailcluster)> ",
        script={
            "saveconfig": [
                ("\nChoose the passphrase option:\n1. Mask passphrases\n2. Encrypt passphrases\n[1]> ", "2"),
                (written, None),
            ]
        },
    )
    client = await served.connect(sa)
    async with client:
        assert await client.saveconfig() == "/configuration/C300V-4229F1C3E7A9-20261129T031500.xml"
        assert client.hostname == "gw7.mail.example.net"


# --- the transcript holds every command --------------------------------------------------------------------------


async def test_replayed_upgrade_transcript_is_journaled_up_to_the_reboot(served: Served) -> None:
    sa = from_transcript((TRANSCRIPTS / "upgrade-downloadinstall.txt").read_text(), crlf=True)
    assert sa.prompt == "esa1.example.com> " and "upgrade" in sa.drop
    exchanges: list[Exchange] = []
    client = await served.connect(sa, transcript=exchanges.append)
    result = await client.upgrade(Version.parse("16.0.0-123"))
    await client.close()
    assert result.rebooting and result.chosen == Version.parse("16.0.0-123")
    [ex] = exchanges
    assert ex.command == "upgrade" and not ex.complete and ex.error and "upgrade" in ex.error
    assert "Upgrades available." in ex.output and ex.output.rstrip().endswith("Rebooting the system...")


async def test_replayed_cluster_and_paged_transcripts(served: Served) -> None:
    sa = from_transcript((TRANSCRIPTS / "cluster-suspendlistener.txt").read_text(), echo=True)
    client = await served.connect(sa)
    async with client:
        assert (await client.suspend_listeners()).listeners == ["InboundMail", "OutboundMail", "RelayDMZ"]
        assert (await client.workqueue_status()).messages == 318
        assert client.hostname == "esa2.example.com"
    sa = from_transcript((TRANSCRIPTS / "status-detail-paged.txt").read_text(), crlf=True)
    client = await served.connect(sa)
    async with client:
        assert (await client.status_detail()).workqueue_messages == 57


async def test_progress_is_folded_and_secrets_are_masked(served: Served) -> None:
    dots = "\n".join("." * (i % 7 + 1) for i in range(40))
    percents = "\n".join(f".......... ({p}% complete)" for p in range(2, 100, 3))
    sa = ScriptedAppliance(
        password="s3cret-pass",
        script={
            "upgrade": [
                ("\nAre you sure you want to proceed with upgrade? [Y]> ", "Y"),
                ("\nChoose the operation you want to perform:\n- DOWNLOADINSTALL - x\n[]> ", "DOWNLOADINSTALL"),
                ("\nUpgrades available.\n1. AsyncOS 16.0.0 build 123 upgrade For Email, 2025\n[1]> ", "1"),
                ("\nDo you wish to proceed with the upgrade? [Y]> ", "Y"),
                (f"\nDownloading application...\n{dots}\n done.\nInstalling application...\n{percents}\n", None),
                ("Echo of s3cret-pass and of the tok-en-4711 secret\n", None),
                ("\nRebooting the system...\n", None),
            ]
        },
        drop={"upgrade"},
    )
    exchanges: list[Exchange] = []
    client = await served.connect(sa, transcript=exchanges.append, secrets=["tok-en-4711"])
    await client.upgrade(Version.parse("16.0.0-123"))
    await client.close()
    [ex] = exchanges
    lines = ex.output.split("\n")
    assert "… 38 progress lines …" in lines and "… 31 progress lines …" in lines
    assert lines.count(".") == 1  # the first dot row is kept (and the last)
    assert "s3cret-pass" not in ex.output and "tok-en-4711" not in ex.output and "********" in ex.output
    assert ex.output.rstrip().endswith("Rebooting the system...") and not ex.complete


def test_fold_progress_keeps_short_runs_and_other_lines() -> None:
    assert fold_progress("a\n...\n....\nb") == "a\n...\n....\nb"
    assert fold_progress("a\n.\n..\n...\n....\nb") == "a\n.\n… 2 progress lines …\n....\nb"
    three = "x (5% complete)\ny (6% complete)\nz (7% complete)"
    assert fold_progress(three) == three
    assert fold_progress(f"{three}\nw (8% complete)") == "x (5% complete)\n… 2 progress lines …\nw (8% complete)"


async def test_a_command_that_times_out_is_in_the_transcript(served: Served) -> None:
    sa = ScriptedAppliance(
        script={"status detail": [("\nSystem status: Online\npartial", None)]}, hang={"status detail"}
    )
    exchanges: list[Exchange] = []
    client = await served.connect(sa, transcript=exchanges.append, timeout=0.5)
    with pytest.raises(CommandTimeout):
        await client.status_detail()
    await client.close()
    [ex] = exchanges
    assert ex.command == "status detail" and not ex.complete and "deadline" in (ex.error or "")
    assert "System status: Online\npartial" in ex.output
