"""The hard rule under hostile dialogues: segtui never confirms an upgrade to any release other than the target
(or the planned hop). A list that cannot be read safely, a question no rule knows after the choice, a
confirmation before any choice, or a staged image of unknown version: the step fails before any "Y" is sent.

Each case is the review's reproduction (review-hostile a2/a11) on the scripted asyncssh appliance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from segtui.asyncos.errors import UpgradeFailed
from segtui.asyncos.session import DialoguePolicy
from segtui.asyncos.versions import Version
from tests.scripted import ScriptedAppliance, Served, Turn, serving

TARGET = Version.parse("16.0.0-123")
CURRENT = Version.parse("15.0.0-104")
T_ITEM = "AsyncOS 16.0.0 build 123 upgrade For Email, 2024-03-01, is a release available for General Deployment"
O_ITEM = "AsyncOS 15.5.1 build 055 upgrade For Email, 2024-01-01, is a release available for General Deployment"

PRE = "\nAre you sure you want to proceed with upgrade? [Y]> "
MENU = (
    "\nChoose the operation you want to perform:\n- DOWNLOADINSTALL - Downloads and installs the upgrade image "
    "(needs reboot).\n- DOWNLOAD - Downloads the upgrade image.\n[]> "
)
SAVE = "\nWould you like to save the current configuration to the configuration directory before upgrading? [Y]> "
EMAIL = "\nWould you like to email the current configuration before upgrading? [N]> "
PWOPT = (
    "\nChoose the password option:\n1. Mask passwords (Files with masked passwords cannot be loaded using "
    "loadconfig command)\n2. Encrypt passwords\n[1]> "
)
CONFIRM = (
    "\nPerforming an upgrade may require a reboot of the system after the upgrade is applied. You may log in "
    "again after this is done. Do you wish to proceed with the upgrade? [Y]> "
)
ANY = r".*"


def lst(items: list[tuple[int, str]], default: int) -> str:
    body = "\n".join(f"{n}. {t}" for n, t in items)
    return f"\nUpgrades available.\n{body}\n[{default}]> "


GOOD_LIST = lst([(1, O_ITEM), (2, T_ITEM)], 1)
START: list[Turn] = [(PRE, ANY), (MENU, ANY)]
AFTER_LIST: list[Turn] = [(SAVE, ANY), (EMAIL, ANY), (PWOPT, ANY)]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path) as s:
        yield s


async def _upgrade(served: Served, turns: list[Turn], policy: str = "default", **kwargs: object) -> ScriptedAppliance:
    """Run `upgrade` against `turns`; it must fail before confirming. Returns the appliance (what it received)."""
    sa = ScriptedAppliance(script={"upgrade": [*turns, ("\nRebooting the system...\n", None)]}, drop={"upgrade"})
    client = await served.connect(sa, policy=DialoguePolicy(on_unknown=policy))  # type: ignore[arg-type]
    async with client:
        with pytest.raises(UpgradeFailed):
            await client.upgrade(TARGET, current=CURRENT, **kwargs)  # type: ignore[arg-type]
    return sa


def _answers_after(sa: ScriptedAppliance, text: str) -> list[str]:
    return sa.received[sa.received.index(text) + 1 :]


# --- 1. the list must be unambiguous ---------------------------------------------------------------------------


async def test_duplicate_item_numbers_fail_before_choosing(served: Served) -> None:
    sa = await _upgrade(served, [*START, (lst([(1, O_ITEM), (1, T_ITEM)], 1), ANY), *AFTER_LIST, (CONFIRM, ANY)])
    assert _answers_after(sa, "DOWNLOADINSTALL") == []


async def test_duplicate_number_on_an_item_without_release_fails(served: Served) -> None:
    text = "\nUpgrades available.\n2. Cancel and keep the current release\n1. x\n2. " + T_ITEM + "\n[1]> "
    sa = await _upgrade(served, [*START, (text, ANY), *AFTER_LIST, (CONFIRM, ANY)])
    assert _answers_after(sa, "DOWNLOADINSTALL") == []


async def test_item_naming_two_releases_fails_before_choosing(served: Served) -> None:
    two = lst([(1, O_ITEM + " then 16.0.0-123"), (2, "AsyncOS 16.0.0-123 is required first: 15.5.1 build 055")], 1)
    sa = await _upgrade(served, [*START, (two, ANY), *AFTER_LIST, (CONFIRM, ANY)])
    assert _answers_after(sa, "DOWNLOADINSTALL") == []


# --- 2. after the choice, an unknown question is never answered with its default ------------------------------


@pytest.mark.parametrize("policy", ["default", "stop"])
async def test_unknown_question_naming_another_release_stops(served: Served, policy: str) -> None:
    other = (
        "\nA newer maintenance release is recommended: AsyncOS 15.5.1 build 055.\n"
        "Install AsyncOS 15.5.1 build 055 instead? [Y]> "
    )
    sa = await _upgrade(served, [*START, (GOOD_LIST, "2"), (other, ANY), *AFTER_LIST, (CONFIRM, ANY)], policy)
    assert _answers_after(sa, "DOWNLOADINSTALL") == ["2"]


async def test_unknown_question_without_release_after_the_choice_stops(served: Served) -> None:
    odd = "\nApply the recommended settings afterwards? [Y]> "
    sa = await _upgrade(served, [*START, (GOOD_LIST, "2"), (odd, ANY), *AFTER_LIST, (CONFIRM, ANY)])
    assert _answers_after(sa, "DOWNLOADINSTALL") == ["2"]


async def test_unknown_question_declining_by_default_takes_the_default(served: Served) -> None:
    # An extra question whose default declines (an operator pressing Enter) stays answerable: it is recorded.
    extra = "\nDo you want to send a notification email to the administrators about this upgrade? [N]> "
    sa = ScriptedAppliance(
        script={
            "upgrade": [
                *START,
                (GOOD_LIST, "2"),
                (extra, ""),
                *AFTER_LIST,
                (CONFIRM, "Y"),
                ("\nRebooting the system...\n", None),
            ]
        },
        drop={"upgrade"},
    )
    seen: list[str] = []
    client = await served.connect(sa, on_unknown=lambda command, question: seen.append(question))
    async with client:
        assert (await client.upgrade(TARGET, current=CURRENT)).chosen == TARGET
    assert len(seen) == 1 and "notification" in seen[0]


async def test_list_asked_again_stops(served: Served) -> None:
    sa = await _upgrade(served, [*START, (GOOD_LIST, "2"), ("\nInvalid selection." + GOOD_LIST, ANY), (CONFIRM, ANY)])
    assert _answers_after(sa, "DOWNLOADINSTALL") == ["2"]


async def test_list_asked_again_after_16k_of_text_stops(served: Served) -> None:
    pad = "\n".join(f"note {i}: release notes line ......................................" for i in range(400))
    relist = f"\nInvalid selection.\n{pad}\n1. {O_ITEM}\n2. {T_ITEM}\n[1]> "
    sa = await _upgrade(served, [*START, (GOOD_LIST, "2"), (relist, ANY), *AFTER_LIST, (CONFIRM, ANY)])
    assert _answers_after(sa, "DOWNLOADINSTALL") == ["2"]


# --- 3. no confirmation without a checked choice ----------------------------------------------------------------


@pytest.mark.parametrize(
    "confirm",
    [
        "\nDo you want to proceed with the upgrade to the default release? [Y]> ",
        "\nAre you sure you want to proceed with upgrade? [Y]> ",
        CONFIRM,
    ],
)
async def test_confirmation_without_a_list_fails_before_answering(served: Served, confirm: str) -> None:
    sa = await _upgrade(served, [*START, *AFTER_LIST, (confirm, ANY)])
    assert _answers_after(sa, "DOWNLOADINSTALL") == ["Y", "N", "2"]


async def test_preamble_wording_naming_another_release_after_the_list_is_refused(served: Served) -> None:
    confirm = "\nAsyncOS 15.5.1 build 055 will be installed. Are you sure you want to proceed with upgrade? [Y]> "
    sa = await _upgrade(served, [*START, (GOOD_LIST, "2"), *AFTER_LIST, (confirm, ANY)])
    assert _answers_after(sa, "DOWNLOADINSTALL") == ["2", "Y", "N", "2"]


async def test_confirmation_rechecks_the_choice_against_the_plan(served: Served) -> None:
    # The list offers only the other release, which the plan does not allow: nothing chosen, nothing confirmed.
    sa = await _upgrade(served, [*START, (lst([(1, O_ITEM)], 1), ANY), *AFTER_LIST, (CONFIRM, ANY)], allowed={TARGET})
    assert _answers_after(sa, "DOWNLOADINSTALL") == []


async def test_a_clean_dialogue_still_confirms_the_target(served: Served) -> None:
    sa = ScriptedAppliance(
        script={
            "upgrade": [
                *START,
                (GOOD_LIST, "2"),
                *AFTER_LIST,
                ("\nFrom AsyncOS 13.0 onwards, things changed. Do you want to proceed with the upgrade? [Y]> ", "Y"),
                (CONFIRM, "Y"),
                (
                    "\nInstalling application...\nEnter the number of seconds to wait before forcibly closing "
                    "connections.\n[30]> ",
                    "30",
                ),
                ("\nRebooting the system...\n", None),
            ]
        },
        drop={"upgrade"},
    )
    confirmed: list[Version] = []
    client = await served.connect(sa)
    async with client:
        result = await client.upgrade(TARGET, current=CURRENT, before_confirm=confirmed.append)
    assert result.chosen == TARGET and confirmed == [TARGET]
    assert _answers_after(sa, "DOWNLOADINSTALL") == ["2", "Y", "N", "2", "Y", "Y", "30"]


# --- 4. INSTALL only of a staged image whose version was read --------------------------------------------------


class _InOrder(dict[str, list[Turn]]):
    """A script whose `upgrade` plays a different dialogue each time it is run."""

    def __init__(self, runs: list[list[Turn]]) -> None:
        super().__init__(upgrade=runs[0])
        self.runs = runs

    def get(self, key: str, default: object = None) -> list[Turn]:
        if key == "upgrade" and self.runs:
            return self.runs.pop(0)
        return super().get(key, default)  # type: ignore[arg-type]


STAGED_MENU = (
    "\nChoose the operation you want to perform:\n- DOWNLOADINSTALL - Downloads and installs the upgrade image "
    "(needs reboot).\n- DOWNLOAD - Downloads the upgrade image.\n- INSTALL - Installs the downloaded upgrade image "
    "(needs reboot).\n- DELETE - Delete downloaded image\n- DOWNLOADSTATUS - Status of the download.\n[]> "
)


def _status_run(image: str) -> list[Turn]:
    return [
        (PRE, "Y"),
        (STAGED_MENU, "DOWNLOADSTATUS"),
        (f"\nUpgrade image {image} downloaded, ready to install.\n", None),
    ]


@pytest.mark.parametrize("on_box", ["AsyncOS 15.5.1 build 055", "AsyncOS 16.0.0 build 123"])
async def test_staged_install_only_of_the_image_whose_version_was_read(served: Served, on_box: str) -> None:
    ok = on_box.endswith("16.0.0 build 123")
    install: list[Turn] = [(PRE, "Y"), (STAGED_MENU, "INSTALL" if ok else "DOWNLOADINSTALL")]
    if not ok:
        install.append((GOOD_LIST, "2"))
    install += [(SAVE, "Y"), (EMAIL, "N"), (PWOPT, "2"), (CONFIRM, "Y"), ("\nRebooting the system...\n", None)]
    sa = ScriptedAppliance(script=_InOrder([_status_run(on_box), install]), drop=set())
    client = await served.connect(sa)
    async with client:
        result = await client.upgrade(TARGET, current=CURRENT, allowed={TARGET}, staged=TARGET)
    assert result.chosen == TARGET and result.installed_staged is ok
    assert sa.received.count("INSTALL") == (1 if ok else 0)
