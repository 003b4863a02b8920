"""A runaway or hostile appliance fails its own command in time and never stalls the others (real SSH, one loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from segtui.asyncos.commands import Appliance
from segtui.asyncos.errors import CommandTimeout, OutputTooLarge
from segtui.asyncos.session import TRANSCRIPT_CHARS, DialoguePolicy, Exchange
from tests.scripted import ScriptedAppliance, Served, serving

VERSION_OUT = "\nCurrent Version\n===============\nModel: C300V\nVersion: 15.0.0-104\nSerial #: 4229F1C3E7A9-X\n"
MB = 1_000_000
DEADLINE = 3.0
# Generous for a loaded 2-core machine; before the fix one such appliance stalled the loop for tens of seconds.
MAX_LATENCY = 1.0


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path) as s:
        yield s


async def _alongside(healthy: Appliance, hostile_call: asyncio.Task[object]) -> list[float]:
    """Run `version` on the healthy appliance again and again until the hostile call has ended."""
    latencies: list[float] = []
    while not hostile_call.done():
        t0 = time.monotonic()
        info = await healthy.version()
        latencies.append(time.monotonic() - t0)
        assert str(info.version) == "15.0.0-104"
    return latencies


def _flooding(text: str, command: str = "status detail") -> ScriptedAppliance:
    # The flood, then silence: no prompt ever comes.
    return ScriptedAppliance(script={command: [(text, None)]}, hang={command})


@pytest.mark.parametrize("unit", ["[", "password "], ids=["brackets", "password"])
async def test_a_flood_fails_at_its_deadline_and_the_other_appliance_carries_on(served: Served, unit: str) -> None:
    exchanges: list[Exchange] = []
    bad = await served.connect(_flooding(unit * (MB // len(unit))), timeout=DEADLINE, transcript=exchanges.append)
    good = await served.connect(ScriptedAppliance(script={"version": [(VERSION_OUT, None)]}))
    await asyncio.gather(bad.session(), good.session())
    t0 = time.monotonic()
    hostile = asyncio.create_task(bad.status_detail())
    latencies = await _alongside(good, hostile)
    with pytest.raises(CommandTimeout, match="deadline"):
        await hostile
    elapsed = time.monotonic() - t0
    await asyncio.gather(bad.close(), good.close())
    assert DEADLINE - 0.1 <= elapsed < DEADLINE + 1.0
    assert len(latencies) >= 3 and max(latencies) < MAX_LATENCY, latencies
    # The failed command is in the transcript, which stays short.
    [ex] = exchanges
    assert not ex.complete and len(ex.output) < TRANSCRIPT_CHARS + 100 and "characters left out" in ex.output


async def test_output_over_the_cap_fails_long_before_the_deadline(served: Served) -> None:
    flood = ("[" * 99 + "\n") * (2 * MB // 100)
    bad = await served.connect(_flooding(flood), timeout=60, policy=DialoguePolicy(max_output_bytes=256 * 1024))
    good = await served.connect(ScriptedAppliance(script={"version": [(VERSION_OUT, None)]}))
    await asyncio.gather(bad.session(), good.session())
    t0 = time.monotonic()
    hostile = asyncio.create_task(bad.status_detail())
    latencies = await _alongside(good, hostile)
    with pytest.raises(OutputTooLarge, match=r"more than 262144 bytes"):
        await hostile
    assert time.monotonic() - t0 < 10
    assert max(latencies) < MAX_LATENCY, latencies
    await asyncio.gather(bad.close(), good.close())


def test_the_default_cap_is_16_mib() -> None:
    assert DialoguePolicy().max_output_bytes == 16 * 1024 * 1024


async def test_a_password_question_that_keeps_growing_still_meets_the_deadline(served: Served) -> None:
    # Each piece looks like a password question, and the next arrives before the line is judged quiet.
    drip = ScriptedAppliance(script={"commit": [("\nEnter the password:", None)] * 30}, pace=0.3, hang={"commit"})
    bad = await served.connect(drip, timeout=DEADLINE)
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout, match="deadline"):
        await bad.commit("x")
    assert time.monotonic() - t0 < DEADLINE + 1.0
    await bad.close()


async def test_a_long_complete_output_is_returned_whole_and_shortened_in_the_transcript(served: Served) -> None:
    body = "".join(f"line {i:07d} of a long printout\n" for i in range(40_000))  # about 1.3 MB
    exchanges: list[Exchange] = []
    client = await served.connect(
        ScriptedAppliance(script={"status detail": [(body, None)]}), transcript=exchanges.append
    )
    async with client:
        session = await client.session()
        out = await session.run("status detail", timeout=DEADLINE)
    assert out == body
    [ex] = exchanges
    assert ex.complete and len(ex.output) < TRANSCRIPT_CHARS + 100
    assert ex.output.startswith("line 0000000 ") and ex.output.rstrip().endswith("line 0039999 of a long printout")


async def test_a_secret_cut_by_the_shortening_is_still_masked(served: Served) -> None:
    secret = "Zq7-unique-Secr3t-9x"
    half = TRANSCRIPT_CHARS // 2
    body = "x" * (half - 10) + secret + "y" * (half + 1000) + "\n"  # the cut falls inside the secret
    exchanges: list[Exchange] = []
    sa = ScriptedAppliance(password=secret, script={"status detail": [(body, None)]})
    client = await served.connect(sa, transcript=exchanges.append)
    async with client:
        session = await client.session()
        assert await session.run("status detail", timeout=DEADLINE) == body
    [ex] = exchanges
    assert "characters left out" in ex.output
    assert secret[:6] not in ex.output and secret[-6:] not in ex.output
