"""Shared SSH connections: one login per appliance for all its sessions, and never a connection that may be stale.

Over real SSH (a scripted appliance on loopback that counts its logins and open connections).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from segtui.asyncos.commands import Appliance, CommandTimeouts
from segtui.asyncos.connections import SharedConnections
from segtui.asyncos.errors import AuthFailed, CommandTimeout, HostKeyRejected, UpgradeFailed
from segtui.asyncos.session import Credentials
from tests.scripted import ScriptedAppliance, Served, serving
from tests.test_hardrule import AFTER_LIST, ANY, CONFIRM, CURRENT, GOOD_LIST, START, TARGET

VERSION_OUT = "\nCurrent Version\n===============\nModel: C300V\nVersion: 15.0.0-104\nSerial #: 4229F1C3E7A9-X\n"
REBOOT = [
    ("\nAre you sure you want to reboot? [N]> ", "Y"),
    ("\nEnter the number of seconds to wait before forcibly closing connections.\n[30]> ", r"\d+"),
    ("\nSystem going down for reboot.\n", None),
]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path) as s:
        yield s


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def scripted(**kwargs: object) -> ScriptedAppliance:
    return ScriptedAppliance(script={"version": [(VERSION_OUT, None)], "reboot": REBOOT, "hangs": []}, **kwargs)  # type: ignore[arg-type]


async def appliances(served: Served, sa: ScriptedAppliance, pool: SharedConnections, n: int) -> list[Appliance]:
    first = await served.connect(sa, connections=pool)
    return [first] + [Appliance(first.opts, timeouts=first.timeouts, connections=pool) for _ in range(n - 1)]


async def test_sessions_to_one_appliance_share_one_login(served: Served) -> None:
    # The pre-flight, the procedure and a peer reading of one appliance: one login, a shell each, used at once.
    sa = scripted()
    pool = SharedConnections()
    a, b, c = await appliances(served, sa, pool, 3)
    versions = await asyncio.gather(a.version(), b.version(), c.version())
    assert {str(v.version) for v in versions} == {"15.0.0-104"}
    assert sa.logins == 1 and sa.connected == 1
    for appliance in (a, b, c):
        await appliance.close()
    # without linger the connection closes with its last session
    await until(lambda: sa.connected == 0)
    await a.version()
    assert sa.logins == 2
    await a.close()


async def test_a_connection_lingers_for_the_next_session_then_closes(served: Served) -> None:
    sa = scripted()
    pool = SharedConnections(linger=60)
    a, b = await appliances(served, sa, pool, 2)
    await a.version()
    await a.close()
    await b.version()  # the pre-flight's connection serves the procedure
    assert sa.logins == 1
    await b.close()
    await pool.close()  # the end of the rollout: idle connections close at once, not after the linger
    await until(lambda: sa.connected == 0)
    pool.linger = 0.05
    await a.version()
    await a.close()
    await until(lambda: sa.connected == 0)  # and after the linger by themselves
    assert sa.logins == 2


async def test_the_reboot_check_always_logs_in_anew(served: Served) -> None:
    # A live connection from before the reboot would answer for an appliance that may not take logins any more.
    sa = scripted()
    pool = SharedConnections(linger=60)
    (procedure,) = await appliances(served, sa, pool, 1)
    await procedure.version()
    check = Appliance(procedure.opts, timeouts=procedure.timeouts, connections=pool, fresh=True)
    await check.version()
    assert sa.logins == 2
    await check.close()
    await procedure.close()
    await pool.close()


async def test_nothing_shares_the_connection_of_an_appliance_that_reboots(served: Served) -> None:
    # The reboot was confirmed: its connection may still be open a moment (a peer reading holds a shell on it),
    # but no new session may start on it.
    sa = scripted()
    pool = SharedConnections(linger=60)
    procedure, peer_reading, later = await appliances(served, sa, pool, 3)
    await procedure.version()
    await peer_reading.version()
    await procedure.reboot(close_seconds=0)
    await later.version()
    assert sa.logins == 2
    await peer_reading.version()  # the shell it had was not taken from it
    for appliance in (peer_reading, later):
        await appliance.close()
    await pool.close()


async def test_a_session_that_missed_its_deadline_retires_its_connection(served: Served) -> None:
    # A command with no answer may mean a dead link: the next session logs in anew; the others keep their shells.
    sa = scripted(silent={"hangs"})
    pool = SharedConnections(linger=60)
    first, b, c = await appliances(served, sa, pool, 3)
    a = Appliance(first.opts, timeouts=CommandTimeouts(default=0.5), connections=pool)
    await a.version()
    await b.version()
    with pytest.raises(CommandTimeout):
        await a.read("hangs")
    await c.version()
    assert sa.logins == 2
    await b.version()
    for appliance in (first, a, b, c):
        await appliance.close()
    await pool.close()


async def test_an_appliance_refusing_a_second_shell_gets_a_connection_per_session(served: Served) -> None:
    sa = scripted(shells_per_connection=1)
    pool = SharedConnections(linger=60)
    a, b, c = await appliances(served, sa, pool, 3)
    await a.version()
    await b.version()  # refused on a's connection, then logged in anew
    assert (sa.logins, sa.refused_shells) == (2, 1)
    await c.version()  # not asked again
    assert (sa.logins, sa.refused_shells) == (3, 1)
    await asyncio.gather(a.version(), b.version(), c.version())
    for appliance in (a, b, c):
        await appliance.close()
    await pool.close()
    await until(lambda: sa.connected == 0)


async def test_an_entry_with_other_credentials_or_known_hosts_never_rides_on_a_login(
    served: Served, tmp_path: Path
) -> None:
    # Two inventory entries for one address: the connection made for one is no proof for the other.
    sa = scripted()
    pool = SharedConnections(linger=60)
    (right,) = await appliances(served, sa, pool, 1)
    await right.version()
    wrong_password = replace(right.opts, credentials=Credentials("admin", "not-the-password"))
    with pytest.raises(AuthFailed):
        await Appliance(wrong_password, connections=pool).version()
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(HostKeyRejected):
        await Appliance(replace(right.opts, known_hosts=empty), connections=pool).version()
    assert sa.logins == 1
    await right.close()
    await pool.close()


async def test_an_upgrade_confirmed_then_failed_still_retires_its_connection(served: Served) -> None:
    # "Y" was sent, then the dialogue failed (a question naming another release): the appliance may reboot anyway,
    # so the connection from before is shared no more.
    after_confirm = "\nAlso install AsyncOS 15.5.1 build 055 afterwards? [Y]> "
    turns = [*START, (GOOD_LIST, "2"), *AFTER_LIST, (CONFIRM, "Y"), (after_confirm, ANY)]
    sa = scripted()
    sa.script["upgrade"] = turns
    pool = SharedConnections(linger=60)
    procedure, peer_reading, later = await appliances(served, sa, pool, 3)
    await peer_reading.version()
    with pytest.raises(UpgradeFailed, match="unexpected question"):
        await procedure.upgrade(TARGET, current=CURRENT)
    await later.version()
    assert sa.logins == 2
    for appliance in (procedure, peer_reading, later):
        await appliance.close()
    await pool.close()


async def test_sessions_opening_at_once_with_a_wrong_password_make_one_attempt(served: Served) -> None:
    # Three sessions of one appliance at once: one login, and its failure is theirs (no lockout by repetition).
    sa = scripted()
    pool = SharedConnections(linger=60)
    (first,) = await appliances(served, sa, pool, 1)
    wrong = replace(first.opts, credentials=Credentials("admin", "not-the-password"))
    results = await asyncio.gather(
        *(Appliance(wrong, connections=pool).version() for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, AuthFailed) for r in results), results
    assert (sa.password_checks, sa.logins) == (1, 0)
    await pool.close()


def test_the_published_rows_name_tests_that_exist() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "FAULTS.md").read_text()
    section = doc.split("## Shared SSH connections", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_\w+)`", section))
    assert len(named) >= 8, named
    assert named <= {n for n in globals() if n.startswith("test_")}, named
