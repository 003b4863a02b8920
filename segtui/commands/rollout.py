"""`segtui run`, `resume` and `watch`, and what they share with `demo`: gates, the run itself, the report."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from segtui.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PREFLIGHT,
    load,
    lock,
    open_journal,
    options,
    target,
)
from segtui.console import err, iso, say
from segtui.errors import InputError

if TYPE_CHECKING:
    from segtui.inventory import Inventory
    from segtui.rollout.engine import Rollout
    from segtui.rollout.journal import Journal


def production_gate(args: argparse.Namespace, inventory: Inventory) -> None:
    """Headless `run`/`resume` on production need the fleet's name typed as `--confirm`: refuse at once otherwise."""
    if args.readonly and args.headless:
        raise InputError(["--readonly: shows the dashboard and changes nothing; it cannot be --headless"])
    if inventory.production and args.headless and args.confirm != inventory.name:
        given = "" if args.confirm is None else f" (--confirm {args.confirm!r} is not the fleet's name)"
        raise InputError(
            [f"{inventory.path}: production fleet: --headless {args.command} needs --confirm FLEETNAME{given}"]
        )


async def run(args: argparse.Namespace) -> int:
    from segtui.rollout.engine import Rollout

    settings, inventory = load(args)
    version = target(args.target)
    production_gate(args, inventory)
    opts = options(args, settings)
    held = lock(settings, inventory, "run")
    try:
        journal = open_journal(settings)
        if journal.unfinished(str(inventory.path)):
            raise InputError(
                [
                    f"{inventory.path}: an interrupted rollout exists; continue it with "
                    f"`segtui resume --inventory {args.inventory}`"
                ]
            )
        rollout = Rollout(inventory, settings, version, journal, opts, exit_on_pause=args.headless)
        if not await preflight_or_refuse(rollout):
            return EXIT_PREFLIGHT
        rollout.begin()
        return await execute(args, rollout, autostart=False)
    finally:
        held.release()


async def preflight_or_refuse(rollout: Rollout) -> bool:
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


def aborted_by(journal: Journal, rollout_id: int) -> tuple[str, float] | None:
    """Who aborted this rollout and when, if it was aborted (abort is final)."""
    row = journal.db.execute(
        "SELECT who, ts FROM actions WHERE rollout_id = ? AND action = 'abort' ORDER BY id LIMIT 1", (rollout_id,)
    ).fetchone()
    return (str(row[0]), float(row[1])) if row else None


def _latest(journal: Journal, inventory: str) -> tuple[int, str, str | None] | None:
    row = journal.db.execute(
        "SELECT id, target, outcome FROM rollouts WHERE inventory = ? ORDER BY id DESC LIMIT 1", (inventory,)
    ).fetchone()
    return (int(row[0]), str(row[1]), row[2]) if row else None


async def resume(args: argparse.Namespace) -> int:
    from segtui.rollout.engine import Rollout
    from segtui.rollout.journal import operator

    settings, inventory = load(args)
    production_gate(args, inventory)
    held = lock(settings, inventory, "resume")
    try:
        journal = open_journal(settings)
        latest = _latest(journal, str(inventory.path))
        if latest is not None:
            rollout_id, version, _outcome = latest
            abort = aborted_by(journal, rollout_id)
            if abort is not None:
                who, when = abort
                raise InputError(
                    [
                        f"{inventory.path}: rollout {rollout_id} to {version} was aborted by {who} at {iso(when)}; "
                        f"abort is final, nothing was started (`segtui run --inventory {args.inventory} "
                        f"--target {version}` starts a new rollout)"
                    ]
                )
        found = journal.unfinished(str(inventory.path))
        if found is None:
            raise InputError([f"{inventory.path}: no interrupted rollout to resume in {settings.state_dir}"])
        rollout_id, version, saved = found
        saved_settings = saved.pop("_settings", None)
        if saved_settings:
            settings = settings.model_validate({**saved_settings, "state_dir": settings.state_dir})
        old_budget = saved.get("max_fail")
        opts = options(args, settings, saved)
        rollout = Rollout(inventory, settings, target(version), journal, opts, exit_on_pause=args.headless)
        rollout.attach(rollout_id)
        if args.max_fail and args.max_fail != old_budget:
            journal.action("raise-budget", f"{old_budget} -> {args.max_fail}", operator())
        if rollout.budget_spent() and not args.readonly:
            raise InputError(
                [
                    f"{inventory.path}: failure budget spent ({rollout.failures()} failed, {opts.max_fail} allowed); "
                    f"nothing was started: raise it with `segtui resume --inventory {args.inventory} --max-fail N`"
                ]
            )
        # On production the operator passes the gate in the dashboard before anything moves; read-only never moves.
        autostart = args.headless or not (inventory.production or args.readonly)
        return await execute(args, rollout, autostart=autostart)
    finally:
        held.release()


async def execute(args: argparse.Namespace, rollout: Rollout, *, autostart: bool, sim: Any = None) -> int:
    """Run the rollout (headless or in the dashboard), notify, write the report; the exit code of the outcome."""
    from segtui.console import needs_a_person
    from segtui.rollout.notify import Notifier
    from segtui.rollout.report import EventLog, build_report, report_paths, write_report

    log = EventLog()
    rollout.subscribe(log.on_event)
    urls = list(dict.fromkeys([*rollout.settings.notify.urls, *args.notify]))
    notifier = Notifier.for_rollout(rollout, urls) if urls else None
    try:
        if args.headless:
            from segtui.headless import HeadlessPrinter

            printer = HeadlessPrinter(rollout, json_lines=args.json_lines)
            outcome = await rollout.run(autostart=True)
            printer.finish(outcome)
        else:
            from segtui.tui.app import run_dashboard

            outcome = await run_dashboard(rollout, readonly=args.readonly, autostart=autostart, sim=sim)
    finally:
        if notifier is not None:
            await notifier.close()
    report = build_report(rollout, outcome, notifier=notifier, events=log)
    if not args.headless:
        for line in needs_a_person(report["needs_a_person"]):
            say(line)
    if args.report:
        json_path, md_path = report_paths(args.report)
        try:
            write_report(report, args.report)
        except OSError as exc:
            err(f"--report {args.report}: cannot write: {exc.strerror or exc}; `segtui report` writes it again")
        else:
            say(f"report: {json_path} and {md_path}")
    say(f"outcome: {outcome}")
    return exit_code(outcome, report)


def exit_code(outcome: str, report: dict[str, Any]) -> int:
    """0 only when every appliance was upgraded; the README's table says what each code means."""
    if outcome == "completed" and all(a["state"] == "done" for a in report["appliances"]):
        return EXIT_OK
    return EXIT_FAILED


async def watch(args: argparse.Namespace) -> int:
    settings, inventory = load(args)
    journal_path = settings.state_dir / "journal.sqlite"
    if not journal_path.is_file():
        raise InputError([f"{inventory.path}: no journal in {settings.state_dir}: nothing to watch yet"])
    open_journal(settings).close()  # one clear line if it is unreadable
    try:
        from segtui.tui import run_watch  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        raise InputError(["watch: this build has no watch dashboard"]) from None
    result = await run_watch(journal_path, inventory)
    return result if isinstance(result, int) else EXIT_OK
