"""Hostile values in printouts: an own mirror whose name contains `cisco` stays an own server; a backup location
outside /configuration/ is refused in one line, before anything is fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from segtui.asyncos import parsers
from segtui.asyncos.commands import Appliance, backup_file_name
from segtui.asyncos.errors import CommandFailed
from segtui.asyncos.session import ConnectOptions, Credentials


def _settings(value: str) -> str:
    return (
        f"\nService (images):        Update URL:\n---\nAsyncOS upgrades         {value}\n\n"
        f"Service (list):          Update URL:\n---\nAsyncOS upgrades         {value}\n\n"
    )


@pytest.mark.parametrize(
    "value",
    [
        "http://cisco-mirror.corp.example:80/asyncos/m.xml",
        "ironport-updates.corp.example:80",
        "http://updates.example.com/cisco/ironport/servers",
        "cisco.corp.example:8080",
    ],
)
def test_own_server_whose_name_contains_cisco_stays_own(value: str) -> None:
    source = parsers.parse_update_settings(_settings(value))
    assert not source.is_cisco and source.manifest == value and source.images != "cisco"


@pytest.mark.parametrize(
    "value", ["Cisco IronPort Servers", "Cisco Servers", "Use Cisco AsyncOS upgrade servers", "IronPort Servers"]
)
def test_cisco_servers_wording_is_cisco(value: str) -> None:
    assert parsers.parse_update_settings(_settings(value)).is_cisco


@pytest.mark.parametrize(
    "remote",
    [
        "/configuration/../../etc/passwd",
        "/etc/passwd",
        "../../etc/passwd",
        "/configuration/sub/c.xml",
        "/configuration/..",
        "/",
        "",
    ],
)
async def test_backup_outside_configuration_is_refused_in_one_line(tmp_path: Path, remote: str) -> None:
    assert backup_file_name(remote) is None
    opts = ConnectOptions("esa1", "127.0.0.1", 1, Credentials("admin", "pw"), tmp_path / "kh")
    with pytest.raises(CommandFailed, match="not the name of a file in /configuration/") as info:
        await Appliance(opts).download(remote, tmp_path / "backups", "config")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "backups").exists()


def test_backup_in_configuration_is_named_by_its_file() -> None:
    assert backup_file_name("/configuration/C300V-4229F1C3E7A9-20261129T031500.xml") == (
        "C300V-4229F1C3E7A9-20261129T031500.xml"
    )
