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


class SimFleetProcesses:
    """A fleet split over several `segtui sim` processes, with one merged inventory.

    A real fleet has a CPU per appliance; one simulator process for 500 appliances would make the
    simulator the bottleneck and hide segtui's own cost.
    """

    def __init__(self, parts: list[SimProcess]) -> None:
        self.parts = parts
        self.workdir = Path(tempfile.mkdtemp(prefix="segtui-bench-fleet-"))
        self.inventory = self.workdir / "inventory.toml"
        self.events = self.workdir / "events.log"
        first = parts[0].inventory.read_text()
        head = first.split("[[appliance]]", 1)[0].replace(
            'known_hosts = "known_hosts"', f'known_hosts = "{self.workdir / "known_hosts"}"'
        )
        rows = []
        for i, part in enumerate(parts):
            for block in part.inventory.read_text().split("[[appliance]]")[1:]:
                rows.append("[[appliance]]" + block.replace('name = "esa', f'name = "p{i}esa'))
        self.inventory.write_text(head + "".join(rows))
        (self.workdir / "known_hosts").write_text("".join((p.workdir / "known_hosts").read_text() for p in parts))

    def merged_events(self) -> list[tuple[str, str, float]]:
        out = []
        for i, part in enumerate(self.parts):
            if part.events.exists():
                for line in part.events.read_text().splitlines():
                    name, what, ts = line.split()
                    out.append((f"p{i}{name}", what, float(ts)))
        return out

    def stop(self) -> None:
        for part in self.parts:
            part.stop()


def start_fleet(n: int, time_scale: float, *extra: str, processes: int = 2) -> SimFleetProcesses:
    sizes = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
    # Each process its own seed: the same seed twice would make two "appliances" with one serial number, which
    # segtui rightly treats as the same box behind two addresses.
    return SimFleetProcesses(
        [start_sim(size, time_scale, *extra, "--seed", str(7 + i)) for i, size in enumerate(sizes) if size]
    )


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
