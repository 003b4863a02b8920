"""The commands around a rollout, run as an operator would (`python -m segtui`), from another directory:
`sim --inventory-out` then `check`, `probe`, `history` (issues 11 and 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TEST_PASSWORD = "Sim-Pa55word-for-tests"


def segtui(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGTUI_")} | {"SEGTUI_PASSWORD": TEST_PASSWORD}
    return subprocess.run(
        [sys.executable, "-m", "segtui", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


def test_sim_inventory_is_usable_as_is_from_anywhere(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGTUI_")} | {"SEGTUI_PASSWORD": TEST_PASSWORD}
    inventory = tmp_path / "lab" / "X.toml"
    inventory.parent.mkdir()
    sim = subprocess.Popen(
        [sys.executable, "-m", "segtui", "sim", "--appliances", "2", "--inventory-out", str(inventory)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sim.stdout is not None
        for line in sim.stdout:  # wait for the fleet to say it is up
            if "Ctrl+C" in line:
                break
        else:
            raise AssertionError("the simulator ended before it was up")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        check = segtui(["check", "--inventory", str(inventory), "--target", "16.0.0-123"], elsewhere)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "pre-flight passed" in check.stdout

        probe = segtui(["probe", "--inventory", str(inventory), "--out", "kit"], elsewhere)
        assert probe.returncode == 0, probe.stdout + probe.stderr
        data = json.loads((elsewhere / "kit" / "probe.json").read_text())
        assert data["ok"] is True and len(data["appliances"]) == 2
        assert TEST_PASSWORD not in "".join(p.read_text() for p in (elsewhere / "kit").rglob("*") if p.is_file())

        # The state lives beside the inventory, not in the working directory.
        assert (inventory.parent / ".segtui" / "journal.sqlite").is_file()
        assert not (elsewhere / ".segtui").exists()
        history = segtui(["history", "--inventory", str(inventory)], tmp_path)
        assert history.returncode == 0 and "no rollouts of" in history.stdout
    finally:
        sim.terminate()
        sim.wait(timeout=30)
