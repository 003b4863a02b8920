"""What the commands share: settings, inventory, target, options, the journal and the inventory lock."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segtui.errors import InputError

if TYPE_CHECKING:
    from segtui.asyncos.versions import Version
    from segtui.inventory import Inventory
    from segtui.rollout.engine import RolloutOptions
    from segtui.rollout.journal import Journal
    from segtui.rollout.lock import InventoryLock
    from segtui.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_PREFLIGHT = 0, 1, 2, 3

# Where the journal of this process lives, for the last-resort error line in `segtui.cli.main`.
STATE: dict[str, Path] = {}


def settings_for(args: argparse.Namespace, inventory: Inventory | None = None, **overrides: Any) -> Settings:
    """Settings from --config / segtui.toml / SEGTUI_*; the state directory beside the inventory by default."""
    from segtui.settings import load_settings

    settings = load_settings(args.config, **overrides)
    if inventory is not None:
        settings = settings.beside(inventory.path)
    STATE["state_dir"] = settings.state_dir
    return settings


def load(args: argparse.Namespace) -> tuple[Settings, Inventory]:
    """The inventory of `--inventory` and the settings that go with it."""
    from segtui.inventory import load_inventory

    inventory = load_inventory(args.inventory)
    return settings_for(args, inventory), inventory


def target(text: str) -> Version:
    from segtui.asyncos.versions import Version, VersionError

    try:
        return Version.parse(text)
    except VersionError as exc:
        raise InputError([f"--target: {exc}"]) from None


def positive(value: int | None, flag: str) -> None:
    if value is not None and value < 1:
        raise InputError([f"{flag}: must be at least 1"])


def options(args: argparse.Namespace, settings: Settings, saved: dict[str, Any] | None = None) -> RolloutOptions:
    """Rollout options from the command line over the saved ones (resume) or the settings' defaults."""
    from segtui.rollout.batches import parse_batch_spec, parse_failure_budget
    from segtui.rollout.engine import RolloutOptions

    known = set(RolloutOptions.__dataclass_fields__)
    base = (
        RolloutOptions(**{k: v for k, v in saved.items() if k in known})
        if saved
        else RolloutOptions(max_unavailable=settings.max_unavailable, concurrency=settings.concurrency)
    )
    if getattr(args, "batch", None):
        parse_batch_spec(args.batch)
        base.batch = args.batch
    if getattr(args, "max_fail", None):
        parse_failure_budget(args.max_fail)
        base.max_fail = args.max_fail
    positive(getattr(args, "max_unavailable", None), "--max-unavailable")
    if getattr(args, "max_unavailable", None) is not None:
        base.max_unavailable = args.max_unavailable
    positive(getattr(args, "concurrency", None), "--concurrency")
    if getattr(args, "concurrency", None) is not None:
        base.concurrency = args.concurrency
    urls = [*settings.notify.urls, *(getattr(args, "notify", None) or [])]
    if urls:
        from segtui.rollout.notify import check_urls

        if problems := check_urls(urls):
            raise InputError(problems)
    if getattr(args, "pause_on_failure", False):
        base.pause_on_failure = True
    if getattr(args, "bake", None) is not None:
        from segtui.rollout.window import parse_duration

        base.bake = parse_duration(args.bake, "--bake", zero=True)
    if getattr(args, "peer_queue_max", None) is not None:
        if args.peer_queue_max < 0:
            raise InputError(["--peer-queue-max: must be 0 or more"])
        base.peer_queue_max = args.peer_queue_max
    until, source = getattr(args, "until", None), "--until"
    if not until and not saved and "until" in vars(args) and settings.window.end:
        until, source = settings.window.end, "window.end"
    if until:
        from segtui.rollout.window import parse_until

        base.until = parse_until(until, source=source)
    return base


def state_dir_ready(settings: Settings) -> Path:
    """The state directory, created owner-only (refused when it is not ours); a mistyped path is not created."""
    from segtui.rollout.journal import ensure_state_dir

    path = settings.state_dir
    if not path.exists() and not path.parent.is_dir():
        raise InputError([f"state_dir {path}: its parent {path.parent} does not exist"])
    if path.exists() and not path.is_dir():
        raise InputError([f"state_dir {path}: exists and is not a directory"])
    ensure_state_dir(path)
    STATE["state_dir"] = path
    return path


def open_journal(settings: Settings) -> Journal:
    """The one journal of the state directory (a damaged one is refused in one line, with what to do)."""
    from segtui.rollout.journal import Journal

    journal = Journal.in_dir(state_dir_ready(settings))
    STATE["journal"] = journal.path
    return journal


def lock(settings: Settings, inventory: Inventory, command: str) -> InventoryLock:
    from segtui.rollout.lock import InventoryLock, LockHeld

    state_dir_ready(settings)
    held = InventoryLock(settings.state_dir, inventory.path, command)
    try:
        held.acquire()
    except LockHeld as exc:
        raise InputError([str(exc)]) from None
    except OSError as exc:
        raise InputError([f"lock {held.path}: {exc.strerror or exc}"]) from None
    return held
