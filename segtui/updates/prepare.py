"""Before the window: what to ask fetch_manifest for, and whether the update server holds it all."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from segtui.asyncos.versions import Version
from segtui.updates.manifest import Manifest, ManifestError, fetch_manifest, manifest_url


@dataclass
class BaseRelease:
    """Appliances on one base version: one fetch_manifest request, one manifest on the server."""

    version: Version
    serials: list[tuple[str, str]] = field(default_factory=list)  # (appliance, serial) of physical ones
    virtual: list[tuple[str, str, str]] = field(default_factory=list)  # (appliance, VLN, model)

    @property
    def tag(self) -> str:
        return self.version.tag()


@dataclass
class Missing:
    what: str
    url: str
    problem: str


def _image_url(server: str, image: str) -> str:
    if image.startswith(("http://", "https://")):
        return image
    return f"{server.rstrip('/')}/{image.lstrip('/')}"


async def _reachable(client: httpx.AsyncClient, url: str) -> str | None:
    """None when the URL answers a one-byte range request (or a HEAD) with success."""
    try:
        resp = await client.get(url, headers={"Range": "bytes=0-0"}, timeout=15)
    except httpx.HTTPError as exc:
        return f"unreachable: {exc}"
    if resp.status_code in (200, 206):
        return None
    return f"HTTP {resp.status_code}"


async def check_server(
    client: httpx.AsyncClient, server: str, bases: list[Version], target: Version, max_hops: int = 4
) -> tuple[list[Missing], dict[Version, list[Version]]]:
    """Every needed manifest present, well-formed, leading to the target; every image it names reachable."""
    missing: list[Missing] = []
    paths: dict[Version, list[Version]] = {}
    manifests: dict[Version, Manifest | None] = {}

    async def manifest_for(base: Version) -> Manifest | None:
        if base not in manifests:
            url = manifest_url(server, base)
            try:
                manifests[base] = await fetch_manifest(client, url)
            except ManifestError as exc:
                manifests[base] = None
                missing.append(Missing(f"manifest {base.tag()}.xml", url, str(exc).split(": ", 1)[-1]))
        return manifests[base]

    checked_images: set[str] = set()
    for base in sorted(set(bases)):
        if base >= target:
            continue
        current, path = base, []
        for _ in range(max_hops):
            manifest = await manifest_for(current)
            if manifest is None:
                break
            release = manifest.next_release(current, target)
            if release is None:
                missing.append(
                    Missing(
                        f"path {base} -> {target}",
                        manifest.url,
                        f"offers {', '.join(str(v) for v in manifest.offers()) or 'nothing'}",
                    )
                )
                break
            nxt = release.version
            if release.image:
                url = _image_url(server, release.image)
                if url not in checked_images:
                    checked_images.add(url)
                    problem = await _reachable(client, url)
                    if problem:
                        missing.append(Missing(f"image {nxt}", url, problem))
            path.append(nxt)
            if nxt == target:
                paths[base] = path
                break
            current = nxt
    return missing, paths
