"""Notifications (issue 16): one JSON object per event to a real local HTTP endpoint, in order, with the fields;
a dead or hung endpoint never slows the rollout; the token in a URL is never shown."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from segtui.rollout.events import (
    ApplianceStateChanged,
    BatchFinished,
    BatchStarted,
    RolloutState,
    RolloutStateChanged,
    State,
    Step,
    StepStarted,
)
from segtui.rollout.notify import Notifier, shown_url

TOKEN = "T0KEN-abcdef-123456"
FIELDS = {"event", "fleet", "environment", "target", "appliance", "state", "message", "ts", "text"}


class Endpoint:
    """A real HTTP server on loopback that keeps every JSON body it receives."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.cond:
                    outer.bodies.append(json.loads(body))
                    outer.paths.append(self.path)
                    outer.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate: Any, timeout: float = 30) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self.bodies), timeout), self.bodies

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.close()


def dead_url() -> str:
    """A port nothing listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/{TOKEN}"


def notifier(urls: list[str], **kw: Any) -> Notifier:
    return Notifier(urls, fleet="emea-prod", environment="production", target="16.0.0-123", **kw)


EVENTS = [
    RolloutStateChanged(state=RolloutState.RUNNING),
    BatchStarted(index=1, total=2, appliances=("esa1", "esa2")),
    StepStarted(appliance="esa1", step=Step.DRAIN),  # not a notification
    ApplianceStateChanged(appliance="esa2", state=State.FAILED, error="upgrade failed"),
    ApplianceStateChanged(appliance="esa2", state=State.FAILED, error="upgrade failed"),  # the same news again
    ApplianceStateChanged(appliance="esa1", state=State.NEEDS_ATTENTION, error="host key changed"),
    BatchFinished(index=1, failures=2),
    RolloutStateChanged(state=RolloutState.PAUSED, reason="failure budget spent"),
    RolloutStateChanged(state=RolloutState.RUNNING),  # an unpause is not a second start
    RolloutStateChanged(state=RolloutState.ABORTED, reason="aborted by operator"),
]
EXPECTED = [
    "rollout.started",
    "batch.started",
    "appliance.failed",
    "appliance.needs-attention",
    "batch.finished",
    "rollout.paused",
    "rollout.aborted",
]


async def test_events_arrive_in_order_with_their_fields(endpoint: Endpoint) -> None:
    n = notifier([endpoint.url])
    for e in EVENTS:
        n.on_event(e)
    await n.close()
    assert [b["event"] for b in endpoint.bodies] == EXPECTED
    for body in endpoint.bodies:
        assert set(body) == FIELDS
        assert body["fleet"] == "emea-prod" and body["environment"] == "production" and body["target"] == "16.0.0-123"
        assert body["text"].startswith("segtui emea-prod (production) -> 16.0.0-123:")
    failed = endpoint.bodies[2]
    assert failed["appliance"] == "esa2" and failed["state"] == "failed" and failed["message"] == "upgrade failed"
    assert endpoint.bodies[5]["message"] == "failure budget spent"
    assert n.sent == len(EXPECTED) and n.failed == 0


async def test_a_dead_endpoint_costs_deliveries_not_time() -> None:
    url = dead_url()
    n = notifier([url], retries=3)
    start = time.monotonic()
    for e in EVENTS:
        n.on_event(e)  # never waits for the network
    assert time.monotonic() - start < 0.05
    await n.close()
    assert time.monotonic() - start < 3.0  # the first event's retries at most; the rest get one try
    assert n.failed == len(EXPECTED) and n.sent == 0
    shown = json.dumps(n.summary())
    assert TOKEN not in shown and "/hooks" not in shown
    assert all(" -> (all): " in f or "/…: ConnectError" in f for f in n.summary()["failures"])


async def test_a_hung_endpoint_cannot_hold_segtui_at_the_end() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts and never answers
    port = server.sockets[0].getsockname()[1]
    n = notifier([f"http://127.0.0.1:{port}/x/{TOKEN}"], timeout=30)
    n.on_event(EVENTS[0])
    await asyncio.sleep(0)  # the worker takes the event and posts it
    start = time.monotonic()
    await n.close()
    assert time.monotonic() - start < 2.0
    assert n.failed == 1
    server.close()


def test_shown_url_never_holds_the_token() -> None:
    assert shown_url(f"https://user:pw@hooks.example.com:8443/services/{TOKEN}?k={TOKEN}") == (
        "https://hooks.example.com:8443/…"
    )
    assert shown_url("http://[::1") == "(an invalid URL)"


def start_demo(tmp_path: Path, name: str, *notify: str) -> subprocess.Popen[str]:
    report = tmp_path / name
    # Long enough (about 35 s of rollout) that the machine's noise stays well below the 5 % being measured.
    args = ["demo", "--headless", "--appliances", "3", "--time-scale", "0.01", "--batch", "1,100%"]
    args += ["--max-unavailable", "3", "--faults", "esa02=upgrade-fail", "--report", str(report)]
    for url in notify:
        args += ["--notify", url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGTUI_")}
    env["SEGTUI_GUARDS__BAKE"] = "0"  # no bake: this test is about what reaches the endpoint, and when
    # Same seed, same serials: each run keeps its machine-wide appliance locks apart from the other's.
    env["SEGTUI_LOCKS__DIR"] = str(tmp_path / f"locks-{name}")
    return subprocess.Popen(
        [sys.executable, "-m", "segtui", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], tmp_path: Path, name: str) -> tuple[int, str, dict[str, Any]]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out + err, json.loads((tmp_path / f"{name}.json").read_text())


def test_demo_notifies_a_real_endpoint_and_a_dead_one_costs_nothing(endpoint: Endpoint, tmp_path: Path) -> None:
    # Both runs at once, so that they share the machine's load alike; same seed, same simulated durations.
    plain_proc = start_demo(tmp_path, "plain")
    told_proc = start_demo(tmp_path, "told", endpoint.url, dead_url())
    plain_code, _, plain_report = finish(plain_proc, tmp_path, "plain")
    told_code, told_output, told_report = finish(told_proc, tmp_path, "told")
    assert plain_code == told_code == 1, told_output  # esa02 failed
    events = [b["event"] for b in endpoint.bodies]
    # In order: the start first, the end last, batches opened and closed in turn ...
    assert events[0] == "rollout.started" and events[-1] == "rollout.completed", events
    batches = [e for e in events if e.startswith("batch.")]
    assert batches == ["batch.started", "batch.finished"] * (len(batches) // 2) and batches, events
    # ... and each appliance the report counts as failed or needing attention told once, with its state.
    told = {(b["appliance"], b["state"]) for b in endpoint.bodies if b["event"].startswith("appliance.")}
    expected = {
        (a["name"], a["state"]) for a in told_report["appliances"] if a["state"] in ("failed", "needs-attention")
    }
    assert told == expected and len(told) == events.count("appliance.failed") + events.count(
        "appliance.needs-attention"
    ), (told, expected)
    failed = next(b for b in endpoint.bodies if b["event"] == "appliance.failed")
    assert failed["appliance"] == "esa02" and failed["fleet"] == "sim-lab" and failed["state"] == "failed"
    assert all(set(b) == FIELDS for b in endpoint.bodies)
    # The dead endpoint's failures are counted and listed in the report, without the token.
    notes = told_report["notifications"]
    assert notes["failed"] == len(events) and notes["sent"] == len(events)
    assert TOKEN not in json.dumps(told_report) + told_output
    assert "## Notification delivery failures" in (tmp_path / "told.md").read_text()
    # ... and it did not slow the rollout: within 5 % of the run without --notify.
    assert told_report["seconds"] <= plain_report["seconds"] * 1.05, (told_report["seconds"], plain_report["seconds"])
