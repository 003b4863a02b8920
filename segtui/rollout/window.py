"""The maintenance window: `--until` parsed (HH:MM local, ISO date-time, +2h/+90m/+45s) into an epoch end; durations
(`--bake 10m`, `plan --window 4h`) parsed in one place."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

from segtui.errors import InputError

_DURATION = re.compile(r"(?:(\d{1,4})h)?(?:(\d{1,5})m)?(?:(\d{1,7})s)?", re.ASCII)
_SECONDS = re.compile(r"\d{1,7}", re.ASCII)
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)", re.ASCII)


def parse_duration(text: str, source: str, *, zero: bool = False) -> float:
    """Seconds from `90s`, `10m`, `2h`, `1h30m` or plain seconds (`600`); `zero` allows `0` (turns a thing off)."""
    item = text.strip()
    parts = _DURATION.fullmatch(item)
    if _SECONDS.fullmatch(item):
        seconds = int(item)
    elif parts and any(parts.groups()):
        h, m, s = (int(g) if g else 0 for g in parts.groups())
        seconds = h * 3600 + m * 60 + s
    else:
        raise InputError([f"{source}: {item!r} is not a duration (90s, 10m, 2h, 1h30m, or seconds)"])
    if seconds <= 0 and not zero:
        raise InputError([f"{source}: {item!r} is no time at all; give a duration above zero"])
    return float(seconds)


def parse_until(text: str, now: float | None = None, source: str = "--until") -> float:
    """The window's end as epoch seconds; `HH:MM` already past today means tomorrow (a window crossing midnight)."""
    now = time.time() if now is None else now
    item = text.strip()
    if item.startswith("+"):
        try:
            return now + parse_duration(item[1:], source)
        except InputError:
            raise InputError([f"{source}: {item!r} is not a time in the future (+2h, +90m, +45s, +1h30m)"]) from None
    clock = _CLOCK.fullmatch(item)
    if clock:
        base = datetime.fromtimestamp(now).astimezone()
        end = base.replace(hour=int(clock.group(1)), minute=int(clock.group(2)), second=0, microsecond=0)
        if end.timestamp() <= now:
            end = (base + timedelta(days=1)).replace(
                hour=int(clock.group(1)), minute=int(clock.group(2)), second=0, microsecond=0
            )
        return end.timestamp()
    try:
        when = datetime.fromisoformat(item)
    except ValueError:
        raise InputError(
            [f"{source}: {item!r} is not a time (HH:MM, an ISO date-time like 2026-03-01T05:00, or +2h / +90m / +45s)"]
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    stamp = when.timestamp()
    if stamp <= now:
        raise InputError([f"{source}: {item!r} is in the past"])
    return stamp


def clock_text(epoch: float) -> str:
    """`05:00`, or `Mar 02 05:00` when the end is not today."""
    when = time.localtime(epoch)
    if time.strftime("%Y-%m-%d", when) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M", when)
    return time.strftime("%b %d %H:%M", when)


def fleet_duration(
    batches: list[list[str]], groups: dict[str, str], max_unavailable: int, concurrency: int, per_appliance: float
) -> float:
    """Expected seconds for the whole plan: batches run one after another; within a batch an appliance waits for
    a free slot of its capacity group (`max_unavailable`) and of the concurrency cap, each slot taking
    `per_appliance` seconds."""
    total = 0.0
    for batch in batches:
        per_group: dict[str, int] = {}
        for name in batch:
            per_group[groups.get(name, "")] = per_group.get(groups.get(name, ""), 0) + 1
        waves = max(
            max((-(-n // max(1, max_unavailable)) for n in per_group.values()), default=0),
            -(-len(batch) // max(1, concurrency)),
        )
        total += waves * per_appliance
    return total


def windows_needed(duration: float, window: float) -> int:
    """How many maintenance windows of `window` seconds a plan of `duration` seconds needs (at least one)."""
    return max(1, -(-int(duration) // max(1, int(window))))
