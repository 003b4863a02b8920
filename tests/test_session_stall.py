"""One appliance sending output up to the 16 MB cap does not stall the event loop for the others (finding 5):
per-chunk work is small and yields, per-command work is C-speed and the transcript is cut before it is redacted.
A healthy appliance's commands on the same loop keep a small latency."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from segtui.asyncos.commands import Appliance, CommandTimeouts
from segtui.asyncos.errors import OutputTooLarge
from segtui.asyncos.session import Exchange
from tests.scripted import ScriptedAppliance, Served, Turn, serving

ROOT = Path(__file__).resolve().parent.parent
CAP = 16 * 1024 * 1024
# The hostile appliance runs in its own process, as a real one would: its SSH encryption of 16 MB is not our
# event loop's work, only receiving it is.
HOSTILE_SERVER = """
import asyncio, sys
from pathlib import Path
from tests.scripted import ScriptedAppliance, serve
from tests.test_session_stall import _flood

async def main():
    sa = ScriptedAppliance(script={"version": _flood(int(sys.argv[2]))})
    acceptor, port, kh, key = await serve(sa, Path(sys.argv[1]))
    print(port, kh, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
BLOCK = ("x" * 63 + "\n") * 4096  # 256 KiB


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path) as s:
        yield s


def _flood(size: int) -> list[Turn]:
    return [(BLOCK, None)] * (size // len(BLOCK))


@pytest.mark.parametrize("size", [CAP - 512 * 1024, CAP + 512 * 1024], ids=["under-cap", "over-cap"])
async def test_a_flooding_appliance_does_not_stall_a_healthy_one(served: Served, tmp_path: Path, size: int) -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOSTILE_SERVER, str(tmp_path), str(size), cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        port, kh = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().split()
        await _flood_next_to_healthy(served, int(port), Path(kh), size)
    finally:
        server.kill()
        await server.wait()


async def _flood_next_to_healthy(served: Served, port: int, kh: Path, size: int) -> None:
    healthy = ScriptedAppliance(script={"workqueue status": [("\nStatus: Operational\nMessages: 1\n", None)]})
    recorded: list[Exchange] = []
    bad = Appliance(served.options(port, kh, "pw"), timeouts=CommandTimeouts(default=60), transcript=recorded.append)
    good = await served.connect(healthy, timeout=10)
    latencies: list[float] = []
    async with bad, good:
        await good.read("workqueue status")  # connected before the flood starts
        await bad.session()
        flood = asyncio.create_task(bad.read("version"))
        while not flood.done():
            started = time.monotonic()
            await good.read("workqueue status")
            latencies.append(time.monotonic() - started)
        if size > CAP:
            with pytest.raises(OutputTooLarge):
                await flood
        else:
            assert len(await flood) > CAP - 1024 * 1024
    assert len(latencies) >= 3
    print(f"healthy latency over {len(latencies)} commands: max {max(latencies):.3f} s")
    assert max(latencies) < 1.0, f"healthy command latency {max(latencies):.2f} s during the flood"
    assert recorded and len(recorded[-1].output) < 300 * 1024  # the transcript keeps a bounded head and tail


@pytest.mark.parametrize("offset", range(-40, 41, 7))
def test_transcript_cut_never_splits_a_secret(offset: int) -> None:
    from segtui.textsafe import MASK, Redactor

    secret = "Hunter2-Secret-Passphrase"
    redactor = Redactor([secret])
    limit = 1000
    for cut in (limit // 2 + offset, 3 * limit // 2 + 200 - limit // 2 + offset):
        text = "a" * cut + secret + "b" * (2 * limit + 200 - cut)
        text = text[: 2 * limit + 200 + len(secret)]
        head = redactor.safe_cut(text, limit // 2)
        tail = redactor.safe_cut(text, len(text) - limit // 2)
        out = redactor(text[:head]) + "|" + redactor(text[tail:])
        assert "Hunter2" not in out and "Passphrase" not in out and "Secret-" not in out
        assert MASK in out or secret not in text[:head] + text[tail:]
