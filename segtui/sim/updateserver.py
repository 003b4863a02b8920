"""The simulated local update server: real HTTP on loopback serving manifests (in several shapes) and images.

Cisco's manifest schema is not public, so the simulator does not pretend to know it: each base release's
manifest comes in one of several shapes, none of which the driver was written against. The simulated
appliances read their own offers back with `read_manifest`, which knows only what this module writes.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from segtui.sim.model import RELEASES, STARTING_VERSIONS, SimVersion, vdotted, vtag

IMAGE_BYTES = 256 * 1024

# elements:   versions as element text, images as full URLs in element text
# tags:       versions in attributes, images as paths in attributes
# nested:     <updates><component name="asyncos"><upgrade>, versions as element text, images as paths
# namespaced: a default XML namespace, versions as element text, images as full URLs in attributes
# Versions are spelled in one of FORMS per manifest, chosen apart from the shape.
SHAPES = ("elements", "tags", "nested", "namespaced")
NAMESPACE = "urn:example:asyncos:upgrade-catalog:2"


def vdashed(v: SimVersion) -> str:
    return f"{v[0]}-{v[1]}-{v[2]}-{v[3]:03d}"


FORMS = {"dotted": vdotted, "dashed": vdashed, "tag": vtag}  # 16.0.0-123, 16-0-0-123, phoebe-16-0-0-123


def _bases() -> list[SimVersion]:
    """Base releases, the ones fleets start on first: they get different shapes and spellings."""
    return [*STARTING_VERSIONS, *(b for b in sorted(RELEASES) if b not in STARTING_VERSIONS)]


def shapes_for(seed: int) -> dict[SimVersion, str]:
    """Which shape each base release's manifest has: every shape appears, rotated by the seed."""
    return {base: SHAPES[(seed + i) % len(SHAPES)] for i, base in enumerate(_bases())}


def forms_for(seed: int) -> dict[SimVersion, str]:
    """How each manifest spells versions, independently of its shape."""
    names = list(FORMS)
    return {base: names[(seed + i) % len(names)] for i, base in enumerate(_bases())}


@dataclass(frozen=True)
class Offer:
    version: SimVersion
    date: str
    image: str  # a path on the images server, or a full URL


@dataclass(frozen=True)
class _Item:
    version: SimVersion
    date: str
    path: str
    size: int
    sha256: str


def _render(shape: str, form: str, base: SimVersion, items: list[_Item], base_url: str) -> str:
    fmt = FORMS[form]
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    if shape == "elements":
        rows = []
        for it in items:
            rows += [
                "    <release>",
                f"      <version>{fmt(it.version)}</version>",
                f"      <released>{it.date}</released>",
                f"      <url>{base_url}/{it.path}</url>",
                f"      <size>{it.size}</size>",
                f'      <checksum type="sha256">{it.sha256}</checksum>',
                "    </release>",
            ]
        body = [
            "<updates>",
            "  <product>Secure Email Gateway</product>",
            f"  <installed>{fmt(base)}</installed>",
            "  <available>",
            *rows,
            "  </available>",
            "</updates>",
        ]
    elif shape == "tags":
        rows = [
            f'  <entry build="{fmt(it.version)}" released="{it.date}" href="/{it.path}" '
            f'bytes="{it.size}" digest="sha256:{it.sha256}"/>'
            for it in items
        ]
        body = [f'<catalog platform="phoebe" installed="{fmt(base)}">', *rows, "</catalog>"]
    elif shape == "nested":
        rows = []
        for it in items:
            rows += [
                "    <upgrade>",
                f"      <target>{fmt(it.version)}</target>",
                f"      <published>{it.date}</published>",
                f'      <image path="{it.path}" length="{it.size}" hash="{it.sha256}"/>',
                "    </upgrade>",
            ]
        body = [
            '<updates schema="2">',
            f'  <component name="asyncos" running="{fmt(base)}">',
            *rows,
            "  </component>",
            "</updates>",
        ]
    elif shape == "namespaced":
        rows = []
        for it in items:
            rows += [
                "  <offer>",
                f"    <build>{fmt(it.version)}</build>",
                f"    <date>{it.date}</date>",
                f'    <image href="{base_url}/{it.path}" octets="{it.size}" sha256="{it.sha256}"/>',
                "  </offer>",
            ]
        body = [f'<upgradeList xmlns="{NAMESPACE}">', f"  <from>{fmt(base)}</from>", *rows, "</upgradeList>"]
    else:
        raise ValueError(f"unknown manifest shape {shape!r}")
    return "\n".join([head, *body, ""])


def write_update_root(
    root: Path,
    base_url: str,
    *,
    shapes: dict[SimVersion, str] | None = None,
    forms: dict[SimVersion, str] | None = None,
    omit_images: set[SimVersion] | None = None,
) -> None:
    """Lay out `asyncos/phoebe-<tag>.xml` for every base release, and the images they name."""
    shapes = shapes or shapes_for(0)
    forms = forms or forms_for(0)
    asyncos = root / "asyncos"
    (asyncos / "images").mkdir(parents=True, exist_ok=True)
    for base, rel in RELEASES.items():
        items = []
        for target in rel.offers:
            path = f"asyncos/images/{vtag(target)}.img"
            data = (vtag(target).encode() * (IMAGE_BYTES // len(vtag(target)) + 1))[:IMAGE_BYTES]
            if not omit_images or target not in omit_images:
                (root / path).write_bytes(data)
            items.append(_Item(target, RELEASES[target].date, path, len(data), hashlib.sha256(data).hexdigest()))
        manifest = _render(shapes[base], forms[base], base, items, base_url.rstrip("/"))
        (asyncos / f"{vtag(base)}.xml").write_text(manifest)


_VERSION = re.compile(r"(?:phoebe-)?(\d+)[.-](\d+)[.-](\d+)-(\d+)$")


def _version(text: str | None) -> SimVersion | None:
    m = _VERSION.match((text or "").strip())
    return (int(m[1]), int(m[2]), int(m[3]), int(m[4])) if m else None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def read_manifest(data: bytes) -> tuple[SimVersion | None, list[Offer]] | None:
    """The appliance's reading of a manifest this module wrote: (base release, offers); None if unreadable."""
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError:
        return None
    for el in root.iter():
        el.tag = _local(el.tag)
    offers: list[Offer] = []
    kind = root.tag
    if kind == "updates" and root.find("available") is not None:
        base = _version(root.findtext("installed"))
        for r in root.iter("release"):
            v = _version(r.findtext("version"))
            if v:
                offers.append(Offer(v, r.findtext("released") or "", r.findtext("url") or ""))
    elif kind == "catalog":
        base = _version(root.get("installed"))
        for e in root.iter("entry"):
            v = _version(e.get("build"))
            if v:
                offers.append(Offer(v, e.get("released", ""), e.get("href", "")))
    elif kind == "updates":
        component = next((c for c in root.iter("component") if c.get("name") == "asyncos"), None)
        if component is None:
            return None
        base = _version(component.get("running"))
        for u in component.iter("upgrade"):
            v = _version(u.findtext("target"))
            image = u.find("image")
            path = image.get("path", "") if image is not None else ""
            if v:
                offers.append(Offer(v, u.findtext("published") or "", path))
    elif kind == "upgradeList":
        base = _version(root.findtext("from"))
        for o in root.iter("offer"):
            v = _version(o.findtext("build"))
            image = o.find("image")
            href = image.get("href", "") if image is not None else ""
            if v:
                offers.append(Offer(v, o.findtext("date") or "", href))
    else:
        return None
    return base, offers


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class UpdateServer:
    """A threaded static HTTP server; appliances and segtui reach it over loopback."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = root
        handler = partial(_QuietHandler, directory=str(root))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="sim-update-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
