"""What the parsers decide, acted on over real SSH: the upgrade hard rule, cluster machines by their own
hostname, bounded backups. A scripted asyncssh server on loopback records every answer segtui sends."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncssh
import pytest

from segtui.asyncos.commands import Appliance, CommandTimeouts
from segtui.asyncos.errors import CommandFailed, ParseError, UpgradeFailed
from segtui.asyncos.session import ConnectOptions, Credentials
from segtui.asyncos.versions import Version
from tests.scripted import ScriptedAppliance, Turn, _Auth, _session

V = Version.parse
TARGET = V("16.0.0-123")

ANALYSIS: Turn = ("\nAnalyzing system configuration...\nAre you sure you want to proceed with upgrade? [Y]> ", "Y")
MENU: Turn = (
    "\nChoose the operation you want to perform:\n- DOWNLOADINSTALL - Downloads and installs the upgrade image "
    "(needs reboot).\n- DOWNLOAD - Downloads the upgrade image.\n[]> ",
    "DOWNLOADINSTALL",
)
SAVE: Turn = (
    "\nWould you like to save the current configuration to the configuration directory before upgrading? [Y]> ",
    "Y",
)
EMAIL: Turn = ("\nWould you like to email the current configuration before upgrading? [N]> ", "N")
PASSPHRASE: Turn = (
    "\nChoose the passphrase option:\n1. Mask passphrases (cannot be loaded)\n2. Encrypt passphrases\n[1]> ",
    "2",
)
CONFIRM_TEXT = (
    "\nPerforming an upgrade may require a reboot of the system after the upgrade is applied. You may log in "
    "again after this is done. Do you wish to proceed with the upgrade? [Y]> "
)
AFTER: list[Turn] = [
    ("\nDownloading application...\n done.\nUpgrade installation finished.\n", None),
    ("\nEnter the number of seconds to wait before forcibly closing connections.\n[30]> ", "30"),
    ("\nRebooting the system...\n", None),
]


def offers(*items: str, default: int = 1) -> str:
    body = "".join(f"{i}. {item}\n" for i, item in enumerate(items, start=1))
    return f"\nUpgrades available.\n{body}[{default}]> "


class Server:
    """Scripted appliances on loopback; `scp=True` also serves `scp -f` from `root` (as the simulator does)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.acceptors: list[asyncssh.SSHAcceptor] = []

    async def start(
        self,
        sa: ScriptedAppliance,
        *,
        root: Path | None = None,
        scp_handler: Callable[[asyncssh.SSHServerProcess[str]], object] | None = None,
        timeout: float = 5,
    ) -> Appliance:
        key = asyncssh.generate_private_key("ssh-ed25519")

        def process_factory(process: asyncssh.SSHServerProcess[str]) -> object:
            if scp_handler is not None and (process.command or "").startswith("scp "):
                return scp_handler(process)
            return _session(sa, process)

        extra: dict[str, object] = {}
        if root is not None:
            extra = {
                "allow_scp": True,
                "sftp_factory": lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
            }
        acceptor = await asyncssh.create_server(
            lambda: _Auth(sa),
            "127.0.0.1",
            0,
            server_host_keys=[key],
            process_factory=process_factory,
            encoding="latin-1" if scp_handler is not None else "utf-8",
            line_editor=False,
            **extra,
        )
        self.acceptors.append(acceptor)
        port = acceptor.sockets[0].getsockname()[1]
        kh = self.tmp / f"known_hosts_{port}"
        kh.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
        opts = ConnectOptions(
            "esa03",
            "127.0.0.1",
            port,
            Credentials("admin", sa.password),
            str(kh),  # a file name: asyncssh reads it, and so does a session that re-reads it per connection
            connect_timeout=3,
            login_timeout=3,
        )
        return Appliance(opts, timeouts=CommandTimeouts(default=timeout, upgrade=timeout, backup=timeout))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    s = Server(tmp_path)
    yield s
    for a in s.acceptors:
        a.close()


def answers_after_list(sa: ScriptedAppliance) -> list[str]:
    """What segtui answered once the upgrade menu was done (the list and every question after it)."""
    received = sa.received
    return received[received.index("DOWNLOADINSTALL") + 1 :]


# --- the upgrade hard rule ------------------------------------------------------------------------
async def test_default_item_is_another_release_we_answer_our_own_number(server: Server) -> None:
    listing = offers(
        "AsyncOS 17.0.0 build 010 upgrade For Email, 2026-01-01, is a release available for Early Deployment",
        "Cisco AsyncOS 16.0.0 build 123 upgrade For Email, 2025-02-10, General Deployment",
        "AsyncOS 15.5.1 build 055 upgrade For Email, 2024-03-01",
        default=1,
    )
    sa = ScriptedAppliance(
        script={"upgrade": [ANALYSIS, MENU, (listing, "2"), SAVE, EMAIL, PASSPHRASE, (CONFIRM_TEXT, "Y"), *AFTER]},
        drop={"upgrade"},
    )
    client = await server.start(sa)
    confirmed: list[Version] = []
    result = await client.upgrade(TARGET, current=V("15.0.0-104"), before_confirm=confirmed.append)
    await client.close()
    assert not sa.mismatches, sa.mismatches
    assert answers_after_list(sa)[0] == "2"
    assert result.chosen == TARGET and confirmed == [TARGET]


async def test_planned_hop_is_chosen_and_nothing_else(server: Server) -> None:
    hop = V("15.5.1-055")
    listing = offers("AsyncOS 15.0.5 build 001 upgrade For Email", "AsyncOS 15.5.1 build 055 upgrade For Email")
    sa = ScriptedAppliance(
        script={"upgrade": [ANALYSIS, MENU, (listing, "2"), SAVE, EMAIL, PASSPHRASE, (CONFIRM_TEXT, "Y"), *AFTER]},
        drop={"upgrade"},
    )
    client = await server.start(sa)
    result = await client.upgrade(TARGET, allowed={TARGET, hop}, current=V("15.0.0-104"))
    await client.close()
    assert not sa.mismatches, sa.mismatches
    assert result.chosen == hop


UNREADABLE_OR_WRONG = {
    # Items the parser cannot read at all.
    "unreadable": offers("Release one (recommended)", "Release two"),
    # The target is not there; the only item is beyond it (never taken).
    "target-absent": offers("AsyncOS 17.0.0 build 010 upgrade For Email"),
    # Only a hop that was not planned (allowed is the target alone).
    "unplanned-hop": offers("AsyncOS 15.5.1 build 055 upgrade For Email"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE_OR_WRONG))
async def test_no_confirmation_when_the_list_does_not_offer_our_release(server: Server, case: str) -> None:
    sa = ScriptedAppliance(
        script={
            "upgrade": [ANALYSIS, MENU, (UNREADABLE_OR_WRONG[case], ".*"), SAVE, EMAIL, PASSPHRASE, (CONFIRM_TEXT, "Y")]
        }
    )
    client = await server.start(sa)
    with pytest.raises(UpgradeFailed, match=r"esa03: .*(could not be read|not offered)") as info:
        await client.upgrade(TARGET, allowed={TARGET}, current=V("15.0.0-104"))
    await client.close()
    assert "\n" not in str(info.value)
    # Nothing was answered to the list, and certainly no "Y" to anything after it.
    assert answers_after_list(sa) == []


async def test_appliance_skipping_the_list_is_never_confirmed(server: Server) -> None:
    """The appliance took its own default without showing the list: we never say Y to that."""
    sa = ScriptedAppliance(script={"upgrade": [ANALYSIS, MENU, SAVE, EMAIL, PASSPHRASE, (CONFIRM_TEXT, "Y")]})
    client = await server.start(sa)
    with pytest.raises(UpgradeFailed, match="before any release was chosen"):
        await client.upgrade(TARGET)
    await client.close()
    assert "Y" not in answers_after_list(sa)[1:]  # the save-config "Y" is the only one, and only before
    assert sa.received.count("Y") <= 2


async def test_confirmation_naming_another_release_is_refused(server: Server) -> None:
    listing = offers("AsyncOS 16.0.0 build 123 upgrade For Email")
    confirm = "\nYou are about to install AsyncOS 17.0.0 build 010. Do you wish to proceed with the upgrade? [Y]> "
    sa = ScriptedAppliance(
        script={"upgrade": [ANALYSIS, MENU, (listing, "1"), SAVE, EMAIL, PASSPHRASE, (confirm, "Y")]}
    )
    client = await server.start(sa)
    with pytest.raises(UpgradeFailed, match=r"names 17\.0\.0-010"):
        await client.upgrade(TARGET)
    await client.close()
    assert answers_after_list(sa) == ["1", "Y", "N", "2"]  # the list, save, email, passphrase; no confirmation


# --- cluster machines by their own hostname -------------------------------------------------------
CLUSTER_MENU = (
    "\nCluster mailcluster\n\nChoose the operation you want to perform:\n- LIST - List the machines in the cluster.\n"
    "- DISCONNECT - Temporarily detach machines from the cluster.\n- RECONNECT - Restore connections.\n[]> "
)


def cluster_script(pick: str | None) -> dict[str, list[Turn]]:
    machines = (
        "\nChoose the machine(s) to disconnect. Separate multiple choices with commas.\n"
        "1. esa03.example.com (group Main_Group)\n2. gw7.mail.example.net (group Main_Group)\n"
        "3. gw7.mail.example.net.backup.lab (group Main_Group)\n[]> "
    )
    turns: list[Turn] = [(CLUSTER_MENU, "DISCONNECT"), (machines, pick or ".*")]
    if pick is not None:
        turns += [
            ("\nAre you sure you want to disconnect gw7.mail.example.net? [Y]> ", "Y"),
            ("gw7.mail.example.net is now disconnected from the cluster.\n", None),
        ]
    return {"clusterconfig": turns}


async def test_cluster_machine_chosen_by_exact_learned_hostname(server: Server) -> None:
    sa = ScriptedAppliance(script=cluster_script("2"))
    client = await server.start(sa)
    async with client:
        await client.cluster_disconnect("GW7.Mail.Example.NET.")  # DNS: case and a trailing dot do not matter
    assert not sa.mismatches, sa.mismatches
    assert sa.received[:3] == ["clusterconfig", "DISCONNECT", "2"]


@pytest.mark.parametrize("hostname", ["esa03", "gw7", "gw7.mail.example", "mail.example.net"])
async def test_cluster_machine_never_matched_by_prefix_or_label(server: Server, hostname: str) -> None:
    sa = ScriptedAppliance(script=cluster_script(None))
    client = await server.start(sa)
    with pytest.raises(CommandFailed, match=r"not offered \(offered: esa03\.example\.com, gw7\.mail\.example\.net,"):
        await client.cluster_disconnect(hostname)
    await client.close()
    assert sa.received[:2] == ["clusterconfig", "DISCONNECT"] and len(sa.received) == 2


# --- ParseError names the appliance ---------------------------------------------------------------
async def test_garbled_version_names_the_appliance(server: Server) -> None:
    sa = ScriptedAppliance(script={"version": [("\nCurrent Version\n===============\nVersion: fifteen\n", None)]})
    client = await server.start(sa)
    with pytest.raises(ParseError, match=r"^esa03: version output: not an AsyncOS version") as info:
        await client.version()
    await client.close()
    assert info.value.appliance == "esa03"


# --- bounded backups ------------------------------------------------------------------------------
SAVECONFIG: Turn = (
    "\nChoose the passphrase option:\n1. Mask passphrases (cannot be loaded)\n2. Encrypt passphrases\n[1]> ",
    "2",
)


def saveconfig_script(location: str) -> dict[str, list[Turn]]:
    written = f'\nFile written on machine "gw7.mail.example.net" to the location "{location}".\n'
    return {"saveconfig": [SAVECONFIG, (written, None)]}


@pytest.fixture
def umask0() -> object:
    old = os.umask(0)
    yield
    os.umask(old)


async def test_backup_is_0600_from_creation_and_hashed(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask0: object
) -> None:
    import hashlib

    root = tmp_path / "appliance"
    (root / "configuration").mkdir(parents=True)
    content = os.urandom(300_000)
    (root / "configuration" / "C300V-1.xml").write_bytes(content)
    sa = ScriptedAppliance(script=saveconfig_script("/configuration/C300V-1.xml"))
    client = await server.start(sa, root=root)
    backups = tmp_path / "backups"
    chmodded: list[str] = []
    real_chmod = os.chmod

    def chmod(path: object, mode: int, **kw: object) -> None:
        chmodded.append(str(path))
        real_chmod(path, mode, **kw)  # type: ignore[arg-type]

    def fchmod(*args: object) -> None:
        chmodded.append("fchmod")

    monkeypatch.setattr(os, "chmod", chmod)
    monkeypatch.setattr(os, "fchmod", fchmod, raising=False)
    async with client:
        remote = await client.saveconfig()
        backup = await client.download(remote, backups, "config")
    assert backup.path == backups / "C300V-1.xml"
    assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600  # with umask 0: the mode it was created with
    assert [p for p in chmodded if p != str(backups)] == []  # never chmod-ed after the fact
    assert backup.sha256 == hashlib.sha256(content).hexdigest()
    assert backup.path.read_bytes() == content


async def test_backup_over_the_cap_is_refused_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    root = tmp_path / "appliance"
    (root / "configuration").mkdir(parents=True)
    (root / "configuration" / "huge.xml").write_bytes(b"x" * 5000)
    client = await server.start(ScriptedAppliance(), root=root)
    backups = tmp_path / "backups"
    with pytest.raises(CommandFailed, match=r"esa03: SCP of /configuration/huge\.xml: the file is 5000 bytes, over"):
        await client.download("/configuration/huge.xml", backups, "config", max_bytes=4096)
    await client.close()
    assert list(backups.iterdir()) == []


@pytest.mark.parametrize("location", ["/", "/configuration/", "", "/configuration/..", "/configuration/*.xml"])
async def test_backup_location_that_names_no_file_is_refused_in_one_line(
    server: Server, tmp_path: Path, location: str
) -> None:
    sa = ScriptedAppliance(script=saveconfig_script(location))
    client = await server.start(sa, root=tmp_path)
    async with client:
        remote = await client.saveconfig() if location else ""
        with pytest.raises(CommandFailed, match="not the name of a file") as info:
            await client.download(remote, tmp_path / "backups", "config")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "backups").exists()


async def test_backup_of_a_missing_or_directory_path_is_a_one_line_failure(server: Server, tmp_path: Path) -> None:
    root = tmp_path / "appliance"
    (root / "configuration" / "sub").mkdir(parents=True)
    client = await server.start(ScriptedAppliance(), root=root)
    backups = tmp_path / "backups"
    async with client:
        for remote in ("/configuration/missing.xml", "/configuration/sub"):
            with pytest.raises(CommandFailed, match=rf"esa03: SCP of {remote}: refused by the appliance") as info:
                await client.download(remote, backups, "config")
            assert "\n" not in str(info.value)
    assert list(backups.iterdir()) == []


def hostile_scp(behaviour: str) -> Callable[[asyncssh.SSHServerProcess[str]], object]:
    """A peer that breaks the SCP protocol in one way (the server runs latin-1: one char per byte)."""

    async def handler(process: asyncssh.SSHServerProcess[str]) -> None:
        try:
            await process.stdin.readexactly(1)
            if behaviour == "short":
                process.stdout.write("C0644 100000 c.xml\n")
                await process.stdin.readexactly(1)
                process.stdout.write("y" * 70_000)  # then the line drops
                await process.stdout.drain()
            elif behaviour == "endless-header":
                process.stdout.write("C0644 " + "9" * 100_000)
            elif behaviour == "two-files":
                for name in ("a.xml", "b.xml"):
                    process.stdout.write(f"C0644 3 {name}\n")
                    await process.stdin.readexactly(1)
                    process.stdout.write("abc\0")
                    await process.stdin.readexactly(1)
            elif behaviour == "directory":
                process.stdout.write("D0755 0 configuration\n")
        except (asyncio.IncompleteReadError, asyncssh.Error, OSError):
            pass
        process.exit(0)

    return handler


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("short", "ended after 70000 of 100000 bytes"),
        ("endless-header", "header line too long"),
        ("two-files", "more than the one file"),
        ("directory", "is a directory"),
    ],
)
async def test_hostile_scp_peer_leaves_no_partial_file(
    server: Server, tmp_path: Path, behaviour: str, message: str
) -> None:
    client = await server.start(ScriptedAppliance(), scp_handler=hostile_scp(behaviour))
    backups = tmp_path / "backups"
    with pytest.raises(CommandFailed, match=message) as info:
        await client.download("/configuration/c.xml", backups, "config")
    await client.close()
    assert "\n" not in str(info.value)
    assert list(backups.iterdir()) == []


async def test_backup_from_the_simulator_over_scp_source_protocol(tmp_path: Path) -> None:
    """The simulator serves `scp -f` as asyncssh's SCP server does: saveconfig, then the bounded fetch."""
    import hashlib

    from segtui.inventory import load_inventory
    from segtui.rollout.context import RolloutContext
    from segtui.rollout.journal import Journal
    from tests.conftest import TARGET, make_settings, start_fleet

    fleet = await start_fleet(tmp_path, 1, clusters=False)
    try:
        settings = make_settings(tmp_path / "state")
        inventory = load_inventory(fleet.inventory_path)
        ctx = RolloutContext(inventory, settings, TARGET, Journal(settings.state_dir / "j.sqlite"), lambda e: None)
        async with ctx.appliance(inventory.appliances[0]) as client:
            remote = await client.saveconfig()
            backup = await client.download(remote, tmp_path / "backups", "config")
            with pytest.raises(CommandFailed, match="over the limit"):
                await client.download(remote, tmp_path / "small", "config", max_bytes=backup.path.stat().st_size - 1)
    finally:
        await fleet.stop()
    on_appliance = fleet.workdir / "appliances" / "esa01" / remote.lstrip("/")
    assert backup.sha256 == hashlib.sha256(on_appliance.read_bytes()).hexdigest()
    assert stat.S_IMODE(backup.path.stat().st_mode) == 0o600
    assert list((tmp_path / "small").iterdir()) == []
