"""Identity from the appliance: hostname and serial journaled, cluster machines by hostname, another box refused."""

from __future__ import annotations

from pathlib import Path

from segtui.rollout.events import IdentityLearned, State, Step, StepStarted
from tests.conftest import TARGET, start_fleet
from tests.procedure_helpers import Harness


async def test_identity_learned_and_cluster_by_own_hostname(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 6)  # esa05 and esa06 form a cluster
    try:
        a = fleet.nodes["esa05"].appliance
        assert a.cluster is not None
        # The appliance calls itself something unrelated to its inventory name.
        a.hostname = "gw7.mail.example.net"
        h = Harness(fleet, tmp_path)
        proc = h.procedure("esa05")
        assert await proc.run() == State.DONE
        rec = h.rollout.records["esa05"]
        assert rec.hostname == "gw7.mail.example.net"
        assert rec.serial == a.serial
        learned = h.of(IdentityLearned, "esa05")
        # A cluster member's prompt names the cluster until machine mode: the name may come a step later.
        assert learned and learned[-1].hostname == "gw7.mail.example.net" and learned[-1].serial == a.serial
        # journaled
        again = h.rollout.journal.records()["esa05"]
        assert (again.hostname, again.serial) == ("gw7.mail.example.net", a.serial)
        # disconnected by its own name, and reconnected by it through the procedure's method
        assert rec.cluster_disconnected and not a.cluster_connected
        fleet.nodes["esa06"].appliance.version = a.version  # the cluster's other machine is upgraded too
        await proc.reconnect_cluster()
        await proc.client.close()
        assert a.cluster_connected
        assert a.version == (16, 0, 0, 123)
    finally:
        await fleet.stop()


async def test_another_box_behind_the_entry_is_left_alone(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, clusters=False)
    try:
        h = Harness(fleet, tmp_path)
        a = fleet.nodes["esa01"].appliance
        # First contact journals the serial; the appliance is already on the target, so nothing else happens.
        first_version = a.version
        a.version = (16, 0, 0, 123)
        assert await h.procedure("esa01").run() == State.DONE
        assert h.rollout.records["esa01"].serial == a.serial
        # The entry now reaches another box (same address, another serial), an old release.
        a.serial = "OTHERBOX0000-0000000000"
        a.version = first_version
        rec = h.rollout.records["esa01"]
        rec.state = State.PENDING
        counts_before = dict(a.command_counts)
        assert await h.procedure("esa01").run() == State.NEEDS_ATTENTION
        assert rec.error is not None and "serial" in rec.error and "another appliance" in rec.error
        assert "OTHERBOX0000-0000000000" in rec.error
        # Nothing was done to it: only the reads of the pre-check.
        new = {k: v - counts_before.get(k, 0) for k, v in a.command_counts.items() if v != counts_before.get(k, 0)}
        assert set(new) <= {"version", "status detail"}, new
        assert not a.suspended and a.upgrades_done == [] and a.committed.images == "cisco"
        started = [e.step for e in h.of(StepStarted, "esa01")]
        assert Step.SUSPEND not in started and Step.BACKUP not in started
    finally:
        await fleet.stop()


async def test_reboot_polling_exchanges_are_journaled(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 1, clusters=False)
    try:
        a = fleet.nodes["esa01"].appliance
        a.version = (15, 5, 1, 55)
        h = Harness(fleet, tmp_path)
        assert await h.procedure("esa01").run() == State.DONE
        steps = h.rollout.journal.steps_of("esa01")
        reboot = next(s for s in steps if s[0] == Step.REBOOT.value)
        rows = h.rollout.journal.commands_of("esa01")
        # `upgrade` itself is there, up to the reboot that dropped the session.
        assert any(cmd == "upgrade" and "Rebooting" in out for _, cmd, out in rows)
        # The poller's `version` on the way back is in the appliance's transcript, during the REBOOT step.
        during = [(cmd, out) for ts, cmd, out in rows if reboot[1] <= ts <= (reboot[2] or ts)]
        assert any(cmd == "version" and str(TARGET) in out for cmd, out in during), during
    finally:
        await fleet.stop()
