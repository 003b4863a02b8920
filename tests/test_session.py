"""The driver's session and typed commands against a scripted asyncssh server on loopback (real SSH)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from segtui.asyncos.commands import Appliance
from segtui.asyncos.errors import (
    AuthFailed,
    CommandFailed,
    CommandTimeout,
    ConnectFailed,
    ConnectionLost,
    DialogueError,
    HostKeyRejected,
    UnknownCommand,
    UpgradeFailed,
)
from segtui.asyncos.parsers import UpgradeSource
from segtui.asyncos.versions import Version
from tests.scripted import ScriptedAppliance, Served, serving


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path) as s:
        yield s


VERSION_OUT = (
    "\nCurrent Version\n===============\nProduct: Cisco C300V Secure Email Gateway Virtual\n"
    "Model: C300V\nVersion: 15.0.0-104\nSerial #: 4229F1C3E7A9-ABCD1234EFGH\n"
)


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("echo", [False, True])
async def test_version_with_crlf_and_echo(served: Served, crlf: bool, echo: bool) -> None:
    sa = ScriptedAppliance(crlf=crlf, echo=echo, script={"version": [(VERSION_OUT, None)]})
    client = await served.connect(sa)
    async with client:
        info = await client.version()
    assert info.version == Version.parse("15.0.0-104")
    assert info.serial == "4229F1C3E7A9-ABCD1234EFGH"
    assert client.prompt is None  # closed


async def test_pager_is_answered(served: Served) -> None:
    page1 = "\nSystem status:                 Online\n"
    page2 = "\r                        \rGauges:\n   Messages In Work Queue            1,057\n"
    sa = ScriptedAppliance(
        crlf=True, script={"status detail": [(page1 + "-Press Any Key For More-", "KEY"), (page2, None)]}
    )
    client = await served.connect(sa)
    async with client:
        detail = await client.status_detail()
    assert detail.workqueue_messages == 1057 and detail.system_status == "Online"


async def test_cluster_machine_mode_switch_and_listeners(served: Served) -> None:
    switch = (
        "\nThis command is restricted to run in machine mode of the machine you are logged in to.  "
        'Do you want to switch to "Machine esa2.example.com" mode? [Y]> '
    )
    menu = (
        "\nChoose the listener(s) you wish to suspend.\nSeparate multiple entries with commas.\n"
        "1. All\n2. InboundMail\n3. OutboundMail\n4. RelayDMZ\n[1]> "
    )
    delay = "\nEnter the number of seconds to wait before abruptly closing connections.\n[30]> "
    done = "\nWaiting for listeners to exit...\nReceiving suspended for InboundMail, OutboundMail, RelayDMZ.\n"
    sa = ScriptedAppliance(
        prompt="(Cluster mailcluster)> ",
        echo=True,
        script={"suspendlistener": [(switch, "Y"), (menu, "1"), (delay, "7"), (done, None)]},
        prompt_after={"suspendlistener": "(Machine esa2.example.com)> "},
    )
    client = await served.connect(sa)
    async with client:
        change = await client.suspend_listeners(7)
        assert client.prompt == "(Machine esa2.example.com)"
    assert change.listeners == ["InboundMail", "OutboundMail", "RelayDMZ"]


async def test_single_listener_and_none_configured(served: Served) -> None:
    sa = ScriptedAppliance(
        script={
            "suspendlistener": [
                ("\nEnter the number of seconds to wait before abruptly closing connections.\n[30]> ", "30"),
                ("\nReceiving suspended for IncomingMail.\n", None),
            ],
            "resumelistener": [("\nThere are no listeners configured on this appliance.\n", None)],
        }
    )
    client = await served.connect(sa)
    async with client:
        assert (await client.suspend_listeners()).listeners == ["IncomingMail"]
        assert (await client.resume_listeners()).listeners == []


async def test_unknown_question_takes_default(served: Served) -> None:
    sa = ScriptedAppliance(
        script={
            "commit": [
                ("\nPlease enter some comments describing your changes:\n[]> ", "segtui: test"),
                ("\nA question nobody has seen before? [maybe]> ", ""),
                ("\nDo you want to save the current configuration for rollback? [Y]> ", "Y"),
                ("\nChanges committed: Sun Nov 29 03:15:00 2026\n", None),
            ]
        }
    )
    client = await served.connect(sa)
    async with client:
        assert await client.commit("segtui: test")


async def test_password_question_without_answer_is_refused(served: Served) -> None:
    sa = ScriptedAppliance(script={"commit": [("\nEnter the admin password:", ".*")]})
    client = await served.connect(sa)
    with pytest.raises(DialogueError):
        await client.commit("x")
    await client.close()


async def test_updateconfig_changes_only_asyncos_questions(served: Served) -> None:
    table = (
        "\nService (images):      Update URL:\nFeature Key updates    http://keys.lab:80/\n"
        "AsyncOS upgrades                Cisco IronPort Servers\n\nService (list):\n"
        "AsyncOS upgrades                Cisco IronPort Servers\n\nChoose the operation you want to perform:\n"
        "- SETUP - Edit update configuration.\n[]> "
    )
    q = "\nFor {svc}, please select where the system will download {what}:\n1. Use Cisco servers\n2. Use own server\n[{d}]> "
    host = "\nEnter the hostname and port of the HTTP server to download updates from\nusing the format (local.server:port).\n[{d}]> "
    url = "\nEnter the full HTTP URL of the update list using the format\n(http://local.server:port/directory/manifest.xml).\n[]> "
    sa = ScriptedAppliance(
        crlf=True,
        script={
            "updateconfig": [
                (table, "SETUP"),
                (q.format(svc="Feature Key updates", what="updates from", d="2"), ""),
                (host.format(d="keys.lab:80"), ""),  # another service's host: keep its default
                (q.format(svc="Timezone rules", what="updates from", d="1"), ""),
                (q.format(svc="Cisco AsyncOS upgrades", what="updates from (images)", d="1"), "2"),
                (host.format(d=""), r"updates\.example\.com:80"),
                (
                    q.format(svc="Cisco AsyncOS upgrades", what="the list of available updates from", d="1"),
                    "2",
                ),
                (url, r"http://updates\.example\.com/asyncos/phoebe-15-0-0-104\.xml"),
                ("\nEnter the update interval.\n[5m]> ", ""),
                (table, ""),
            ]
        },
    )
    client = await served.connect(sa)
    async with client:
        await client.set_upgrade_source(
            UpgradeSource("updates.example.com:80", "http://updates.example.com/asyncos/phoebe-15-0-0-104.xml")
        )


async def test_upgrade_dialogue_picks_target_and_encrypts(served: Served) -> None:
    offers = (
        "\nUpgrades available.\n1. AsyncOS 15.5.1 build 055 upgrade For Email, 2024-03-01, is a release\n"
        "2. AsyncOS 16.0.0 build 123 upgrade For Email, 2025-02-10, is a release\n[2]> "
    )
    sa = ScriptedAppliance(
        script={
            "upgrade": [
                (
                    "\nAnalyzing system configuration for upgrade readiness...\n"
                    "Are you sure you want to proceed with upgrade? [Y]> ",
                    "Y",
                ),
                (
                    "\nChoose the operation you want to perform:\n- DOWNLOADINSTALL - Downloads and installs the upgrade "
                    "image (needs reboot).\n- DOWNLOAD - Downloads the upgrade image.\n[]> ",
                    "DOWNLOADINSTALL",
                ),
                (offers, "2"),
                (
                    "\nWould you like to save the current configuration to the configuration directory before upgrading? "
                    "[Y]> ",
                    "Y",
                ),
                ("\nWould you like to email the current configuration before upgrading? [N]> ", "N"),
                (
                    "\nChoose the passphrase option:\n1. Mask passphrases (Files with masked passphrases cannot be loaded "
                    "using loadconfig command)\n2. Encrypt passphrases\n[1]> ",
                    "2",
                ),
                (
                    "\nFrom AsyncOS 13.0 onwards, something new. Do you want to proceed with the upgrade? [Y]> ",
                    "Y",
                ),
                (
                    "\nPerforming an upgrade may require a reboot of the system after the upgrade is applied. You may log in "
                    "again after this is done. Do you wish to proceed with the upgrade? [Y]> ",
                    "Y",
                ),
                (
                    "\nDownloading application...\n.......... (50% complete)\n done.\nInstalling application...\n"
                    "..... (100% complete)\nUpgrade installation finished.\n",
                    None,
                ),
                ("\nEnter the number of seconds to wait before forcibly closing connections.\n[30]> ", "30"),
                ("\nRebooting the system...\n", None),
            ]
        },
        drop={"upgrade"},
    )
    client = await served.connect(sa)
    progress: list[tuple[str, int | None]] = []
    confirmed: list[Version] = []
    result = await client.upgrade(
        Version.parse("16.0.0-123"),
        on_progress=lambda p: progress.append((p.phase, p.percent)),
        before_confirm=confirmed.append,
    )
    await client.close()
    assert result.chosen == Version.parse("16.0.0-123") and result.rebooting
    assert confirmed == [Version.parse("16.0.0-123")]
    assert ("download", 50) in progress and ("install", 100) in progress


async def test_upgrade_hop_and_failure(served: Served) -> None:
    base = [
        ("\nAre you sure you want to proceed with upgrade? [Y]> ", "Y"),
        ("\nChoose the operation you want to perform:\n- DOWNLOADINSTALL - x\n[]> ", "DOWNLOADINSTALL"),
    ]
    offers = "\nUpgrades available.\n1. AsyncOS 15.0.0 build 104 upgrade For Email, 2023\n[1]> "
    sa = ScriptedAppliance(
        script={
            # Reading the list takes the default item and declines at the confirmation: nothing changes.
            "upgrade": [*base, (offers, ""), ("\nDo you wish to proceed with the upgrade? [Y]> ", "N")],
        }
    )
    client = await served.connect(sa)
    async with client:
        offered = await client.available_upgrades()
    assert [str(o.version) for o in offered] == ["15.0.0-104"]
    sa.script["upgrade"] = [*base, ("\nNo available upgrades. Please check the settings.\n", None)]
    client2 = await served.connect(sa)
    with pytest.raises(UpgradeFailed, match="No available upgrades"):
        await client2.upgrade(Version.parse("16.0.0-123"))
    await client2.close()


async def test_unknown_command_timeout_and_drop(served: Served) -> None:
    sa = ScriptedAppliance(
        silent={"workqueue status"},
        drop={"status detail"},
        script={"status detail": [("\npartial output", None)]},
    )
    client = await served.connect(sa, timeout=0.5)
    with pytest.raises(UnknownCommand):
        await client.slbl_export()
    with pytest.raises(CommandTimeout):
        await client.workqueue_status()
    with pytest.raises(ConnectionLost):
        await client.status_detail()
    await client.close()


async def test_connection_errors_are_typed(served: Served, tmp_path: Path) -> None:
    sa = ScriptedAppliance(script={"version": [(VERSION_OUT, None)]})
    port, kh, _ = await served.serve(sa)
    with pytest.raises(AuthFailed):
        await Appliance(served.options(port, kh, "wrong")).version()
    # A different key in known_hosts: refused, with instructions; no trust on first use.
    other = tmp_path / "other_known_hosts"
    other.write_text(f"[127.0.0.1]:{port} {asyncssh.generate_private_key('ssh-ed25519').export_public_key().decode()}")
    with pytest.raises(HostKeyRejected, match="ssh-keyscan"):
        await Appliance(served.options(port, other, sa.password)).version()
    acceptor = served.items[-1][1]
    acceptor.close()
    await acceptor.wait_closed()
    with pytest.raises(ConnectFailed, match="refused"):
        await Appliance(served.options(port, kh, sa.password, connect_timeout=2)).version()


async def test_commit_nothing_and_bad_answer(served: Served) -> None:
    sa = ScriptedAppliance(
        script={
            "commit": [("\nThere is no data to commit.\n", None)],
            "resumelistener": [("\nInvalid arguments when processing: resumelistener\n", None)],
        }
    )
    client = await served.connect(sa)
    async with client:
        assert await client.commit("x") is False
        with pytest.raises(CommandFailed):
            await client.resume_listeners()


async def test_refused_answer_fails_clearly_instead_of_looping(served: Served) -> None:
    ask = ("\nYou must enter a valid hostname and port.\n[]> ", ".*")
    sa = ScriptedAppliance(
        script={
            "updateconfig": [
                ("\nChoose the operation you want to perform:\n- SETUP - Edit.\n[]> ", "SETUP"),
                *([ask] * 6),
            ]
        }
    )
    client = await served.connect(sa, timeout=20)
    with pytest.raises(DialogueError, match="keeps asking"):
        await client.set_upgrade_source(UpgradeSource("h:80", "http://h/asyncos/x.xml"))
    await client.close()


async def test_shell_refused_after_login_is_a_typed_error(served: Served) -> None:
    """Between login and the shell the appliance may go down (rebooting): typed, never a raw OSError."""
    sa = ScriptedAppliance(refuse_shell=True)
    client = await served.connect(sa)
    with pytest.raises(ConnectionLost, match=r"opening the shell|during `\(login\)`"):
        await client.version()
