"""`segtui stage`, `probe`, `sim` and `serve-updates`: the commands around a rollout."""

from __future__ import annotations

import argparse
import asyncio

from segtui.commands.common import EXIT_FAILED, EXIT_OK, load, lock, open_journal, positive, target
from segtui.errors import InputError


async def stage(args: argparse.Namespace) -> int:
    from segtui.console import stage_table
    from segtui.headless import HeadlessPrinter
    from segtui.rollout.context import RolloutContext
    from segtui.rollout.staging import stage_fleet

    settings, inventory = load(args)
    version = target(args.target)
    positive(args.concurrency, "--concurrency")
    held = lock(settings, inventory, "stage")
    try:
        journal = open_journal(settings)
        journal.action("stage", f"target {version}")
        printer = HeadlessPrinter(None, inventory=inventory)
        ctx = RolloutContext(inventory, settings, version, journal, printer.on_event)
        results = await stage_fleet(ctx, args.concurrency)
    finally:
        held.release()
    for line in stage_table(results):
        print(line)
    ok = all(r.status in ("staged", "already-staged", "at-target") for r in results)
    return EXIT_OK if ok else EXIT_FAILED


async def probe(args: argparse.Namespace) -> int:
    """Read-only, on every appliance: the printouts segtui relies on, as transcripts plus probe.json."""
    from segtui.console import say
    from segtui.rollout.context import RolloutContext
    from segtui.textsafe import one_line

    try:
        from segtui.rollout.probe import probe_fleet  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise InputError(["probe: this build has no field kit"]) from None
    settings, inventory = load(args)
    out = args.out.resolve()
    if out.exists() and not out.is_dir():
        raise InputError([f"--out {out}: exists and is not a directory"])
    journal = open_journal(settings)
    ctx = RolloutContext(inventory, settings, target("0.0.0-0"), journal, lambda e: None)
    report = await probe_fleet(ctx, out)
    for line in report.problems():
        say(f"  {one_line(line)}")
    verdict = "every appliance answered and every parser read ok" if report.ok else "not everything read ok"
    say(f"probe: {verdict}; transcripts and probe.json in {out} (attach the folder to a bug report)")
    return EXIT_OK if report.ok else EXIT_FAILED


async def sim(args: argparse.Namespace) -> int:
    from segtui.sim.fleet import FaultSpecError, SimFleet, parse_faults
    from segtui.sim.model import Durations

    positive(args.appliances, "--appliances")
    try:
        fleet = SimFleet(
            args.appliances,
            time_scale=args.time_scale,
            faults=parse_faults(args.faults),
            seed=args.seed,
            workdir=args.workdir,
            events_out=args.events_out,
            durations=Durations().fixed() if args.fixed_durations else None,
            clusters=not args.no_clusters,
        )
    except (FaultSpecError, ValueError) as exc:
        raise InputError([str(exc)]) from None
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    await fleet.start()
    try:
        if args.inventory_out:
            fleet.write_inventory(args.inventory_out)
        for line in fleet.summary():
            print(line)
        if args.inventory_out:
            print(f"inventory also written to {args.inventory_out}")
        print(
            f"password: ${fleet.password_env} if set, else the default (see README); Ctrl+C stops the fleet",
            flush=True,
        )
        await asyncio.Event().wait()
    finally:
        await fleet.stop()
    return EXIT_OK


async def serve_updates(args: argparse.Namespace) -> int:
    from segtui.updates.server import make_server

    if not args.directory.is_dir():
        raise InputError([f"{args.directory}: not a directory"])
    try:
        server = make_server(args.directory, args.port, args.bind)
    except (OSError, OverflowError) as exc:
        raise InputError([f"--port {args.port} / --bind {args.bind}: {exc}"]) from None
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = host if host not in ("0.0.0.0", "::") else "<this-host>"
    print(f"serving {args.directory.resolve()} at http://{host}:{port}/ (Ctrl+C stops)")
    print(f'in the inventory: update_server = "http://{shown}:{port}"', flush=True)
    try:
        await asyncio.to_thread(server.serve_forever)
    finally:
        server.server_close()
    return EXIT_OK
