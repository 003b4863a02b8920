"""AsyncOS version numbers and build tags (`phoebe-15-0-0-104` <-> `15.0.0-104`), ordered."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import total_ordering

_VERSION_RE = re.compile(r"^\s*(\d+)\.(\d+)\.(\d+)-(\d+)\s*$")
_TAG_RE = re.compile(r"^\s*(phoebe|zeus|coeus)-(\d+)-(\d+)-(\d+)-(\d+)\s*$")


class VersionError(ValueError):
    """A string is not an AsyncOS version or build tag."""


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    major: int
    minor: int
    patch: int
    build: int

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse `15.0.0-104` or a tag `phoebe-15-0-0-104`."""
        m = _VERSION_RE.match(text)
        if m:
            return cls(*(int(g) for g in m.groups()))
        t = _TAG_RE.match(text)
        if t:
            return cls(*(int(g) for g in t.groups()[1:]))
        raise VersionError(f"not an AsyncOS version: {text!r} (expected like 15.0.0-104)")

    @classmethod
    def from_build(cls, dotted: str, build: str) -> Version:
        """From the `15.5.1 build 055` form of the `Upgrades available.` list."""
        return cls.parse(f"{dotted}-{int(build)}")

    def tag(self, product: str = "phoebe") -> str:
        # Cisco pads the build to three digits in tags (phoebe-14-2-1-015).
        return f"{product}-{self.major}-{self.minor}-{self.patch}-{self.build:03d}"

    def _key(self) -> tuple[int, int, int, int]:
        return (self.major, self.minor, self.patch, self.build)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}-{self.build:03d}"


def next_hop(offers: Iterable[Version], target: Version, current: Version | None = None) -> Version | None:
    """The target if it is offered; else the newest offer between `current` and the target (a hop)."""
    offered = set(offers)
    if target in offered:
        return target
    return max((v for v in offered if v < target and (current is None or current < v)), default=None)
