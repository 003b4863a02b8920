"""The `segtui` command line: a parser that dispatches to small command functions in `segtui.commands`.

Heavy imports happen inside each command so that `segtui --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from segtui.commands.common import EXIT_FAILED, EXIT_INPUT, EXIT_OK, STATE
from segtui.console import err

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def _lazy(module: str, name: str) -> Command:
    """The command `name` of `segtui.commands.<module>`, imported only when it runs."""

    async def run(args: argparse.Namespace) -> int:
        func: Command = getattr(importlib.import_module(f"segtui.commands.{module}"), name)
        return await func(args)

    return run


def _rollout_flags(p: argparse.ArgumentParser, *, new: bool = True) -> None:
    if new:
        p.add_argument("--batch", help="batch ramp, e.g. 1,2,25%% (the last step repeats)")
        p.add_argument("--max-unavailable", type=int, help="appliances of one group out of service at once")
        p.add_argument("--concurrency", type=int, help="appliances upgraded at once at most")
        p.add_argument("--pause-on-failure", action="store_true", help="pause before the next batch after a failure")
        p.add_argument(
            "--bake", metavar="DURATION", help="watch each appliance move mail before it is done: 90s, 10m; 0 = off"
        )
        p.add_argument("--peer-queue-max", type=int, metavar="N", help="peers' work queue must be below N to go on")
    p.add_argument("--max-fail", help="failure budget over the whole rollout: N or N%% (resume: raises it)")
    p.add_argument("--until", help="maintenance window end: HH:MM, an ISO date-time, +2h or +90m")
    p.add_argument("--headless", action="store_true", help="no dashboard: one line per event")
    p.add_argument("--json-lines", action="store_true", help="(headless) one JSON object per event")
    p.add_argument("--readonly", action="store_true", help="dashboard without any changing action")
    p.add_argument("--report", type=Path, metavar="NAME", help="write NAME.json and NAME.md")
    p.add_argument("--notify", action="append", default=[], metavar="URL", help="POST each event (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segtui", description="Rolling AsyncOS upgrades for a fleet of Cisco Secure Email Gateways."
    )
    parser.add_argument("--config", type=Path, help="settings file (default ./segtui.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str, func: Command, inventory: bool | None = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(func=func)
        if inventory is not None:
            p.add_argument("--inventory", type=Path, required=inventory)
        return p

    p = command(
        "demo", "simulated fleet + update server, then the rollout (the dashboard)", _lazy("demo", "demo"), None
    )
    p.add_argument("--appliances", type=int, default=12)
    p.add_argument("--time-scale", type=float, default=0.01, help="1.0 = real appliance durations")
    p.add_argument("--faults", help="name=fault,... (reboot-hang, drain-stuck, upgrade-fail, ...)")
    p.add_argument("--seed", type=int, default=7)
    _rollout_flags(p)
    p = command("sim", "run a simulated fleet and update server on loopback", _lazy("fleet", "sim"), None)
    p.add_argument("--appliances", type=int, default=6)
    p.add_argument("--time-scale", type=float, default=0.01)
    p.add_argument("--faults")
    p.add_argument("--inventory-out", type=Path, help="write a ready-to-use inventory (and its known_hosts) here")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", type=Path, help="where appliances keep their files (default: a temp dir)")
    p.add_argument("--events-out", type=Path, help="append one line per appliance event (upgrades, reboots)")
    p.add_argument("--fixed-durations", action="store_true", help="every appliance takes the same time")
    p.add_argument("--no-clusters", action="store_true", help="no AsyncOS cluster in the fleet")
    p = command("run", "run a rollout", _lazy("rollout", "run"))
    p.add_argument("--target", required=True, help="AsyncOS version, e.g. 16.0.0-123")
    p.add_argument("--confirm", metavar="FLEETNAME", help="(headless, production) the fleet's name, typed")
    _rollout_flags(p)
    p = command("resume", "continue an interrupted rollout", _lazy("rollout", "resume"))
    p.add_argument("--confirm", metavar="FLEETNAME", help="(headless, production) the fleet's name, typed")
    _rollout_flags(p, new=False)
    p = command("watch", "the dashboard of a rollout another segtui drives (read-only)", _lazy("rollout", "watch"))
    p = command("history", "the rollouts of this inventory", _lazy("history", "history"))
    p = command("report", "write the report of a past rollout again", _lazy("history", "report"))
    p.add_argument("--rollout", type=int, help="rollout id (default: the latest)")
    p.add_argument("--out", type=Path, required=True, metavar="NAME", help="write NAME.json and NAME.md")
    p = command("probe", "read every appliance (read-only) and keep the transcripts", _lazy("fleet", "probe"))
    p.add_argument("--out", type=Path, default=Path("probe"), help="directory for transcripts + probe.json")
    p = command(
        "prepare",
        "before the window: what to fetch from Cisco, and is the server ready",
        _lazy("plan", "prepare"),
        False,
    )
    p.add_argument("--target")
    p.add_argument("--unpack", type=Path, nargs="+", metavar="ZIP", help="unpack fetch_manifest bundles")
    p.add_argument("--into", type=Path, help="the update server's root directory (with --unpack)")
    p = command("serve-updates", "a static HTTP server for update images", _lazy("fleet", "serve_updates"), None)
    p.add_argument("directory", type=Path)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p = command("stage", "download the images ahead of the window; listeners stay active", _lazy("fleet", "stage"))
    p.add_argument("--target", required=True)
    p.add_argument("--concurrency", type=int, default=10)
    for name, text in (
        ("check", "pre-flight the whole fleet; changes nothing"),
        ("plan", "print batches and the exact CLI commands; changes nothing"),
    ):
        p = command(name, text, _lazy("plan", "check_plan"))
        p.add_argument("--target", required=True)
        p.add_argument("--batch")
        p.add_argument("--concurrency", type=int, help="(plan) appliances upgraded at once at most")
        p.add_argument("--offline", action="store_true", help="(plan) do not connect to read versions")
        p.add_argument("--window", help="(plan) length of a maintenance window, e.g. 4h or 90m: how many are needed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import asyncio

    from segtui.errors import InputError

    func: Command = args.func
    try:
        return asyncio.run(func(args))
    except InputError as exc:
        for line in exc.problems:
            err(line)
        return EXIT_INPUT
    except KeyboardInterrupt:
        err("interrupted; `segtui resume --inventory FILE` continues an interrupted rollout")
        return EXIT_FAILED
    except BrokenPipeError:
        return _closed_pipe()
    except Exception as exc:  # the last resort: one line and where the details are, never a traceback
        from segtui.console import unexpected

        return unexpected(exc, STATE)


def _closed_pipe() -> int:
    """The reader went away (`segtui plan ... | head`): end quietly, without a second error at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_OK
