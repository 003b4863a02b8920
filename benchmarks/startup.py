"""Start-up: `segtui --help` under 0.3 s (median of 10 runs in one go)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _common import report


def main() -> None:
    times = []
    for _ in range(10):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "segtui", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    bare = []
    for _ in range(10):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, capture_output=True)
        bare.append(time.perf_counter() - start)
    print(f"  python itself starts in {statistics.median(bare):.3f} s (median)")
    report("segtui --help (median of 10)", statistics.median(times), "s", 0.3)


if __name__ == "__main__":
    main()
