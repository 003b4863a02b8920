"""Orchestration overhead: a rollout of 500 appliances vs 10, all in one batch, same time scale.

The mail-flow guards are on, as in a real rollout: every appliance's capacity guard reads its peers
before suspend, and every appliance bakes (guards.bake, scaled) before it counts as done.

Target: T(500) <= 1.10 x T(10). The simulator runs in its own process with fixed durations, so the
per-appliance procedure time is the floor and the ratio measures segtui's own overhead.

    python benchmarks/orchestration.py [--large 500] [--small 10] [--time-scale 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter

from _common import CpuMeter, report, rss_mb, start_fleet

from segtui.asyncos.versions import Version
from segtui.inventory import load_inventory
from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.journal import Journal
from segtui.rollout.preflight import preflight
from segtui.settings import load_settings


async def one_rollout(n: int, scale: float) -> tuple[float, float, float, str]:
    # Both fleets keep the simulator's mix (one in ten needs a hop: the floor); the large one runs in
    # two simulator processes so that the simulator is not the bottleneck.
    sim = start_fleet(n, scale, "--fixed-durations", processes=1 if n <= 50 else 2)
    try:
        inventory = load_inventory(sim.inventory)
        # Deadlines are scaled with the simulator's time, but two simulator processes playing 500 appliances on
        # the benchmark's cores answer a burst of 500 commands no faster than that: a step may take seconds longer
        # (which the ratio shows) without being hung. Their floor is a minute, for both fleets alike.
        settings = (
            load_settings(min_scaled_deadline=60)
            .scaled(scale)
            .model_copy(update={"state_dir": sim.workdir / "state", "concurrency": n})
        )
        journal = Journal(settings.state_dir / "journal.sqlite")
        rollout = Rollout(
            inventory,
            settings,
            Version.parse("16.0.0-123"),
            journal,
            RolloutOptions(batch="100%", max_unavailable=n, concurrency=n, max_fail="0"),
            exit_on_pause=True,
        )
        rollout.begin()
        with CpuMeter() as cpu:
            start = time.monotonic()
            # As `segtui run` does: the pre-flight (every version, every manifest), then the rollout.
            checked = await preflight(rollout.ctx)
            assert checked.ok, [a.problem for a in checked.appliances if not a.ok][:3]
            outcome = await rollout.run(autostart=True)
            took = time.monotonic() - start
        done = sum(1 for r in rollout.records.values() if r.state == "done")
        # where the time goes: per step, median and slowest across the fleet (from the journal)
        rows = journal.db.execute(
            "SELECT step, finished - started FROM steps WHERE finished IS NOT NULL AND ok = 1"
        ).fetchall()
        by_step: dict[str, list[float]] = {}
        for step, took_s in rows:
            by_step.setdefault(step, []).append(took_s)
        print("    " + "  ".join(f"{k} {statistics.median(v):.1f}/{max(v):.1f}" for k, v in by_step.items()))
        bakes = Counter((r.bake or {}).get("verdict", "none") for r in rollout.records.values())
        print(f"    bake {settings.guards.bake:.0f} s each: " + ", ".join(f"{v} {c}" for v, c in bakes.most_common()))
        errors = Counter((r.error or "")[:90] for r in rollout.records.values() if r.state != "done")
        for error, count in errors.most_common(5):
            print(f"    {count} x {error}", flush=True)
        print(
            f"  {n:>4} appliances: {took:7.1f} s, outcome {outcome}, {done} done, segtui CPU "
            f"{cpu.percent_of_core:.0f}% of a core, RSS {rss_mb():.0f} MB",
            flush=True,
        )
        return took, cpu.percent_of_core, rss_mb(), outcome
    finally:
        sim.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--large", type=int, default=500)
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--time-scale", type=float, default=0.05)
    args = ap.parse_args()
    small, *_ = asyncio.run(one_rollout(args.small, args.time_scale))
    large, *_ = asyncio.run(one_rollout(args.large, args.time_scale))
    report(f"rollout time ratio {args.large}/{args.small}", large / small, "x", 1.10)


if __name__ == "__main__":
    main()
