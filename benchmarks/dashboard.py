"""Dashboard cost with 1000 appliances changing state: first paint, key-to-screen latency, CPU.

Targets: first full paint under 1 s; key-press-to-screen p95 at most 50 ms; the UI's CPU at most 30% of one
core while 1000 appliances change state (events are coalesced; the table repaints at settings.repaint_hz).

    python benchmarks/dashboard.py [--appliances 1000] [--events-per-second 2000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import asyncssh
from _common import CpuMeter, report
from textual import events

from segtui.asyncos.versions import Version
from segtui.inventory import load_inventory
from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.events import Step, StepStarted, UpgradeProgressed, WorkQueueDepth
from segtui.rollout.journal import Journal
from segtui.settings import load_settings
from segtui.tui.app import SegtuiApp
from segtui.tui.widgets import FleetTable


def make_rollout(n: int) -> Rollout:
    tmp = Path(tempfile.mkdtemp(prefix="segtui-dash-"))
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    (tmp / "known_hosts").write_text(f"esa.example.com {key}")
    rows = "".join(
        f'[[appliance]]\nname = "esa{i:04d}"\nhost = "10.0.{i // 250}.{i % 250}"\ngroup = "dc{i % 4}"\n'
        for i in range(1, n + 1)
    )
    (tmp / "inv.toml").write_text(
        '[fleet]\nname = "bench"\nenvironment = "lab"\n'
        'update_server = "http://u.example.com"\n[defaults]\n'
        f'password_env = "SEGTUI_PASSWORD"\n{rows}'
    )
    inventory = load_inventory(tmp / "inv.toml")
    settings = load_settings().model_copy(update={"state_dir": tmp / "state"})
    rollout = Rollout(
        inventory, settings, Version.parse("16.0.0-123"), Journal(settings.state_dir / "j.sqlite"), RolloutOptions()
    )
    rollout.begin()
    return rollout


async def run(n: int, rate: int, seconds: float) -> None:
    rollout = make_rollout(n)
    names = list(rollout.records)
    painted = asyncio.get_running_loop().create_future()
    start = time.perf_counter()
    app = SegtuiApp(rollout, run_rollout=False)
    app.call_after_refresh(lambda: painted.done() or painted.set_result(time.perf_counter()))
    async with app.run_test(size=(200, 60)) as pilot:
        first_paint = await painted - start
        table = app.query_one(FleetTable)
        assert table.row_count == n
        rng = random.Random(1)
        steps = list(Step)
        stop = False

        async def feed() -> None:
            # `rate` events per second, in 20 ms slices, like a busy rollout would send them
            while not stop:
                for _ in range(rate // 50):
                    name = rng.choice(names)
                    kind = rng.random()
                    if kind < 0.4:
                        rollout._emit(WorkQueueDepth(appliance=name, depth=rng.randrange(2000), draining=True))
                    elif kind < 0.8:
                        rollout._emit(UpgradeProgressed(appliance=name, phase="download", percent=rng.random() * 100))
                    else:
                        rollout._emit(StepStarted(appliance=name, step=rng.choice(steps)))
                await asyncio.sleep(0.02)

        feeder = asyncio.create_task(feed())
        await pilot.pause(1.0)
        latencies = []
        with CpuMeter() as cpu:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                before = table.cursor_row
                t0 = time.perf_counter()
                # a key press as the terminal driver delivers it
                app.post_message(events.Key("down" if before < n - 1 else "up", None))
                while table.cursor_row == before:
                    await asyncio.sleep(0.001)
                refreshed = asyncio.get_running_loop().create_future()
                app.call_after_refresh(lambda f=refreshed: f.done() or f.set_result(None))
                await refreshed
                latencies.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(0.1)
        stop = True
        await feeder
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(
        f"  {len(latencies)} key presses, median {statistics.median(latencies):.1f} ms, "
        f"{rollout_events(app)} events folded",
        flush=True,
    )
    report(f"first full paint, {n} appliances", first_paint, "s", 1.0)
    report(f"key-to-screen p95, {n} appliances, {rate} ev/s", p95, "ms", 50)
    report(f"UI CPU (incl. event source), {rate} ev/s", cpu.percent_of_core, "%", 30)


def rollout_events(app: SegtuiApp) -> int:
    return app.model.events_seen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--appliances", type=int, default=1000)
    ap.add_argument("--events-per-second", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()
    asyncio.run(run(args.appliances, args.events_per_second, args.seconds))


if __name__ == "__main__":
    main()
