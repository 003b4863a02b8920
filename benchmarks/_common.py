"""Helpers for the benchmarks: a simulated fleet in its own process, resource readings."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "bench-password"
os.environ.setdefault("SEGTUI_PASSWORD", PASSWORD)


@dataclass
class SimProcess:
    proc: subprocess.Popen[str]
    workdir: Path
    inventory: Path
    events: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_sim(n: int, time_scale: float, *extra: str) -> SimProcess:
    """`segtui sim` in its own process, so its CPU is not segtui's."""
    workdir = Path(tempfile.mkdtemp(prefix="segtui-bench-"))
    events = workdir / "events.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "segtui",
            "sim",
            "--appliances",
            str(n),
            "--time-scale",
            str(time_scale),
            "--workdir",
            str(workdir),
            "--events-out",
            str(events),
            "--no-clusters",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "SEGTUI_PASSWORD": os.environ["SEGTUI_PASSWORD"]},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Ctrl+C" in line:
            break
    else:
        raise RuntimeError("simulator did not start")
    return SimProcess(proc, workdir, workdir / "inventory.toml", events)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class CpuMeter:
    def __enter__(self) -> CpuMeter:
        self.wall0, self.cpu0 = time.monotonic(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.wall0
        self.cpu = cpu_seconds() - self.cpu0

    @property
    def percent_of_core(self) -> float:
        return 100 * self.cpu / max(self.wall, 1e-9)


def report(name: str, value: float, unit: str, target: float, lower_is_better: bool = True) -> bool:
    ratio = value / target if target else float("inf")
    ok = value <= target if lower_is_better else value >= target
    print(
        f"{name:<48} {value:10.3f} {unit:<6} target {'<=' if lower_is_better else '>='} {target:g} {unit:<6}"
        f" ratio {ratio:5.2f}  {'OK' if ok else 'MISSED'}",
        flush=True,
    )
    return ok
