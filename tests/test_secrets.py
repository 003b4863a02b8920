"""Secrets never reach logs, the journal, reports, transcripts or screenshots: grep every artefact."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Zq7-unique-Secr3t-9x"


def _capture_module() -> Any:
    spec = importlib.util.spec_from_file_location("make_screenshots", ROOT / "screenshots" / "make_screenshots.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grep(root: Path, needle: bytes) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            hits.append(path)
    return hits


def test_full_run_and_screenshots_hold_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGTUI_PASSWORD", PASSWORD)
    # 1. a complete headless run with a report, its stdout/stderr kept as a log
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "segtui",
            "demo",
            "--headless",
            "--appliances",
            "6",
            "--time-scale",
            "0.002",
            "--report",
            str(tmp_path / "run" / "report.json"),
        ],
        cwd=tmp_path,
        env={**os.environ, "SEGTUI_PASSWORD": PASSWORD, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (tmp_path / "run" / "output.log").write_text(proc.stdout + proc.stderr)
    # 2. the dashboard's screenshots, including the transcript of an appliance
    shots = asyncio.run(
        _capture_module().capture(tmp_path / "shots", appliances=4, password=PASSWORD, work=tmp_path / "shots-work")
    )
    assert any(p.name == "detail.svg" for p in shots)
    # every file: journal (+WAL), backups, reports, log, screenshots, the simulators' own files
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "journal.sqlite" for p in files) and any(p.suffix == ".svg" for p in files)
    assert any("backups" in p.parts for p in files)
    assert _grep(tmp_path, PASSWORD.encode()) == []
    # the transcript really was captured (so the check above means something)
    detail = next(p for p in shots if p.name == "detail.svg").read_text()
    assert "precheck" in detail


def test_redaction_replaces_an_echoed_secret() -> None:
    from segtui.asyncos.session import CLISession
    from segtui.textsafe import Redactor

    session = CLISession.__new__(CLISession)
    session._redactor = Redactor([PASSWORD])
    assert session.redact(f"Enter password: {PASSWORD}\n") == "Enter password: ********\n"
