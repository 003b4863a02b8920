"""Crash safety: SIGKILL `segtui run --headless` at many moments, `segtui resume`, and check the truth."""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from tests.conftest import TEST_PASSWORD

SETTINGS = """
state_dir = "state"
min_scaled_deadline = 8
[polling]
workqueue = 0.1
reboot_initial = 0.1
reboot_max = 0.3
[guards]
bake = 0.5
wait = 30
[deadlines]
precheck = 20
backup = 20
point = 20
suspend = 20
drain = 20
upgrade = 30
reboot = 30
resume = 20
"""

# Each kill lands right after the headless printer shows an appliance entering this step.
KILL_AT_STEPS = [
    "precheck",
    "backup",
    "point-updates",
    "suspend",
    "drain",
    "upgrade",
    "reboot",
    "verify",
    "resume-listeners",
    "restore-updates",
] * 3


def _env() -> dict[str, str]:
    # The suite's environment is already hermetic (conftest); the password is ours.
    return {**os.environ, "SEGTUI_PASSWORD": TEST_PASSWORD}


def _segtui(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "segtui", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _start_sim(tmp_path: Path, n: int, scale: str = "0.002") -> tuple[subprocess.Popen[str], Path, Path]:
    events = tmp_path / "events.log"
    sim = _segtui(
        "sim",
        "--appliances",
        str(n),
        "--time-scale",
        scale,
        "--workdir",
        str(tmp_path / "sim"),
        "--events-out",
        str(events),
        cwd=tmp_path,
    )
    assert sim.stdout is not None
    for line in sim.stdout:
        if "Ctrl+C" in line:
            break
    return sim, tmp_path / "sim" / "inventory.toml", events


def _rollout_started(db: Path) -> bool:
    if not db.exists():
        return False
    con = sqlite3.connect(db)
    try:
        return bool(con.execute("SELECT COUNT(*) FROM rollouts").fetchone()[0] > 0)
    except sqlite3.Error:
        return False
    finally:
        con.close()


def test_sigkill_at_many_moments_then_resume(tmp_path: Path) -> None:
    (tmp_path / "segtui.toml").write_text(SETTINGS)
    # Slow enough that 20+ kills land before the rollout can finish.
    sim, inventory, events = _start_sim(tmp_path, 12, "0.006")
    db = tmp_path / "state" / "journal.sqlite"
    killed_in: set[str] = set()  # steps an appliance had just entered when segtui was killed
    kills = 0
    try:
        for step in KILL_AT_STEPS:
            # Killed during pre-flight, nothing was begun: the operator simply runs again.
            if not _rollout_started(db):
                proc = _segtui(
                    "run",
                    "--headless",
                    "--inventory",
                    str(inventory),
                    "--target",
                    "16.0.0-123",
                    "--batch",
                    "2,50%",
                    "--max-unavailable",
                    "2",
                    cwd=tmp_path,
                )
            else:
                proc = _segtui("resume", "--headless", "--inventory", str(inventory), cwd=tmp_path)
            lines: queue.Queue[str | None] = queue.Queue()

            def pump(p: subprocess.Popen[str] = proc, q: queue.Queue[str | None] = lines) -> None:
                assert p.stdout is not None
                for line in p.stdout:
                    q.put(line)
                q.put(None)

            threading.Thread(target=pump, daemon=True).start()
            # Wait for the step itself; if no appliance enters it soon (the rollout moved past it), kill anyway.
            end = time.monotonic() + 20
            finished = hit = False
            while time.monotonic() < end:
                try:
                    line = lines.get(timeout=max(0.01, end - time.monotonic()))
                except queue.Empty:
                    break
                if line is None:
                    finished = True
                    break
                if line.rstrip().endswith(f" {step}"):
                    hit = True
                    break
            if finished:
                proc.wait()
                assert proc.returncode == 0
                break
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            if hit:
                killed_in.add(step)
            if kills >= 22:
                break
        # finish the job
        final = _segtui(
            "resume",
            "--headless",
            "--inventory",
            str(inventory),
            "--report",
            str(tmp_path / "report.json"),
            cwd=tmp_path,
        )
        out, _ = final.communicate(timeout=300)
        assert final.returncode == 0, out[-4000:]
        assert kills >= 20, kills
        # the kills landed across the procedure, not in one place
        assert len(killed_in) >= 8, killed_in
        sim_events = [ln.split()[:2] for ln in events.read_text().splitlines()]
        upgrades = Counter((n, e) for n, e in sim_events if e.startswith("upgraded:"))
        names = {f"esa{i:02d}" for i in range(1, 13)}
        for name in names:
            final_upgrades = upgrades[(name, "upgraded:16.0.0-123")]
            assert final_upgrades == 1, (name, upgrades)
        assert all(count == 1 for count in upgrades.values()), upgrades  # nothing upgraded twice
        last_listener_event: dict[str, str] = {}
        for n, e in sim_events:
            if e in ("suspended", "resumed"):
                last_listener_event[n] = e
        assert set(last_listener_event.values()) == {"resumed"}, last_listener_event  # none left suspended
        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT outcome FROM rollouts ORDER BY id DESC").fetchone()[0] == "completed"
        con.close()
    finally:
        sim.terminate()
        sim.wait(10)


def _wait_for_lock_holder(state_dir: Path, pid: int, limit: float = 60) -> None:
    """Until a rollout lock in `state_dir` names `pid` (the first process holds it)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        for lock in state_dir.glob("*.lock"):
            try:
                if json.loads(lock.read_text() or "{}").get("pid") == pid:
                    return
            except (OSError, ValueError):
                pass
        time.sleep(0.05)
    raise AssertionError(f"no lock held by pid {pid} in {state_dir}")


def test_second_process_refused_naming_the_lock_holder(tmp_path: Path) -> None:
    (tmp_path / "segtui.toml").write_text(SETTINGS)
    sim, inventory, _ = _start_sim(tmp_path, 2)
    try:
        first = _segtui("run", "--headless", "--inventory", str(inventory), "--target", "16.0.0-123", cwd=tmp_path)
        _wait_for_lock_holder(tmp_path / "state", first.pid)
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "segtui",
                "run",
                "--headless",
                "--inventory",
                str(inventory),
                "--target",
                "16.0.0-123",
            ],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert f"pid {first.pid}" in second.stderr and "holds the rollout lock" in second.stderr
        assert "Traceback" not in second.stderr
        out, _ = first.communicate(timeout=120)
        assert first.returncode == 0, out[-2000:]
    finally:
        sim.terminate()
        sim.wait(10)
