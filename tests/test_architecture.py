"""Dependencies point one way (tui -> rollout -> asyncos/updates); the core runs without Textual."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    proc = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 3 kept, 0 broken" in proc.stdout


def test_core_importable_without_textual() -> None:
    code = (
        "import sys; sys.modules['textual'] = None\n"
        "import segtui.cli, segtui.rollout.engine, segtui.rollout.preflight, segtui.asyncos.commands\n"
        "import segtui.sim.fleet, segtui.updates.manifest, segtui.headless\n"
        "assert not any(m.startswith('segtui.tui') for m in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_simulator_shares_no_strings_module_with_driver() -> None:
    for path in (ROOT / "segtui" / "sim").glob("*.py"):
        text = path.read_text()
        for forbidden in ("segtui.asyncos", "segtui.rollout", "segtui.updates", "segtui.tui"):
            assert forbidden not in text, f"{path.name} mentions {forbidden}"


def test_themes_ship_in_the_wheel(tmp_path: Path) -> None:
    """An installed wheel finds its themes (the top-level themes/ is force-included)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import zipfile

    wheel = next(tmp_path.glob("segtui-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for theme in ("base", "noc-dark", "noc-light", "high-contrast"):
        assert f"segtui/themes/{theme}.tcss" in names
