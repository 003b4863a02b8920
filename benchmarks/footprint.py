"""Footprint: segtui holds 1000 concurrent appliance sessions and polls them.

Targets: at most 200 MB RSS, and at most 25% of one core while the appliances are only being polled
(`workqueue status` on every session every poll interval, 10 s by default).

    python benchmarks/footprint.py [--appliances 1000] [--seconds 40] [--interval 10]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _common import CpuMeter, report, rss_mb, start_sim

from segtui.asyncos.commands import Appliance
from segtui.asyncos.versions import Version
from segtui.inventory import load_inventory
from segtui.rollout.context import RolloutContext
from segtui.rollout.journal import Journal
from segtui.settings import load_settings


async def run(n: int, seconds: float, interval: float) -> None:
    sim = start_sim(n, 1.0)
    try:
        inventory = load_inventory(sim.inventory)
        settings = load_settings().model_copy(update={"state_dir": sim.workdir / "state"})
        ctx = RolloutContext(
            inventory,
            settings,
            Version.parse("16.0.0-123"),
            Journal(settings.state_dir / "journal.sqlite"),
            lambda e: None,
        )
        clients: list[Appliance] = [ctx.appliance(spec, journal_commands=False) for spec in inventory.appliances]
        start = time.monotonic()
        await asyncio.gather(*(c.session() for c in clients))
        print(
            f"  opened {n} sessions in {time.monotonic() - start:.1f} s (handshakes bounded to "
            f"{settings.ssh.max_handshakes} at once)",
            flush=True,
        )
        polls = 0

        async def poll(client: Appliance, offset: float) -> None:
            nonlocal polls
            await asyncio.sleep(offset)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await client.workqueue_status()
                polls += 1
                await asyncio.sleep(interval)

        with CpuMeter() as cpu:
            await asyncio.gather(*(poll(c, i * interval / n) for i, c in enumerate(clients)))
        rss = rss_mb()
        print(f"  {polls} polls in {cpu.wall:.0f} s", flush=True)
        report(f"RSS holding {n} sessions", rss, "MB", 200)
        report(f"CPU while polling {n} sessions every {interval:g} s", cpu.percent_of_core, "%", 25)
        await asyncio.gather(*(c.close() for c in clients))
    finally:
        sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--appliances", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--interval", type=float, default=10)
    args = ap.parse_args()
    asyncio.run(run(args.appliances, args.seconds, args.interval))


if __name__ == "__main__":
    main()
