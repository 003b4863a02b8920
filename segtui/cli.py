"""The `segtui` command line; heavy imports happen inside each command so `--help` stays fast."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from segtui.inventory import Inventory
    from segtui.rollout.engine import Rollout, RolloutOptions
    from segtui.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_PREFLIGHT = 0, 1, 2, 3


def _add_rollout_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", help="batch ramp, e.g. 1,2,25%% (the last step repeats)")
    p.add_argument("--max-fail", help="failure budget over the whole rollout: N or N%%")
    p.add_argument("--max-unavailable", type=int, help="appliances of one group out of service at once")
    p.add_argument("--pause-on-failure", action="store_true", help="pause before the next batch after a failure")
    p.add_argument("--headless", action="store_true", help="no dashboard: print progress lines")
    p.add_argument("--readonly", action="store_true", help="dashboard without any changing action")
    p.add_argument("--report", type=Path, help="write FILE.json and FILE.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segtui",
        description="Rolling AsyncOS upgrades for a fleet of Cisco Secure Email Gateways.",
    )
    parser.add_argument("--config", type=Path, help="settings file (default ./segtui.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="simulated fleet + update server, then the rollout (the dashboard)")
    p.add_argument("--appliances", type=int, default=12)
    p.add_argument("--time-scale", type=float, default=0.01, help="1.0 = real appliance durations")
    p.add_argument("--faults", help="name=fault,... (reboot-hang, drain-stuck, upgrade-fail, ...)")
    p.add_argument("--seed", type=int, default=7)
    _add_rollout_options(p)

    p = sub.add_parser("sim", help="run a simulated fleet and update server on loopback")
    p.add_argument("--appliances", type=int, default=6)
    p.add_argument("--time-scale", type=float, default=0.01)
    p.add_argument("--faults")
    p.add_argument("--inventory-out", type=Path)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--workdir", type=Path, help="where appliances keep their files (default: a temp dir)")
    p.add_argument("--events-out", type=Path, help="append one line per appliance event (upgrades, reboots)")
    p.add_argument("--fixed-durations", action="store_true", help="every appliance takes the same time")
    p.add_argument("--no-clusters", action="store_true", help="no AsyncOS cluster in the fleet")

    for name, text in (("run", "run a rollout"), ("resume", "continue an interrupted rollout")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--inventory", type=Path, required=True)
        if name == "run":
            p.add_argument("--target", required=True, help="AsyncOS version, e.g. 16.0.0-123")
        _add_rollout_options(p)

    p = sub.add_parser("prepare", help="before the window: what to fetch from Cisco, and is the server ready")
    p.add_argument("--inventory", type=Path)
    p.add_argument("--target")
    p.add_argument("--unpack", type=Path, nargs="+", metavar="ZIP", help="unpack fetch_manifest bundles")
    p.add_argument("--into", type=Path, help="the update server's root directory (with --unpack)")

    p = sub.add_parser("serve-updates", help="a small static HTTP server for the update images and manifests")
    p.add_argument("directory", type=Path)
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: loopback only)")

    p = sub.add_parser("stage", help="download the images ahead of the window; listeners stay active")
    p.add_argument("--inventory", type=Path, required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--concurrency", type=int, default=10)

    for name, text in (
        ("check", "pre-flight the whole fleet; changes nothing"),
        ("plan", "print batches and the exact CLI commands; changes nothing"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--inventory", type=Path, required=True)
        p.add_argument("--target", required=True)
        p.add_argument("--batch")
        p.add_argument("--offline", action="store_true", help="(plan) do not connect to read versions")
    return parser


def err(text: str) -> None:
    print(f"segtui: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from segtui.errors import InputError

    try:
        return asyncio.run(_dispatch(args))
    except InputError as exc:
        for line in exc.problems:
            err(line)
        return EXIT_INPUT
    except KeyboardInterrupt:
        err("interrupted; `segtui resume --inventory FILE` continues an interrupted rollout")
        return EXIT_FAILED


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    from segtui.settings import load_settings

    return load_settings(args.config, **overrides)


def _options(args: argparse.Namespace, settings: Settings, saved: dict[str, Any] | None = None) -> RolloutOptions:
    from segtui.rollout.batches import parse_batch_spec, parse_failure_budget
    from segtui.rollout.engine import RolloutOptions

    base = (
        RolloutOptions(**saved)
        if saved
        else RolloutOptions(max_unavailable=settings.max_unavailable, concurrency=settings.concurrency)
    )
    if getattr(args, "batch", None):
        parse_batch_spec(args.batch)
        base.batch = args.batch
    if getattr(args, "max_fail", None):
        parse_failure_budget(args.max_fail)
        base.max_fail = args.max_fail
    if getattr(args, "max_unavailable", None) is not None:
        from segtui.errors import InputError

        if args.max_unavailable < 1:
            raise InputError(["--max-unavailable: must be at least 1"])
        base.max_unavailable = args.max_unavailable
    if getattr(args, "pause_on_failure", False):
        base.pause_on_failure = True
    return base


def _target(text: str) -> Any:
    from segtui.asyncos.versions import Version, VersionError
    from segtui.errors import InputError

    try:
        return Version.parse(text)
    except VersionError as exc:
        raise InputError([f"--target: {exc}"]) from None


def _inventory(path: Path) -> Inventory:
    from segtui.inventory import load_inventory

    return load_inventory(path)


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "sim":
        return await cmd_sim(args)
    if args.command == "demo":
        return await cmd_demo(args)
    if args.command in ("check", "plan"):
        return await cmd_check_plan(args)
    if args.command == "run":
        return await cmd_run(args)
    if args.command == "resume":
        return await cmd_resume(args)
    if args.command == "prepare":
        return await cmd_prepare(args)
    if args.command == "serve-updates":
        return await cmd_serve_updates(args)
    if args.command == "stage":
        return await cmd_stage(args)
    raise AssertionError(args.command)


async def cmd_prepare(args: argparse.Namespace) -> int:
    from segtui.errors import InputError

    if args.unpack:
        from segtui.updates.bundle import BundleError, unpack

        if args.into is None:
            raise InputError(["--unpack: needs --into DIR (the update server's root)"])
        missing: list[str] = []
        for archive in args.unpack:
            try:
                result = unpack(archive, args.into)
            except BundleError as exc:
                raise InputError([str(exc)]) from None
            print(
                f"{archive}: {len(result.files)} files, manifests: "
                f"{', '.join(p.name for p in result.manifests) or 'none'}"
            )
            missing += result.missing_images
        for image in missing:
            print(f"MISSING image referenced by a manifest: {image}")
        return EXIT_OK if not missing else EXIT_FAILED
    if args.inventory is None or args.target is None:
        raise InputError(["prepare: needs --inventory FILE --target VERSION (or --unpack ZIP... --into DIR)"])
    from segtui.rollout.context import RolloutContext
    from segtui.rollout.journal import Journal
    from segtui.rollout.preflight import prepare
    from segtui.rollout.render import render_prepare

    settings = _settings(args)
    inventory = _inventory(args.inventory)
    target = _target(args.target)
    ctx = RolloutContext(inventory, settings, target, Journal(settings.state_dir / "journal.sqlite"), lambda e: None)
    prepared = await prepare(ctx)
    print("\n".join(render_prepare(prepared, inventory.name, inventory.update_server, target)))
    return EXIT_OK if prepared.ready else EXIT_FAILED


async def cmd_serve_updates(args: argparse.Namespace) -> int:
    from segtui.errors import InputError
    from segtui.updates.server import make_server

    if not args.directory.is_dir():
        raise InputError([f"{args.directory}: not a directory"])
    try:
        server = make_server(args.directory, args.port, args.bind)
    except OSError as exc:
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


async def cmd_stage(args: argparse.Namespace) -> int:
    from segtui.errors import InputError
    from segtui.rollout.context import RolloutContext
    from segtui.rollout.events import Note, RolloutEvent, StagingChanged
    from segtui.rollout.journal import Journal
    from segtui.rollout.staging import stage_fleet

    settings = _settings(args)
    inventory = _inventory(args.inventory)
    target = _target(args.target)
    if args.concurrency < 1:
        raise InputError(["--concurrency: must be at least 1"])
    lock = _lock(settings, inventory, "stage")
    try:
        journal = Journal(settings.state_dir / "journal.sqlite")
        journal.action("stage", f"target {target}")

        def show(event: RolloutEvent) -> None:
            if isinstance(event, StagingChanged):
                pct = f" {event.percent}%" if event.percent is not None else ""
                print(f"{event.appliance:<12} {event.status}{pct} {event.version or ''}", flush=True)
            elif isinstance(event, Note) and event.level != "info":
                print(f"{event.appliance or 'fleet':<12} {event.level}: {event.text}", flush=True)

        ctx = RolloutContext(inventory, settings, target, journal, show)
        results = await stage_fleet(ctx, args.concurrency)
    finally:
        lock.release()
    print()
    for r in results:
        print(f"{r.name:<12} {r.status:<15} {r.version or '-':<12} {r.note}")
    ok = all(r.status in ("staged", "already-staged", "at-target") for r in results)
    staged = sum(1 for r in results if r.status in ("staged", "already-staged"))
    print(f"\n{staged} of {len(results)} appliances hold the staged image; `segtui run` will INSTALL it")
    return EXIT_OK if ok else EXIT_FAILED


async def cmd_sim(args: argparse.Namespace) -> int:
    from segtui.errors import InputError
    from segtui.sim.fleet import FaultSpecError, SimFleet, parse_faults
    from segtui.sim.model import Durations

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
    try:
        await asyncio.Event().wait()
    finally:
        await fleet.stop()
    return 0


async def cmd_check_plan(args: argparse.Namespace) -> int:
    from segtui.rollout.context import RolloutContext
    from segtui.rollout.journal import Journal
    from segtui.rollout.preflight import plan_batches, preflight
    from segtui.rollout.render import render_plan, render_preflight

    settings = _settings(args)
    inventory = _inventory(args.inventory)
    target = _target(args.target)
    journal = Journal(settings.state_dir / "journal.sqlite")
    ctx = RolloutContext(inventory, settings, target, journal, lambda e: None)
    if args.command == "check":
        result = await preflight(ctx)
        print("\n".join(render_preflight(result, target)))
        return EXIT_OK if result.ok else EXIT_PREFLIGHT
    options = _options(args, settings)
    checks = None if args.offline else {a.name: a for a in (await preflight(ctx)).appliances}
    print("\n".join(render_plan(ctx, options, plan_batches(ctx, options), checks)))
    return EXIT_OK


def _lock(settings: Settings, inventory: Inventory, command: str) -> Any:
    from segtui.errors import InputError
    from segtui.rollout.lock import InventoryLock, LockHeld

    lock = InventoryLock(settings.state_dir, inventory.path, command)
    try:
        lock.acquire()
    except LockHeld as exc:
        raise InputError([str(exc)]) from None
    return lock


async def _execute(args: argparse.Namespace, rollout: Rollout, *, autostart: bool, sim: Any = None) -> int:
    from segtui.rollout.report import build_report, write_report

    if args.headless:
        from segtui.headless import HeadlessPrinter

        printer = HeadlessPrinter(rollout)
        outcome: str = await rollout.run(autostart=True)
        printer.summary()
    else:
        from segtui.tui.app import run_dashboard

        outcome = await run_dashboard(rollout, readonly=args.readonly, autostart=autostart, sim=sim)
    report = build_report(rollout, outcome)
    if args.report:
        md = write_report(report, args.report)
        print(f"report: {args.report} and {md}")
    print(f"outcome: {outcome}")
    if outcome == "completed" and all(a["state"] == "done" for a in report["appliances"]):
        return EXIT_OK
    return EXIT_FAILED


async def cmd_run(args: argparse.Namespace) -> int:
    from segtui.errors import InputError
    from segtui.rollout.engine import Rollout
    from segtui.rollout.journal import Journal

    settings = _settings(args)
    inventory = _inventory(args.inventory)
    target = _target(args.target)
    options = _options(args, settings)
    lock = _lock(settings, inventory, "run")
    try:
        journal = Journal(settings.state_dir / "journal.sqlite")
        if journal.unfinished(str(inventory.path)):
            raise InputError(
                [
                    f"{inventory.path}: an interrupted rollout exists; continue it with "
                    f"`segtui resume --inventory {args.inventory}`"
                ]
            )
        rollout = Rollout(inventory, settings, target, journal, options, exit_on_pause=args.headless)
        if not await _preflight_or_refuse(rollout):
            return EXIT_PREFLIGHT
        rollout.begin()
        return await _execute(args, rollout, autostart=False)
    finally:
        lock.release()


async def _preflight_or_refuse(rollout: Rollout) -> bool:
    from segtui.rollout.preflight import preflight

    result = await preflight(rollout.ctx)
    if result.ok:
        rollout.expected_upgrades = {a.name: len(a.path) for a in result.appliances}
        return True
    for a in result.appliances:
        if not a.ok:
            err(f"pre-flight: {a.name}: {a.problem}")
    for url, state in result.manifests.items():
        if state != "ok":
            err(f"pre-flight: manifest {url}: {state}")
    err("pre-flight refused: nothing was changed")
    return False


async def cmd_resume(args: argparse.Namespace) -> int:
    from segtui.errors import InputError
    from segtui.rollout.engine import Rollout
    from segtui.rollout.journal import Journal

    settings = _settings(args)
    inventory = _inventory(args.inventory)
    lock = _lock(settings, inventory, "resume")
    try:
        journal = Journal(settings.state_dir / "journal.sqlite")
        found = journal.unfinished(str(inventory.path))
        if found is None:
            raise InputError([f"{inventory.path}: no interrupted rollout to resume in {settings.state_dir}"])
        rollout_id, target, saved = found
        saved_settings = saved.pop("_settings", None)
        if saved_settings:
            settings = settings.model_validate(saved_settings)
        options = _options(args, settings, saved)
        rollout = Rollout(inventory, settings, _target(target), journal, options, exit_on_pause=args.headless)
        rollout.attach(rollout_id)
        return await _execute(args, rollout, autostart=True)
    finally:
        lock.release()


async def cmd_demo(args: argparse.Namespace) -> int:
    from segtui.errors import InputError
    from segtui.rollout.engine import Rollout
    from segtui.rollout.journal import Journal
    from segtui.sim.fleet import FaultSpecError, SimFleet, parse_faults
    from segtui.sim.model import NEWEST, vdotted

    if args.time_scale <= 0:
        raise InputError(["--time-scale: must be > 0"])
    try:
        fleet = SimFleet(args.appliances, time_scale=args.time_scale, faults=parse_faults(args.faults), seed=args.seed)
    except (FaultSpecError, ValueError) as exc:
        raise InputError([str(exc)]) from None
    os.environ.setdefault(fleet.password_env, fleet.password)
    await fleet.start()
    try:
        base = _settings(args)
        settings = base.scaled(args.time_scale).model_copy(update={"state_dir": fleet.workdir / "state"})
        if args.max_unavailable is None:
            args.max_unavailable = max(2, args.appliances // 8)
        if args.max_fail is None and args.faults:
            args.max_fail = "50%"
        inventory = _inventory(fleet.inventory_path)
        options = _options(args, settings)
        journal = Journal(settings.state_dir / "journal.sqlite")
        rollout = Rollout(inventory, settings, _target(vdotted(NEWEST)), journal, options, exit_on_pause=args.headless)
        if args.headless:
            print("\n".join(fleet.summary()[:4]), flush=True)
        rollout.begin()
        # The journal keeps the scaled settings so `segtui resume` continues at the same pace.
        return await _execute(args, rollout, autostart=False, sim=fleet)
    finally:
        await fleet.stop()
