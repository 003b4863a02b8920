"""`segtui history` and `segtui report`: the rollouts of an inventory, and the report of any of them again."""

from __future__ import annotations

import argparse

from segtui.commands.common import EXIT_OK, load, open_journal
from segtui.console import say
from segtui.errors import InputError


async def history(args: argparse.Namespace) -> int:
    from segtui.console import history_table

    settings, inventory = load(args)
    journal = open_journal(settings)
    rows = [
        {
            "id": r.id,
            "started": r.started,
            "target": r.target,
            "outcome": r.outcome,
            "counts": r.counts,
            "who": r.operator,
        }
        for r in sorted(journal.rollouts(str(inventory.path)), key=lambda r: r.id)
    ]
    if not rows:
        say(f"no rollouts of {inventory.path} in {settings.state_dir}")
        return EXIT_OK
    for line in history_table(rows):
        say(line)
    return EXIT_OK


async def report(args: argparse.Namespace) -> int:
    from segtui.rollout.report import report_from_journal, report_paths, rollout_ids, write_report

    settings, inventory = load(args)
    journal = open_journal(settings)
    ids = rollout_ids(journal, str(inventory.path))
    if not ids:
        raise InputError([f"{inventory.path}: no rollouts in {settings.state_dir}"])
    rollout_id = args.rollout if args.rollout is not None else ids[-1]
    if rollout_id not in ids:
        raise InputError([f"--rollout {rollout_id}: not a rollout of {inventory.path} (see `segtui history`)"])
    data = report_from_journal(journal, inventory, rollout_id, settings)
    json_path, md_path = report_paths(args.out)
    try:
        write_report(data, args.out)
    except OSError as exc:
        raise InputError([f"--out {args.out}: cannot write: {exc.strerror or exc}"]) from None
    say(f"report of rollout {rollout_id}: {json_path} and {md_path}")
    return EXIT_OK
