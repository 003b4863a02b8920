"""`segtui demo`: a simulated fleet and update server on loopback, then the rollout against it."""

from __future__ import annotations

import argparse
import os

from segtui.commands.common import EXIT_PREFLIGHT, open_journal, options, settings_for, target
from segtui.commands.rollout import execute, preflight_or_refuse
from segtui.errors import InputError


async def demo(args: argparse.Namespace) -> int:
    from segtui.inventory import load_inventory
    from segtui.rollout.engine import Rollout
    from segtui.rollout.journal import operator
    from segtui.sim.fleet import FaultSpecError, SimFleet, parse_faults
    from segtui.sim.model import NEWEST, vdotted

    if args.time_scale <= 0:
        raise InputError(["--time-scale: must be > 0"])
    if args.appliances < 1:
        raise InputError(["--appliances: must be at least 1"])
    try:
        fleet = SimFleet(args.appliances, time_scale=args.time_scale, faults=parse_faults(args.faults), seed=args.seed)
    except (FaultSpecError, ValueError) as exc:
        raise InputError([str(exc)]) from None
    os.environ.setdefault(fleet.password_env, fleet.password)
    base = settings_for(args)  # bad settings are refused before the fleet starts
    await fleet.start()
    try:
        settings = base.scaled(args.time_scale).model_copy(update={"state_dir": fleet.workdir / "state"})
        if args.max_unavailable is None:
            args.max_unavailable = max(2, args.appliances // 8)
        if args.max_fail is None and args.faults:
            args.max_fail = "50%"
        inventory = load_inventory(fleet.inventory_path)
        opts = options(args, settings)
        if opts.bake is not None:
            opts.bake *= args.time_scale  # a real appliance's bake, at the demo's pace like every other duration
        journal = open_journal(settings)
        version = target(vdotted(NEWEST))
        rollout = Rollout(inventory, settings, version, journal, opts, exit_on_pause=args.headless)
        if args.headless:
            print("\n".join(fleet.summary()[:4]), flush=True)
        # As `segtui run` does: the pre-flight reads every version and walks the manifests (the plan, the hard rule);
        # a fault it finds (auth-fail, garbled-version, no-manifest, ...) refuses the demo as it would a rollout.
        if not await preflight_or_refuse(rollout):
            return EXIT_PREFLIGHT
        rollout.begin(persist_settings=True, who=operator())  # `segtui resume` keeps the demo's time scale
        return await execute(args, rollout, autostart=False, sim=fleet)
    finally:
        await fleet.stop()
