"""A prompt-like line inside a printout does not end the command (finding 15): the real prompt is the end of the
text and the stream stays quiet after it. A desynchronised session would hand every later command the previous
command's output."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.scripted import ScriptedAppliance, Served, serving


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path) as s:
        yield s


async def test_fake_prompt_inside_a_printout_does_not_cut_the_command(served: Served) -> None:
    sa = ScriptedAppliance(
        pace=0.02,  # the rest of the printout follows the fake prompt within milliseconds
        script={
            "version": [
                ("\nCurrent Version\n===============\nProduct: Cisco C300V\nesa1.example.com> ", None),
                ("\nVersion: 15.0.0-104\nBuild Date: 2024-02-01\nSerial #: 4229F1C3E7A9-ABCDEF1\n", None),
            ],
            "workqueue status": [("\nStatus: Operational\nMessages: 5210\n", None)],
        },
    )
    client = await served.connect(sa)
    async with client:
        info = await client.version()
        assert str(info.version) == "15.0.0-104"
        out = await client.read("workqueue status")
        assert "Messages: 5210" in out and "Version" not in out


async def test_normal_commands_are_not_slowed_noticeably(served: Served) -> None:
    sa = ScriptedAppliance(script={"workqueue status": [("\nStatus: Operational\nMessages: 1\n", None)]})
    client = await served.connect(sa)
    async with client:
        await client.read("workqueue status")
        started = time.monotonic()
        for _ in range(5):
            await client.read("workqueue status")
        per_command = (time.monotonic() - started) / 5
    assert per_command < 0.5, f"{per_command:.3f} s per command"
