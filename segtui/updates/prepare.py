"""Before the window: what to ask fetch_manifest for, and whether the update server holds it all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx

from segtui.asyncos.parsers import VersionInfo
from segtui.asyncos.versions import Version
from segtui.updates.manifest import (
    MAX_HOPS,
    WALK_DEADLINE,
    Finding,
    PathReport,
    shown_url,
    transfer_problem,
    walk_paths,
)

IMAGE_DEADLINE = 15.0  # per image, HEAD and ranged GET together, whatever the server does
MAX_IMAGES_PER_MANIFEST = 8  # distinct image URLs checked per manifest; the rest are counted, not requested
IMAGE_CONCURRENCY = 4  # image checks under way at once
SERVER_DEADLINE = 120.0  # the whole server check: manifest walk and every image together


@dataclass
class BaseRelease:
    """Appliances on one base version: one fetch_manifest request, one manifest on the server."""

    version: Version
    serials: list[tuple[str, str]] = field(default_factory=list)  # (appliance, serial) of physical ones
    virtual: list[tuple[str, str, str]] = field(default_factory=list)  # (appliance, VLN, model)

    @property
    def tag(self) -> str:
        return self.version.tag()

    @property
    def count(self) -> int:
        return len(self.serials) + len(self.virtual)


def group_by_base(infos: Mapping[str, VersionInfo], target: Version) -> list[BaseRelease]:
    """One fetch_manifest request per distinct version below the target, oldest first."""
    bases: dict[Version, BaseRelease] = {}
    for name, info in sorted(infos.items()):
        if info.version >= target:
            continue
        base = bases.setdefault(info.version, BaseRelease(info.version))
        if info.vln:
            base.virtual.append((name, info.vln, info.model or "?"))
        else:
            base.serials.append((name, info.serial or "?"))
    return [bases[v] for v in sorted(bases)]


@dataclass
class Missing:
    """Something the update server certainly lacks."""

    what: str
    url: str
    problem: str


@dataclass
class ServerCheck:
    """What `prepare` found on the update server for every base release."""

    reports: dict[Version, PathReport]
    missing: list[Missing] = field(default_factory=list)
    images_ok: list[tuple[Version | None, str]] = field(default_factory=list)  # (version, url) that answered
    notes: list[str] = field(default_factory=list)  # warnings: check by hand

    @property
    def ready(self) -> bool:
        return not self.missing

    @property
    def warnings(self) -> list[Finding]:
        return [f for r in self.reports.values() for f in r.warnings]


def image_url(server: str, image: str) -> str:
    """Absolute URLs as they are; paths relative to the update server's root (where AsyncOS fetches images)."""
    if "://" in image:
        return image
    return f"{server.rstrip('/')}/{image.removeprefix('./').lstrip('/')}"


async def _answers(client: httpx.AsyncClient, url: str, timeout: float) -> str | None:
    try:
        head = await client.head(url, timeout=timeout)
        if head.status_code == 200:
            return None
        if head.status_code in (404, 410):
            return f"HTTP {head.status_code}"
        # Some servers refuse HEAD: ask for one byte, read only the status line and headers, never the body
        # (a server that ignores Range would otherwise send the whole image).
        async with client.stream("GET", url, headers={"Range": "bytes=0-0"}, timeout=timeout) as resp:
            return None if resp.status_code in (200, 206) else f"HTTP {resp.status_code}"
    except httpx.TimeoutException:
        return f"timed out after {timeout:g} s"
    except Exception as exc:  # whatever the URL or the network does (httpx, anyio, the socket layer)
        return f"unreachable: {transfer_problem(exc)}"


async def check_image(client: httpx.AsyncClient, url: str, deadline: float = IMAGE_DEADLINE) -> str | None:
    """None when the image answers (HEAD, else a one-byte ranged GET); else why not. Bounded in time and bytes."""
    try:
        async with asyncio.timeout(deadline):
            return await _answers(client, url, deadline)
    except TimeoutError:
        return f"timed out after {deadline:g} s"


async def check_server(
    client: httpx.AsyncClient,
    server: str,
    bases: Iterable[Version],
    target: Version,
    *,
    max_hops: int = MAX_HOPS,
    image_deadline: float = IMAGE_DEADLINE,
    max_images: int = MAX_IMAGES_PER_MANIFEST,
    concurrency: int = IMAGE_CONCURRENCY,
    deadline: float = SERVER_DEADLINE,
) -> ServerCheck:
    """Every needed manifest present and safe; the image references found for each step of the way answer.

    Uses the same hop walk as the pre-flight, so `check` and `prepare` cannot disagree about the way. Bounded
    whatever the server or its manifests do: at most `max_images` distinct images per manifest (the others are
    counted in a note), `concurrency` checks at once, and `deadline` for the walk and the images together
    (images not checked by then are missing: they could not be confirmed).
    """
    end = time.monotonic() + deadline
    walk_deadline = min(WALK_DEADLINE, deadline)
    result = ServerCheck(await walk_paths(client, server, bases, target, max_hops=max_hops, deadline=walk_deadline))
    todo: list[tuple[Version | None, str]] = []  # (step, url) in the order found
    seen: set[str] = set()
    for base, report in result.reports.items():
        if report.refused:
            url = report.findings[-1].url if report.findings else shown_url(server)
            result.missing.append(Missing(f"manifest for {base}", url, report.refused.split(": ", 1)[-1]))
            continue
        path = report.path or []
        for i, reading in enumerate(report.readings):
            # Reading i leads to step i of the path; past a known path (or with none), check all it names.
            step = path[i] if i < len(path) else None
            refs = reading.images_for(step) if step is not None else reading.images
            shown = shown_url(reading.url)
            if not refs:
                what = f" for {step}" if step is not None and reading.images else ""
                _note(result, f"no image reference{what} recognised in {shown}: check by hand")
                continue
            urls = list(dict.fromkeys(image_url(server, ref) for ref in refs))
            skipped = len(urls) - max_images
            if skipped > 0:
                _note(result, f"{shown} names {len(urls)} images; only the first {max_images} checked, {skipped} not")
            for url in urls[:max_images]:
                if url not in seen:
                    seen.add(url)
                    todo.append((step, url))
    outcomes: dict[str, str | None] = {}
    limit = asyncio.Semaphore(max(1, concurrency))

    async def one(url: str) -> None:
        async with limit:
            outcomes[url] = await check_image(client, url, image_deadline)

    tasks = [asyncio.ensure_future(one(url)) for _, url in todo]
    try:
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, end - time.monotonic()))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    unchecked = 0
    for step, url in todo:
        label = f"image {step}" if step is not None else "image"
        if url not in outcomes:
            unchecked += 1
            result.missing.append(Missing(label, shown_url(url), f"not checked: overall {deadline:g} s reached"))
        elif outcomes[url]:
            result.missing.append(Missing(label, shown_url(url), outcomes[url] or ""))
        else:
            result.images_ok.append((step, shown_url(url)))
    if unchecked:
        _note(
            result,
            f"the server check stopped at its overall deadline of {deadline:g} s: {unchecked} image(s) not checked",
        )
    return result


def _note(result: ServerCheck, note: str) -> None:
    if note not in result.notes:
        result.notes.append(note)
