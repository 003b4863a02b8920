"""Secrets never reach what the procedure records: appliance passwords and update-server credentials are masked in
messages, errors, notes and the journal; the commit comment carries no credentials at all."""

from __future__ import annotations

import re
from pathlib import Path

from segtui.rollout.events import RolloutEvent
from segtui.rollout.procedure import ApplianceProcedure
from tests.conftest import TEST_PASSWORD, start_fleet
from tests.procedure_helpers import Harness

UPDATE_SECRET = "upd-Secret-7731"


def spy_commits(proc: ApplianceProcedure) -> list[str]:
    comments: list[str] = []
    commit = proc.client.commit

    async def spy(comment: str) -> bool:
        comments.append(comment)
        return await commit(comment)

    proc.client.commit = spy  # type: ignore[method-assign]
    return comments


def everything(h: Harness, events: list[RolloutEvent], *, but_original: bool = False) -> str:
    dump = h.journal_dump()
    if but_original:
        # The appliance's own standing setting is kept verbatim (restore must put back exactly that).
        dump = re.sub(r'"original_source": \{[^}]*\}', "", dump)
    return dump + "\n" + "\n".join(repr(e) for e in events)


async def test_update_server_credentials_stay_out_of_the_journal_and_the_commit(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 1, clusters=False)
    try:
        fleet.nodes["esa01"].appliance.version = (15, 5, 1, 55)
        inv = fleet.inventory_path
        inv.write_text(
            re.sub(r'update_server = "http://', f'update_server = "http://mirror:{UPDATE_SECRET}@', inv.read_text())
        )
        h = Harness(fleet, tmp_path)
        proc = h.procedure("esa01")
        comments = spy_commits(proc)
        assert (await proc.run()).value == "done", h.rollout.records["esa01"].error
        assert comments and all(UPDATE_SECRET not in c and "mirror:" not in c for c in comments)
        assert any("asyncos/" in c for c in comments)  # the comment still says where upgrades come from
        dump = everything(h, h.events)
        assert UPDATE_SECRET not in dump
        assert "updateconfig" in dump  # the exchanges are there, masked
    finally:
        await fleet.stop()


async def test_an_appliance_echoing_the_password_does_not_put_it_in_errors_or_notes(tmp_path: Path) -> None:
    fleet = await start_fleet(tmp_path, 2, clusters=False)
    try:
        for node in fleet.nodes.values():
            node.appliance.version = (15, 5, 1, 55)
        h = Harness(fleet, tmp_path)
        ours = h.ctx.local_upgrade_source(h.ctx.target)
        # esa01: settings on our server, with the appliance password in the URL (a sign of another operator)
        a = fleet.nodes["esa01"].appliance
        a.committed.images = ours.images
        a.committed.listing = f"http://x/{TEST_PASSWORD}/list.xml"
        # esa02: a standing mirror whose name carries the password (noted, restored afterwards)
        b = fleet.nodes["esa02"].appliance
        b.committed.images = f"m{TEST_PASSWORD[:8]}{TEST_PASSWORD[8:]}.corp:8080"
        assert (await h.procedure("esa01").run()).value == "needs-attention"
        assert (await h.procedure("esa02").run()).value == "done"
        rec1, rec2 = h.rollout.records["esa01"], h.rollout.records["esa02"]
        assert rec1.error is not None and "********" in rec1.error
        dump = everything(h, h.events, but_original=True)
        assert TEST_PASSWORD not in dump
        assert TEST_PASSWORD not in (rec1.error or "") + rec1.message + (rec2.error or "") + rec2.message
    finally:
        await fleet.stop()
