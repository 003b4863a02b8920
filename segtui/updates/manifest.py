"""Manifests on the local update server: fetched with bounds, parsed safely, read best-effort whatever their shape."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal
from xml.etree.ElementTree import Element

import httpx
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from segtui.asyncos.versions import Version, next_hop
from segtui.textsafe import one_line, redact_url

MAX_MANIFEST_BYTES = 1024 * 1024
MANIFEST_DEADLINE = 15.0
MAX_HOPS = 4
# The whole walk (every base release, every hop): a server answering each request just inside its own deadline
# cannot make `check`, `plan` or `prepare` wait bases x hops x 15 s.
WALK_DEADLINE = 60.0


class ManifestError(Exception):
    """A manifest is certainly unusable: missing, too large, too slow, not well-formed or unsafe XML."""


def shown_url(url: str) -> str:
    """A URL as it may be printed or stored: credentials masked, control characters gone, one line."""
    return one_line(redact_url(url), 300)


# --- versions anywhere ---------------------------------------------------------------------------
# Cisco's manifest schema is not public, so versions are looked for in every attribute, text and tag.
# Major, minor and patch have at most two digits and the major is not 0: a date (2024-03-01, four digits
# first) or an IPv4 address (no build part, or a three-digit first octet) is not read as a version.
# Lookarounds keep a candidate from starting or ending inside a longer run of numbers. All patterns are
# linear: no nested quantifiers.
_N = r"[1-9][0-9]?"
_M = r"[0-9]{1,2}"
_B = r"[0-9]{1,4}"
_VERSION_PATTERNS = (
    # 16.0.0-123, 16.0.0_123
    re.compile(rf"(?<![0-9.])({_N})\.({_M})\.({_M})[-_]({_B})(?![0-9])(?![.-][0-9])", re.ASCII),
    # 16-0-0-123, phoebe-16-0-0-123, 16_0_0_123
    re.compile(
        rf"(?<![0-9])(?<![0-9][-_.])({_N})([-_])({_M})\2({_M})\2({_B})(?![0-9])(?![-_.][0-9])",
        re.ASCII,
    ),
    # 16.0.0 build 123, 16.0.0-build-123, 16.0.0 (build 123), 16.0.0b123
    re.compile(
        rf"(?<![0-9.])({_N})\.({_M})\.({_M})(?![.][0-9])[\s(_-]{{0,3}}(?:build|bld|b)[\s:#_-]{{0,3}}({_B})(?![0-9])",
        re.ASCII | re.IGNORECASE,
    ),
)


_TWO_DIGITS_APART = re.compile(r"[0-9][^0-9]{1,3}[0-9]", re.ASCII)


def scan_versions(text: str) -> set[Version]:
    """Every AsyncOS version written anywhere in `text`, in any of the usual spellings; never raises."""
    found: set[Version] = set()
    if not _TWO_DIGITS_APART.search(text):  # most texts cannot hold a version: skip the patterns
        return found
    for pattern in _VERSION_PATTERNS:
        for m in pattern.finditer(text):
            numbers = [g for g in m.groups() if g not in ("-", "_")]
            found.add(Version(*(int(n) for n in numbers)))
    return found


# --- image references ----------------------------------------------------------------------------
_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]{0,20}://[^\s/]+(?:/\S*)?$", re.IGNORECASE | re.ASCII)
_IMAGE_SUFFIXES = (
    ".img", ".bin", ".image", ".tgz", ".tar", ".gz", ".xz", ".bz2", ".zip", ".pkg", ".iso", ".raw", ".qcow2", ".ova",
)  # fmt: skip
_SPACE_RE = re.compile(r"\s")
_NUMERIC_PATH_RE = re.compile(r"^[0-9/.:\s-]+$")


def _reference(value: str) -> str | None:
    """`value` if it looks like a URL or a file path or name; None for words, numbers, dates, media types."""
    value = value.strip()
    if not value or len(value) > 2048 or _SPACE_RE.search(value):
        return None
    if _URL_RE.match(value):
        return value
    last = value.rstrip("/").rsplit("/", 1)[-1]
    if "/" in value:
        # `application/octet-stream` is a media type and `10.0.0.0/8` a network, not paths: a path starts
        # with / or ./ or ends in a file name.
        if _NUMERIC_PATH_RE.match(value):
            return None
        return value if value.startswith(("/", "./")) or "." in last else None
    lowered = last.lower()
    if any(lowered.endswith(s) and len(lowered) > len(s) for s in _IMAGE_SUFFIXES):
        return value
    return None


# --- the reading ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManifestReading:
    """What could be read from one manifest, whatever its shape."""

    url: str
    versions: frozenset[Version]
    images: tuple[str, ...]
    # Parallel to `images`: the version each reference belongs to, when the manifest makes it clear
    # (the reference names it, or its element or that element's parent names exactly one version).
    image_versions: tuple[Version | None, ...] = field(default=(), compare=False)

    def images_for(self, version: Version) -> tuple[str, ...]:
        """The image references for `version`; else those that belong to no version in particular."""
        pairs = list(zip(self.images, self.image_versions or (None,) * len(self.images), strict=True))
        own = tuple(ref for ref, v in pairs if v == version)
        return own or tuple(ref for ref, v in pairs if v is None)


def _local_texts(el: Element) -> Iterator[tuple[str, bool]]:
    """(text, may be a reference) for an element's own tag, attribute names and values, and text."""
    tag = el.tag if isinstance(el.tag, str) else ""
    yield tag.rsplit("}", 1)[-1], False
    for key, value in el.attrib.items():
        yield key.rsplit("}", 1)[-1], False
        yield value, True
    if el.text and el.text.strip():
        yield el.text.strip(), True
    for child in el:  # mixed content: text after a child belongs to this element
        if child.tail and child.tail.strip():
            yield child.tail.strip(), True


def _local_versions(el: Element) -> set[Version]:
    out: set[Version] = set()
    for text, _ in _local_texts(el):
        out |= scan_versions(text)
    return out


def _single(versions: Iterable[Version]) -> Version | None:
    distinct = set(versions)
    return next(iter(distinct)) if len(distinct) == 1 else None


def _collect(
    el: Element,
    parent: Element | None,
    local: dict[Element, set[Version]],
    around: dict[Element, Version | None],
    seen: set[str],
    images: list[str],
    image_versions: list[Version | None],
) -> None:
    """The references in one element, each with the version it belongs to when the manifest makes it clear."""
    for text, may_refer in _local_texts(el):
        ref = _reference(text) if may_refer else None
        if ref is None or ref in seen:
            continue
        owner = _single(scan_versions(ref)) or _single(local[el])
        if owner is None and not local[el] and parent is not None:
            if parent not in around:
                around[parent] = _single(local[parent].union(*(local[sibling] for sibling in parent)))
            owner = around[parent]
        seen.add(ref)
        images.append(ref)
        image_versions.append(owner)


def read_manifest(url: str, body: bytes) -> ManifestReading:
    """Parse safely (no DTD, no entities) and read versions and image references from anywhere in it.

    Raises ManifestError only for what is certainly wrong (not well-formed, unsafe); an unfamiliar shape
    gives an empty or partial reading, never an error.
    """
    shown = shown_url(url)
    try:
        root: Element = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ManifestError(f"{shown}: refused unsafe XML ({type(exc).__name__})") from None
    except SafeET.ParseError as exc:
        raise ManifestError(f"{shown}: not well-formed XML: {one_line(str(exc), 200)}") from None
    except (ValueError, UnicodeError) as exc:
        raise ManifestError(f"{shown}: not readable XML: {one_line(str(exc), 200)}") from None
    # Each element's own versions, and each parent's (its own and its children's), computed once:
    # linear in the size of the manifest whatever its shape.
    local: dict[Element, set[Version]] = {el: _local_versions(el) for el in root.iter()}
    around: dict[Element, Version | None] = {}
    versions: set[Version] = set().union(*local.values())
    images: list[str] = []
    image_versions: list[Version | None] = []
    seen: set[str] = set()
    _collect(root, None, local, around, seen, images, image_versions)
    for parent in root.iter():
        for child in parent:
            _collect(child, parent, local, around, seen, images, image_versions)
    return ManifestReading(url, frozenset(versions), tuple(images), tuple(image_versions))


# --- fetching ------------------------------------------------------------------------------------
def transfer_problem(exc: BaseException) -> str:
    """One line for a failed HTTP transfer, credentials masked."""
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return transfer_problem(exc.exceptions[0])
    text = one_line(redact_url(str(exc)), 200)
    if isinstance(exc, httpx.HTTPError | httpx.InvalidURL):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def fetch_bounded(
    client: httpx.AsyncClient, url: str, limit: int = MAX_MANIFEST_BYTES, timeout: float = MANIFEST_DEADLINE
) -> bytes:
    """GET with a byte limit and an overall deadline: a hostile server cannot stall or flood us."""
    shown = shown_url(url)
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("GET", url, timeout=httpx.Timeout(timeout)) as resp:
                if resp.status_code != 200:
                    raise ManifestError(f"{shown}: HTTP {resp.status_code}")
                declared = resp.headers.get("content-length", "")
                if declared.isascii() and declared.isdigit() and int(declared) > limit:
                    raise ManifestError(f"{shown}: {declared} bytes is more than the {limit} allowed")
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise ManifestError(f"{shown}: more than {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
    except TimeoutError:
        raise ManifestError(f"{shown}: timed out after {timeout:g} s") from None
    except httpx.TimeoutException:
        raise ManifestError(f"{shown}: timed out") from None
    except ManifestError:
        raise
    except Exception as exc:  # whatever the URL or the network does (httpx, anyio, the socket layer)
        raise ManifestError(f"{shown}: {transfer_problem(exc)}") from None


async def fetch_manifest(client: httpx.AsyncClient, url: str, timeout: float = MANIFEST_DEADLINE) -> ManifestReading:
    body = await fetch_bounded(client, url, timeout=timeout)
    # Reading a 1 MiB manifest of many small elements takes about a second: off the event loop.
    return await asyncio.to_thread(read_manifest, url, body)


def manifest_url(update_server: str, base: Version) -> str:
    """The one place the manifest URL is built: named after the version an appliance upgrades FROM."""
    return f"{update_server.rstrip('/')}/asyncos/{base.tag()}.xml"


# --- the hop walk --------------------------------------------------------------------------------
Level = Literal["ok", "warning", "refused"]


@dataclass(frozen=True)
class Finding:
    """What one manifest said about one step of the way (url already safe to show)."""

    url: str
    level: Level
    text: str

    def __str__(self) -> str:
        return f"manifest {self.url}: {self.text}"


@dataclass
class PathReport:
    """From one base release to the target, per the manifests, as far as they can be read."""

    base: Version
    target: Version
    findings: list[Finding] = field(default_factory=list)
    path: list[Version] | None = None  # the versions to step through; None: unknown, the appliance's list decides
    refused: str | None = None  # only for what is certainly wrong
    readings: list[ManifestReading] = field(default_factory=list)  # every manifest read on the way, in order

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


def _versions_text(versions: Iterable[Version]) -> str:
    return ", ".join(str(v) for v in sorted(versions))


# One fetch per URL, shared by every walk that needs it (the walks run concurrently).
ManifestCache = dict[str, "asyncio.Task[ManifestReading | ManifestError]"]


async def _fetch_or_error(client: httpx.AsyncClient, url: str, timeout: float) -> ManifestReading | ManifestError:
    try:
        return await fetch_manifest(client, url, timeout)
    except ManifestError as exc:
        return exc


async def walk_path(
    client: httpx.AsyncClient,
    update_server: str,
    base: Version,
    target: Version,
    *,
    max_hops: int = MAX_HOPS,
    timeout: float = MANIFEST_DEADLINE,
    cache: ManifestCache | None = None,
) -> PathReport:
    """The one hop walk (check, plan, prepare): follow the manifests from `base` towards `target`.

    Each step fetches the manifest named after the current version and takes `next_hop` of what it offers.
    A manifest that cannot be fetched or parsed refuses; one whose versions do not lead on is a warning
    (the appliance's own `Upgrades available.` list is the authority) and leaves the path unknown.
    """
    report = PathReport(base, target)
    cache = {} if cache is None else cache
    current = base
    steps: list[Version] = []
    for _ in range(max_hops):
        url = manifest_url(update_server, current)
        shown = shown_url(url)
        if url not in cache:
            cache[url] = asyncio.ensure_future(_fetch_or_error(client, url, timeout))
        reading = await asyncio.shield(cache[url])  # a cancelled walk leaves the shared fetch to the others
        if isinstance(reading, ManifestError):
            what = "" if current == base else f" (for the hop to {current})"
            report.findings.append(Finding(shown, "refused", f"{reading}{what}".removeprefix(f"{shown}: ")))
            report.refused = f"manifest {reading}{what}"
            return report
        report.readings.append(reading)
        step = next_hop(reading.versions, target, current)
        if step is None:
            others = reading.versions - {current}
            if not reading.versions:
                text = "shape not recognised: the appliance's own list decides"
            elif not others:
                text = f"names no release but {current}: the appliance's own list decides"
            else:
                text = f"offers only {_versions_text(others)}: the appliance's own list decides"
            report.findings.append(Finding(shown, "warning", text))
            return report
        steps.append(step)
        if step == target:
            report.findings.append(Finding(shown, "ok", f"offers the target {target}"))
            report.path = steps
            return report
        report.findings.append(Finding(shown, "ok", f"offers a hop to {step}"))
        current = step
    report.findings.append(
        Finding(
            shown_url(manifest_url(update_server, current)),
            "warning",
            f"no way to {target} within {max_hops} hops: the appliance's own list decides",
        )
    )
    return report


async def walk_paths(
    client: httpx.AsyncClient,
    update_server: str,
    bases: Iterable[Version],
    target: Version,
    *,
    max_hops: int = MAX_HOPS,
    timeout: float = MANIFEST_DEADLINE,
    deadline: float = WALK_DEADLINE,
) -> dict[Version, PathReport]:
    """`walk_path` for each distinct base below the target, concurrently; a manifest shared by several walks is
    fetched once. The whole walk is bounded by `deadline`: a walk not finished by then refuses, saying so."""
    cache: ManifestCache = {}
    wanted = [base for base in sorted(set(bases)) if base < target]
    walks = {
        base: asyncio.ensure_future(
            walk_path(client, update_server, base, target, max_hops=max_hops, timeout=timeout, cache=cache)
        )
        for base in wanted
    }
    try:
        if walks:
            await asyncio.wait(walks.values(), timeout=deadline)
    finally:
        for task in [*walks.values(), *cache.values()]:
            task.cancel()
        await asyncio.gather(*walks.values(), *cache.values(), return_exceptions=True)
    reports: dict[Version, PathReport] = {}
    for base, walk in walks.items():
        failure = walk.exception() if walk.done() and not walk.cancelled() else None
        if walk.done() and not walk.cancelled() and failure is None:
            reports[base] = walk.result()
            continue
        report = PathReport(base, target)
        shown = shown_url(manifest_url(update_server, base))
        if failure is not None:
            text = f"the walk from {base} failed: {transfer_problem(failure)}"
        else:
            text = f"the walk from {base} did not finish within the overall {deadline:g} s"
        report.findings.append(Finding(shown, "refused", text))
        report.refused = f"manifest {shown}: {text}"
        reports[base] = report
    return reports
