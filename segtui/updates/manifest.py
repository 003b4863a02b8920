"""Manifests on the local update server: fetched with bounds, parsed safely (no entities)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from xml.etree.ElementTree import Element

import httpx
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from segtui.asyncos.versions import Version, VersionError, next_hop

MAX_MANIFEST_BYTES = 1024 * 1024


class ManifestError(Exception):
    """A manifest is missing, too large, slow, not well-formed or not ours."""


@dataclass(frozen=True)
class Release:
    version: Version
    image: str | None
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class Manifest:
    url: str
    base: Version | None
    releases: tuple[Release, ...]

    def offers(self) -> list[Version]:
        return sorted(r.version for r in self.releases)

    def next_release(self, current: Version, target: Version) -> Release | None:
        """The release to install from `current` on the way to `target` (the target itself, or a hop)."""
        version = next_hop((r.version for r in self.releases), target, current)
        return next((r for r in self.releases if r.version == version), None)


def parse_manifest(url: str, body: bytes) -> Manifest:
    """Our manifest shape: <manifest from="15.0.0-104"><release version=".." image=".." .../></manifest>.

    Cisco's schema is not public; only well-formedness is required of other shapes.
    """
    try:
        root: Element = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ManifestError(f"{url}: refused unsafe XML ({type(exc).__name__})") from None
    except SafeET.ParseError as exc:
        raise ManifestError(f"{url}: not well-formed XML: {exc}") from None
    base = None
    if root.get("from"):
        try:
            base = Version.parse(root.get("from", ""))
        except VersionError as exc:
            raise ManifestError(f"{url}: {exc}") from None
    releases = []
    for item in root.iter("release"):
        try:
            version = Version.parse(item.get("version", ""))
        except VersionError as exc:
            raise ManifestError(f"{url}: release: {exc}") from None
        size = item.get("size")
        releases.append(
            Release(version, item.get("image"), int(size) if size and size.isdigit() else None, item.get("sha256"))
        )
    return Manifest(url, base, tuple(releases))


async def fetch_bounded(
    client: httpx.AsyncClient, url: str, limit: int = MAX_MANIFEST_BYTES, timeout: float = 15.0
) -> bytes:
    """GET with a byte limit and an overall deadline: a hostile server cannot stall or flood us."""
    try:
        async with client.stream("GET", url, timeout=httpx.Timeout(timeout)) as resp:
            if resp.status_code != 200:
                raise ManifestError(f"{url}: HTTP {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise ManifestError(f"{url}: {declared} bytes is more than the {limit} allowed")
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ManifestError(f"{url}: more than {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.TimeoutException:
        raise ManifestError(f"{url}: timed out") from None
    except httpx.HTTPError as exc:
        raise ManifestError(f"{url}: {exc}") from None


async def fetch_manifest(client: httpx.AsyncClient, url: str, timeout: float = 15.0) -> Manifest:
    try:
        async with asyncio.timeout(timeout):
            body = await fetch_bounded(client, url, timeout=timeout)
    except TimeoutError:
        raise ManifestError(f"{url}: timed out after {timeout:g} s") from None
    return parse_manifest(url, body)


def manifest_url(update_server: str, base: Version) -> str:
    return f"{update_server.rstrip('/')}/asyncos/{base.tag()}.xml"


async def path_to_target(
    client: httpx.AsyncClient, update_server: str, base: Version, target: Version, max_hops: int = 4
) -> list[Version]:
    """The versions to step through from `base` to `target` per the manifests (empty if unreachable)."""
    path: list[Version] = []
    current = base
    for _ in range(max_hops):
        release = (await fetch_manifest(client, manifest_url(update_server, current))).next_release(current, target)
        if release is None:
            return []
        path.append(release.version)
        if release.version == target:
            return path
        current = release.version
    return []
