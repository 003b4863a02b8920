"""`segtui run`, `resume` and `watch`, and what they share with `demo`: gates, the run itself, the report."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from segtui.commands.common import (
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
    from segtui.rollout.journal import operator

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
        rollout.begin(who=operator())
        return await execute(args, rollout, autostart=False)
    finally:
        held.release()


async def preflight_or_refuse(rollout: Rollout) -> bool:
    from segtui.rollout.preflight import preflight

    result = await preflight(rollout.ctx)
    if result.ok:
        return True
    for a in result.appliances:
        if not a.ok:
            err(f"pre-flight: {a.name}: {a.problem}")
    for url, state in result.manifests.items():
        if state != "ok":
            err(f"pre-flight: manifest {url}: {state}")
    err("pre-flight refused: nothing was changed")
    return False


def refuse_if_aborted(journal: Journal, inventory: Inventory, args: argparse.Namespace) -> None:
    """Abort is final: `resume` of an aborted rollout says who aborted it and when, and starts nothing. The
    journal's abort action decides, even when segtui died before the rollout was marked aborted."""
    last = journal.last_rollout(str(inventory.path))
    if last is None:
        return
    aborts = [(who, ts) for ts, who, action, _ in journal.actions_of(last.id) if action == "abort"]
    if last.outcome != "aborted" and not aborts:
        return
    who, when = last.ended_by or (aborts[0] if aborts else ("?", last.finished or last.started))
    raise InputError(
        [
            f"{inventory.path}: rollout {last.id} to {last.target} was aborted by {who} at {iso(when)}; abort is "
            f"final, nothing was started (`segtui run --inventory {args.inventory} --target {last.target}` starts "
            "a new rollout)"
        ]
    )


async def resume(args: argparse.Namespace) -> int:
    from segtui.rollout.engine import Rollout
    from segtui.rollout.journal import operator

    settings, inventory = load(args)
    production_gate(args, inventory)
    who = operator()
    held = lock(settings, inventory, "resume")
    try:
        journal = open_journal(settings)
        refuse_if_aborted(journal, inventory, args)
        found = journal.unfinished(str(inventory.path))
        if found is None:
            raise InputError([f"{inventory.path}: no interrupted rollout to resume in {settings.state_dir}"])
        rollout_id, version, saved = found
        saved_settings = saved.get("_settings")
        if saved_settings:  # a demo's scaled deadlines: the resumed rollout keeps its pace
            settings = settings.model_validate({**saved_settings, "state_dir": settings.state_dir})
        old_budget = saved.get("max_fail")
        opts = options(args, settings, saved)
        rollout = Rollout(inventory, settings, target(version), journal, opts, exit_on_pause=args.headless)
        if args.readonly:
            # Read-only changes nothing, the journal included: the interrupted rollout is shown as it was left.
            rollout.review(rollout_id)
            return await execute(args, rollout, autostart=False)
        rollout.attach(rollout_id, who)
        if args.max_fail and args.max_fail != old_budget:
            journal.action("raise-budget", f"--max-fail {old_budget} -> {args.max_fail}", who)
            journal.update_options({**saved, "max_fail": args.max_fail})
        if args.until:
            rollout.set_until(opts.until, who)
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
    from segtui.rollout.events import Outcome
    from segtui.rollout.notify import Notifier
    from segtui.rollout.report import build_report, report_paths, write_report

    urls = list(dict.fromkeys([*rollout.settings.notify.urls, *args.notify]))
    notifier = Notifier.for_rollout(rollout, urls) if urls else None
    try:
        if args.headless:
            from segtui.headless import HeadlessPrinter

            printer = HeadlessPrinter(rollout, json_lines=args.json_lines)
            outcome = Outcome(await rollout.run(autostart=True))
            printer.finish(outcome)
        else:
            from segtui.tui.app import run_dashboard

            shown = await run_dashboard(rollout, readonly=args.readonly, autostart=autostart, sim=sim)
            outcome = Outcome(shown) if shown in set(Outcome) else rollout.outcome()
    finally:
        await rollout.ctx.connections.close()  # the survey's and the pre-flight's, if the rollout never ran
        if notifier is not None:
            await notifier.close()
    report = build_report(rollout, outcome, notifier=notifier)
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
    say(f"outcome: {outcome.value}")
    return outcome.exit_code


async def watch(args: argparse.Namespace) -> int:
    """The dashboard of a rollout another segtui drives, fed from the journal alone (read-only, no SSH)."""
    from segtui.rollout.journal import JOURNAL_FILE

    settings, inventory = load(args)
    try:
        from segtui.tui.watch import run_watch  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise InputError(["watch: this build has no watch dashboard"]) from None
    result: int = await run_watch(settings.state_dir / JOURNAL_FILE, inventory, settings)
    return result
