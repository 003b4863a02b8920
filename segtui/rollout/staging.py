"""Stage upgrade images ahead of the window (`upgrade > DOWNLOAD`): listeners stay active, mail flows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from segtui.asyncos.errors import ApplianceError
from segtui.asyncos.parsers import UpgradeSource
from segtui.inventory import ApplianceSpec
from segtui.rollout.applock import ApplianceLocks
from segtui.rollout.context import RolloutContext
from segtui.rollout.events import Note, StagingChanged
from segtui.rollout.preflight import appliance_problem


@dataclass
class StageResult:
    name: str
    status: str  # staged, already-staged, at-target, other-image, locked (another segtui holds it), failed
    version: str | None = None
    note: str = ""


async def stage_appliance(ctx: RolloutContext, spec: ApplianceSpec, poll: float, deadline: float) -> StageResult:
    name = spec.name
    inventory = str(ctx.inventory.path)
    client = ctx.appliance(spec)

    def staging(status: str, version: str | None = None, percent: int | None = None, note: str = "") -> None:
        if status != "downloading":
            ctx.journal.set_staged(inventory, name, status, version, note)
        ctx.emit(StagingChanged(appliance=name, status=status, version=version, percent=percent))

    original: UpgradeSource | None = None
    try:
        info = await client.version()
        if info.version >= ctx.target:
            staging("not-staged", None, note="already at or past the target")
            return StageResult(name, "at-target", str(info.version))
        status = await client.download_status()
        if status.state != "none" and status.version is not None and status.version != ctx.target:
            # Someone else's image: report it, never delete it silently.
            note = f"holds a {status.state} image for {status.version}; not replaced"
            staging("other-image", str(status.version), note=note)
            ctx.emit(Note(appliance=name, text=note, level="warning"))
            return StageResult(name, "other-image", str(status.version), note)
        if status.state == "downloaded":
            staging("staged", str(status.version))
            return StageResult(name, "already-staged", str(status.version))
        original = await client.upgrade_source()
        source = ctx.local_upgrade_source(info.version)
        await client.set_upgrade_source(source)
        await client.commit(f"segtui stage: AsyncOS upgrades from {source.manifest}")
        version = await client.download_image(ctx.target) if status.state == "none" else status.version
        staging("downloading", str(version), 0)
        end = time.monotonic() + deadline
        while True:
            status = await client.download_status()
            if status.state == "downloaded":
                break
            if status.state == "none":
                raise ApplianceError(name, "the download stopped before it completed")
            staging("downloading", str(status.version or version), status.percent)
            if time.monotonic() > end:
                raise ApplianceError(name, f"download not complete after {deadline:g} s")
            await asyncio.sleep(poll)
        staging("staged", str(status.version))
        return StageResult(name, "staged", str(status.version))
    except Exception as exc:  # any failure of one appliance is one line for it; the others carry on
        problem = appliance_problem(exc, ctx.redactor)
        staging("not-staged", None, note=problem)
        return StageResult(name, "failed", None, problem)
    finally:
        if original is not None:
            try:
                await client.set_upgrade_source(original)
                await client.commit("segtui stage: restore AsyncOS upgrade settings")
            except Exception as exc:
                text = f"could not restore update settings: {appliance_problem(exc, ctx.redactor)}"
                ctx.emit(Note(appliance=name, text=text, level="error"))
        with contextlib.suppress(Exception):
            await client.close()


async def stage_fleet(ctx: RolloutContext, concurrency: int) -> list[StageResult]:
    """Stage every appliance, `concurrency` at a time. Each is worked on only while this process holds its
    machine-wide lock (the one `segtui run` takes): an appliance another segtui is working on is left alone."""
    limit = asyncio.Semaphore(concurrency)
    poll = ctx.settings.polling.workqueue
    deadline = ctx.settings.deadlines.upgrade
    locks = ApplianceLocks(ctx.settings, f"{ctx.inventory.path} stage -> {ctx.target}")

    async def one(spec: ApplianceSpec) -> StageResult:
        async with limit:
            try:
                refused = locks.acquire(spec.name, spec.host, spec.port)
            except Exception as exc:  # the lock directory unusable: nothing done to this appliance
                problem = f"appliance lock not taken: {appliance_problem(exc, ctx.redactor)}"
                ctx.emit(Note(appliance=spec.name, text=problem, level="error"))
                return StageResult(spec.name, "failed", None, problem)
            if refused is not None:
                text = ctx.clean(refused)
                ctx.emit(Note(appliance=spec.name, text=text, level="warning"))
                return StageResult(spec.name, "locked", None, text)
            try:
                return await stage_appliance(ctx, spec, poll, deadline)
            finally:
                locks.release(spec.name)

    try:
        results = await asyncio.gather(*(one(s) for s in ctx.inventory.appliances), return_exceptions=True)
    finally:
        locks.release_all()
    return [
        r if isinstance(r, StageResult) else StageResult(spec.name, "failed", None, appliance_problem(r, ctx.redactor))
        for spec, r in zip(ctx.inventory.appliances, results, strict=True)
    ]
