"""`segtui history` and `segtui report`: the rollouts of an inventory, and the report of any of them again."""

from __future__ import annotations

import argparse

from segtui.commands.common import EXIT_OK, load, open_journal
from segtui.errors import InputError


async def history(args: argparse.Namespace) -> int:
    from segtui.console import history_table
    from segtui.rollout.report import report_from_journal, rollout_ids

    settings, inventory = load(args)
    journal = open_journal(settings)
    rows = []
    for rollout_id in rollout_ids(journal, str(inventory.path)):
        r = report_from_journal(journal, inventory, rollout_id)
        rows.append(
            {
                "id": rollout_id,
                "started": _epoch(r["started"]),
                "target": r["target"],
                "outcome": r["outcome"],
                "counts": r["counts"],
                "who": r["operator"],
            }
        )
    if not rows:
        print(f"no rollouts of {inventory.path} in {settings.state_dir}")
        return EXIT_OK
    for line in history_table(rows):
        print(line)
    return EXIT_OK


def _epoch(text: str | None) -> float | None:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp() if text else None


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
    data = report_from_journal(journal, inventory, rollout_id)
    json_path, md_path = report_paths(args.out)
    try:
        write_report(data, args.out)
    except OSError as exc:
        raise InputError([f"--out {args.out}: cannot write: {exc.strerror or exc}"]) from None
    print(f"report of rollout {rollout_id}: {json_path} and {md_path}")
    return EXIT_OK
