"""Reboot polling of 500 appliances rebooting at once.

Target: no appliance's return is detected later than one poll interval (polling.reboot_max) after the
simulator brought its SSH port back (the simulator logs that moment in its events file).

    python benchmarks/reboot_polling.py [--appliances 500] [--interval 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from _common import CpuMeter, report, start_fleet

from segtui.asyncos.versions import Version
from segtui.inventory import load_inventory
from segtui.rollout.context import RolloutContext
from segtui.rollout.journal import Journal
from segtui.rollout.reboot import RebootPoller
from segtui.settings import Polling, load_settings


async def run(n: int, interval: float, scale: float) -> None:
    # Two simulator processes, as for the orchestration benchmark: 500 appliances coming back at once are 500 SSH
    # handshakes on the simulator's side too, and a real fleet has a CPU per appliance.
    sim = start_fleet(n, scale, "--fixed-durations")
    try:
        inventory = load_inventory(sim.inventory)
        base = load_settings()
        settings = base.model_copy(
            update={
                "state_dir": sim.workdir / "state",
                "polling": Polling(workqueue=10, reboot_initial=interval, reboot_max=interval),
                "deadlines": base.deadlines.model_copy(update={"reboot": 600}),
            }
        )
        ctx = RolloutContext(
            inventory,
            settings,
            Version.parse("16.0.0-123"),
            Journal(settings.state_dir / "journal.sqlite"),
            lambda e: None,
        )
        detected: dict[str, float] = {}
        versions: dict[str, Version] = {}

        async def one(spec) -> None:  # type: ignore[no-untyped-def]
            client = ctx.appliance(spec, journal_commands=False)
            info = await client.version()
            versions[spec.name] = info.version
            await client.reboot(close_seconds=0)
            await client.close()
            poller = RebootPoller(ctx, spec, on_down=lambda: None)
            since = time.time()
            await poller.wait_for(info.version, info.version, True, since)
            detected[spec.name] = time.time()

        with CpuMeter() as cpu:
            await asyncio.gather(*(one(s) for s in inventory.appliances))
        up = {name: ts for name, what, ts in sim.merged_events() if what == "up"}
        delays = [detected[name] - up[name] for name in detected]
        print(
            f"  {len(delays)} appliances back; detection delay median {statistics.median(delays):.2f} s, "
            f"max {max(delays):.2f} s; segtui CPU {cpu.percent_of_core:.0f}% of a core",
            flush=True,
        )
        report(f"worst detection delay, {n} rebooting at once", max(delays), "s", interval)
    finally:
        sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--appliances", type=int, default=500)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--time-scale", type=float, default=0.02)
    args = ap.parse_args()
    asyncio.run(run(args.appliances, args.interval, args.time_scale))


if __name__ == "__main__":
    main()
