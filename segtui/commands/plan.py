"""`segtui check`, `plan` and `prepare`: read the fleet, change nothing (text comes from `rollout/render.py`)."""

from __future__ import annotations

import argparse
from typing import Any

from segtui.commands.common import EXIT_FAILED, EXIT_OK, EXIT_PREFLIGHT, load, open_journal, options, target
from segtui.console import say
from segtui.errors import InputError


async def check_plan(args: argparse.Namespace) -> int:
    from segtui.rollout.context import RolloutContext
    from segtui.rollout.preflight import plan_batches, preflight
    from segtui.rollout.render import render_plan, render_preflight

    settings, inventory = load(args)
    version = target(args.target)
    ctx = RolloutContext(inventory, settings, version, open_journal(settings), lambda e: None)
    if args.command == "check":
        result = await preflight(ctx)
        say("\n".join(render_preflight(result, version)))
        return EXIT_OK if result.ok else EXIT_PREFLIGHT
    opts = options(args, settings)
    checks = None if args.offline else {a.name: a for a in (await preflight(ctx)).appliances}
    batches = plan_batches(ctx, opts)
    say("\n".join(render_plan(ctx, opts, batches, checks)))
    say(window_line(args, settings, inventory, opts, batches))
    return EXIT_OK


def window_line(args: argparse.Namespace, settings: Any, inventory: Any, opts: Any, batches: list[list[str]]) -> str:
    """How long the plan takes at the expected time per appliance, and how many windows of `--window` it needs."""
    from segtui.rollout.window import fleet_duration, parse_duration, windows_needed

    groups = {a.name: a.group for a in inventory.appliances}
    per = settings.window.estimate
    total = fleet_duration(batches, groups, opts.max_unavailable, opts.concurrency, per)
    line = f"\nexpected duration: about {total / 3600:.1f} h at {per / 60:.0f} min per appliance (window.estimate)"
    if getattr(args, "window", None):
        length = parse_duration(args.window.lstrip("+"), "--window")
        line += f"; {windows_needed(total, length)} window(s) of {args.window.lstrip('+')}"
    return line


async def prepare(args: argparse.Namespace) -> int:
    if args.unpack:
        return unpack(args)
    if args.inventory is None or args.target is None:
        raise InputError(["prepare: needs --inventory FILE --target VERSION (or --unpack ZIP... --into DIR)"])
    from segtui.rollout.context import RolloutContext
    from segtui.rollout.preflight import prepare as prepare_fleet
    from segtui.rollout.render import render_prepare

    settings, inventory = load(args)
    version = target(args.target)
    ctx = RolloutContext(inventory, settings, version, open_journal(settings), lambda e: None)
    prepared = await prepare_fleet(ctx)
    say("\n".join(render_prepare(prepared, inventory.name, inventory.update_server, version)))
    return EXIT_OK if prepared.ready else EXIT_FAILED


def unpack(args: argparse.Namespace) -> int:
    from segtui.textsafe import one_line
    from segtui.updates.bundle import BundleError
    from segtui.updates.bundle import unpack as unpack_bundle

    if args.into is None:
        raise InputError(["--unpack: needs --into DIR (the update server's root)"])
    missing: list[str] = []
    for archive in args.unpack:
        try:
            result = unpack_bundle(archive, args.into)
        except BundleError as exc:
            raise InputError([str(exc)]) from None
        manifests = ", ".join(one_line(p.name) for p in result.manifests) or "none"
        say(f"{archive}: {len(result.files)} files, manifests: {manifests}")
        missing += result.missing_images
    for image in missing:
        say(f"MISSING image referenced by a manifest: {one_line(image)}")
    return EXIT_OK if not missing else EXIT_FAILED
