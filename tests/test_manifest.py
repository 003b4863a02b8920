"""Manifests come from a server we do not control and in a shape we do not know.

Refused only when certainly wrong (missing, too large, too slow, not well-formed, unsafe XML); otherwise read
best-effort, and one hop walk says per manifest what was found.
"""

from __future__ import annotations

import datetime
import ipaddress
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import quoteattr

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segtui.asyncos.versions import Version
from segtui.updates.manifest import (
    ManifestError,
    ManifestReading,
    fetch_manifest,
    manifest_url,
    read_manifest,
    scan_versions,
    walk_path,
    walk_paths,
)

V = Version.parse
BASE, HOP, TARGET = V("15.0.0-104"), V("15.5.1-055"), V("16.0.0-123")

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE manifest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<manifest><release version="16.0.0-123" image="&xxe;"/></manifest>"""

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<manifest><release version="16.0.0-123" image="&lol3;"/></manifest>"""

# Shapes no code in segtui/updates knows: each is read for what it offers.
SHAPES: dict[str, tuple[bytes, set[Version], set[str]]] = {
    "attributes": (
        b'<catalog product="esa"><item ver="16.0.0-123" href="images/phoebe-16-0-0-123.img" size="123"/></catalog>',
        {TARGET},
        {"images/phoebe-16-0-0-123.img"},
    ),
    "element-text": (
        b"<updates><update><version>16.0.0-123</version><file>/asyncos/images/x.bin</file>"
        b"<date>2024-03-01</date><mirror>10.1.2.3</mirror></update></updates>",
        {TARGET},
        {"/asyncos/images/x.bin"},
    ),
    "nested-upgrade-image": (
        b"<upgrades><upgrade><title>AsyncOS 16.0.0 build 123 upgrade For Email</title>"
        b"<image>http://updates.lab:8080/asyncos/coeus.img</image></upgrade></upgrades>",
        {TARGET},
        {"http://updates.lab:8080/asyncos/coeus.img"},
    ),
    "namespaced": (
        b'<m:manifest xmlns:m="urn:example:asyncos:2.1"><m:rel m:v="phoebe-16-0-0-123">'
        b"<m:loc>asyncos/images/p16.img</m:loc></m:rel></m:manifest>",
        {TARGET},
        {"asyncos/images/p16.img"},
    ),
    "phoebe-tags": (
        b'<list><phoebe-15-5-1-055 url="asyncos/images/a.img"/><phoebe-16-0-0-123 url="asyncos/images/b.img"/></list>',
        {HOP, TARGET},
        {"asyncos/images/a.img", "asyncos/images/b.img"},
    ),
    "url-per-release": (
        b"<list><r>http://srv/asyncos/images/phoebe-15-5-1-055.img</r>"
        b"<r>http://srv/asyncos/images/phoebe-16-0-0-123.img</r></list>",
        {HOP, TARGET},
        {"http://srv/asyncos/images/phoebe-15-5-1-055.img", "http://srv/asyncos/images/phoebe-16-0-0-123.img"},
    ),
    "no-versions": (
        b'<manifest><thing a="b" when="2024-03-01T10:00:00" ip="192.168.10.20"/>nothing here</manifest>',
        set(),
        set(),
    ),
    "dashed-16-0-0-123": (
        b'<x><y id="16-0-0-123" md5="d41d8cd98f00b204e9800998ecf8427e" type="application/octet-stream"/></x>',
        {TARGET},
        set(),
    ),
    "bad-values": (
        b'<manifest from="nonsense"><release version="16.0.0-123" size="\xc2\xb2" sha256="?"/></manifest>',
        {TARGET},
        set(),
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_unfamiliar_shapes_are_read_for_versions_and_images(shape: str) -> None:
    body, versions, images = SHAPES[shape]
    reading = read_manifest("http://x/asyncos/phoebe-15-0-0-104.xml", body)
    assert reading.versions == versions
    assert set(reading.images) == images


def test_image_belongs_to_the_version_beside_it() -> None:
    body = (
        b"<m><rel><v>15.5.1-055</v><img>asyncos/images/first.img</img></rel>"
        b"<rel><v>16.0.0-123</v><img>asyncos/images/second.img</img></rel><notes>http://srv/notes/</notes></m>"
    )
    reading = read_manifest("u", body)
    assert reading.images_for(TARGET) == ("asyncos/images/second.img",)
    assert reading.images_for(HOP) == ("asyncos/images/first.img",)
    # a version with no image of its own: the references that belong to no version in particular
    assert reading.images_for(V("16.5.0-001")) == ("http://srv/notes/",)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("16.0.0-123", "16.0.0-123"),
        ("16-0-0-123", "16.0.0-123"),
        ("phoebe-16-0-0-123", "16.0.0-123"),
        ("phoebe-14-2-1-015.img", "14.2.1-015"),
        ("AsyncOS 16.0.0 build 123 upgrade For Email", "16.0.0-123"),
        ("16.0.0 (build 123)", "16.0.0-123"),
        ("16_0_0_123", "16.0.0-123"),
        ("http://10.0.0.5:8080/asyncos/phoebe-16-0-0-123.xml", "16.0.0-123"),
    ],
)
def test_version_spellings(text: str, expected: str) -> None:
    assert scan_versions(text) == {V(expected)}


@pytest.mark.parametrize(
    "text",
    ["2024-03-01", "2024-03-01-1200", "01-03-2024", "192.168.1.10", "10.0.0.1-5", "1.2.3.4", "16.0.0.123", "0.0.0-1"],
)
def test_dates_and_addresses_are_not_versions(text: str) -> None:
    assert scan_versions(text) == set()


_versions = st.builds(
    Version,
    st.integers(1, 99),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 9999),
)
_context = st.text(alphabet=st.characters(exclude_characters="0123456789.-_", exclude_categories=["Cs"]), max_size=40)


_xml_context = st.text(
    alphabet=st.characters(exclude_characters="0123456789.-_&<", exclude_categories=["Cs", "Cc", "Cn"]), max_size=40
)


def _spell(v: Version, how: int) -> str:
    return [
        f"{v.major}.{v.minor}.{v.patch}-{v.build}",
        f"{v.major}-{v.minor}-{v.patch}-{v.build}",
        v.tag(),
        f"{v.major}.{v.minor}.{v.patch} build {v.build:03d}",
    ][how]


@given(_versions, st.integers(0, 3), _context, _context)
def test_scanner_finds_a_version_embedded_anywhere(v: Version, how: int, before: str, after: str) -> None:
    assert v in scan_versions(before + _spell(v, how) + after)


@given(st.text(max_size=300))
def test_scanner_never_raises(text: str) -> None:
    for found in scan_versions(text):
        assert isinstance(found, Version)


@given(_versions, st.integers(0, 3), _xml_context, st.sampled_from(["attr", "text", "tag-ish"]))
def test_reader_finds_a_version_in_any_place(v: Version, how: int, noise: str, where: str) -> None:
    spelled = _spell(v, how)
    if where == "attr":
        body = f"<a><b x={quoteattr(noise + spelled)}/></a>"
    elif where == "text":
        body = f"<a><b>{noise}{spelled}</b></a>"
    else:
        body = f"<a><p-{v.tag()}/></a>"
    assert v in read_manifest("u", body.encode()).versions


@given(st.binary(max_size=300))
def test_reader_raises_nothing_but_manifest_error(body: bytes) -> None:
    try:
        assert isinstance(read_manifest("u", body), ManifestReading)
    except ManifestError:
        pass


# --- over real HTTP ----------------------------------------------------------------------------------------------


class Hostile(BaseHTTPRequestHandler):
    served: dict[str, bytes] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith("xxe.xml"):
            self._send(XXE)
        elif self.path.endswith("bomb.xml"):
            self._send(BOMB)
        elif self.path.endswith("huge-declared.xml"):
            self.send_response(200)
            self.send_header("Content-Length", str(50 * 1024 * 1024))
            self.end_headers()
            self.wfile.write(b"<" * 1024)
        elif self.path.endswith("huge-chunked.xml"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"<a>" * 10000
            try:
                for _ in range(200):  # 6 MB if nobody stops reading
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif self.path.endswith("slow.xml") or self.path.startswith("/slow/"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
        elif self.path.endswith("broken.xml"):
            self._send(b"<manifest><release")
        elif self.path in self.served:
            self._send(self.served[self.path])
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, bytes]]]:
    served: dict[str, bytes] = {}
    handler = type("Handler", (Hostile,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("xxe.xml", "unsafe XML"),
        ("bomb.xml", "unsafe XML"),
        ("huge-declared.xml", "allowed"),
        ("huge-chunked.xml", "more than"),
        ("broken.xml", "not well-formed"),
        ("missing.xml", "HTTP 404"),
    ],
)
async def test_hostile_manifests_refused(server: tuple[str, dict[str, bytes]], name: str, fragment: str) -> None:
    url, _ = server
    async with httpx.AsyncClient() as client:
        with pytest.raises(ManifestError, match=fragment):
            await fetch_manifest(client, f"{url}/asyncos/{name}")


async def test_slow_server_is_bounded(server: tuple[str, dict[str, bytes]]) -> None:
    url, _ = server
    start = time.monotonic()
    async with httpx.AsyncClient() as client:
        with pytest.raises(ManifestError, match="timed out"):
            await fetch_manifest(client, f"{url}/asyncos/slow.xml", timeout=2.0)
    assert time.monotonic() - start < 5


def _path(version: Version) -> str:
    return f"/asyncos/{version.tag()}.xml"


@pytest.mark.parametrize("shape", ["attributes", "element-text", "nested-upgrade-image", "namespaced"])
async def test_walk_finds_the_target_in_any_shape(server: tuple[str, dict[str, bytes]], shape: str) -> None:
    url, served = server
    served[_path(BASE)] = SHAPES[shape][0]
    async with httpx.AsyncClient() as client:
        report = await walk_path(client, url, BASE, TARGET)
    assert report.refused is None and report.path == [TARGET]
    assert [(f.level, f.text) for f in report.findings] == [("ok", f"offers the target {TARGET}")]


async def test_walk_through_a_hop(server: tuple[str, dict[str, bytes]]) -> None:
    url, served = server
    served[_path(BASE)] = b"<x><o>phoebe-15-5-1-055</o><o>phoebe-14-0-0-001</o></x>"
    served[_path(HOP)] = SHAPES["url-per-release"][0]
    async with httpx.AsyncClient() as client:
        report = await walk_path(client, url, BASE, TARGET)
    assert report.path == [HOP, TARGET] and report.refused is None
    assert [f.text for f in report.findings] == [f"offers a hop to {HOP}", f"offers the target {TARGET}"]
    assert [r.url for r in report.readings] == [manifest_url(url, BASE), manifest_url(url, HOP)]


@pytest.mark.parametrize(
    "body,text",
    [
        (SHAPES["no-versions"][0], "shape not recognised: the appliance's own list decides"),
        (b"<m><v>16.5.0-010</v><v>17.0.0-001</v></m>", "offers only 16.5.0-010, 17.0.0-001: the appliance's own list"),
        (b"<m><v>14.0.0-100</v><v>15.0.0-104</v></m>", "offers only 14.0.0-100: the appliance's own list decides"),
        (b'<m base="15.0.0-104"/>', "names no release but 15.0.0-104: the appliance's own list decides"),
    ],
)
async def test_unclear_manifests_warn_and_leave_the_path_to_the_appliance(
    server: tuple[str, dict[str, bytes]], body: bytes, text: str
) -> None:
    url, served = server
    served[_path(BASE)] = body
    async with httpx.AsyncClient() as client:
        report = await walk_path(client, url, BASE, TARGET)
    assert report.refused is None and report.path is None
    assert [f.level for f in report.findings] == ["warning"]
    assert report.findings[0].text.startswith(text)


@pytest.mark.parametrize(
    "base_body,hop_body,fragment",
    [
        (None, None, "HTTP 404"),
        (XXE, None, "unsafe XML"),
        (b"<m><broken", None, "not well-formed"),
        (b"<m><v>15.5.1-055</v></m>", None, f"HTTP 404 (for the hop to {HOP})"),
        (b"<m><v>15.5.1-055</v></m>", BOMB, f"unsafe XML (DTDForbidden) (for the hop to {HOP})"),
    ],
)
async def test_certain_problems_refuse(
    server: tuple[str, dict[str, bytes]], base_body: bytes | None, hop_body: bytes | None, fragment: str
) -> None:
    url, served = server
    if base_body is not None:
        served[_path(BASE)] = base_body
    if hop_body is not None:
        served[_path(HOP)] = hop_body
    async with httpx.AsyncClient() as client:
        report = await walk_path(client, url, BASE, TARGET)
    assert report.refused is not None and fragment in report.refused
    assert report.findings[-1].level == "refused" and report.path is None


async def test_shared_manifests_are_fetched_once(server: tuple[str, dict[str, bytes]]) -> None:
    url, served = server
    served[_path(BASE)] = b"<m><v>15.5.1-055</v></m>"
    served[_path(HOP)] = b"<m><v>16.0.0-123</v></m>"
    async with httpx.AsyncClient() as client:
        reports = await walk_paths(client, url, [BASE, HOP, TARGET, BASE], TARGET)
    assert sorted(reports) == [BASE, HOP]  # the target itself needs no walk
    assert reports[BASE].path == [HOP, TARGET] and reports[HOP].path == [TARGET]
    assert reports[BASE].readings[1] is reports[HOP].readings[0]


def test_manifest_url_is_named_after_the_base() -> None:
    assert manifest_url("http://u.example.com/", BASE) == "http://u.example.com/asyncos/phoebe-15-0-0-104.xml"


@pytest.mark.parametrize(
    "update_server,fragment",
    [
        ("http://127.0.0.1:99999", "port"),
        ("http://u:secret@[::1", "port"),
        ("ftp://updates.example.com", "protocol"),
        ("http://u:secret@127.0.0.1:1", "connection"),
        ("http://upd\x1b]0;x\x07ates/", "ASCII"),
    ],
)
async def test_odd_update_server_is_a_one_line_refusal(update_server: str, fragment: str) -> None:
    from segtui.updates.prepare import check_image

    async with httpx.AsyncClient() as client:
        report = await walk_path(client, update_server, BASE, TARGET)
        image = await check_image(client, f"{update_server}/a.img", deadline=5)
    assert report.refused is not None and fragment in report.refused
    for text in (report.refused, str(report.findings[-1]), image or ""):
        assert "secret" not in text and "\n" not in text and "\x1b" not in text and "\x07" not in text
    assert image is not None and image.startswith("unreachable")


@pytest.mark.parametrize(
    "body",
    [
        b"<m>" + b"".join(b'<i h="a/b%d.img"/>' % i for i in range(45000)) + b"</m>",
        b"<m>" + b"".join(b'<r v="16.0.%d-%d"><i>x/%d.img</i></r>' % (i % 99, i, i) for i in range(24000)) + b"</m>",
        b"<m a='" + b"16.0.0-1 " * 110000 + b"'/>",
    ],
    ids=["flat-references", "many-releases", "one-long-attribute"],
)
def test_reading_a_large_manifest_is_linear(body: bytes) -> None:
    assert len(body) <= 1024 * 1024
    start = time.monotonic()
    reading = read_manifest("u", body)
    assert reading.images or reading.versions
    assert time.monotonic() - start < 20  # seconds on a loaded machine; a quadratic reading takes many minutes


_DATE_FORMATS = ["%Y-%m-%d", "%d-%m-%Y", "%Y/%m/%d", "%Y%m%d", "%d.%m.%Y", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d-%H%M"]


@given(
    st.datetimes(min_value=datetime.datetime(1970, 1, 1)),
    st.sampled_from(_DATE_FORMATS),
    st.ip_addresses(v=4),
    st.integers(0, 65535),
)
def test_dates_and_ip_addresses_are_never_read_as_versions(
    when: datetime.datetime, fmt: str, ip: ipaddress.IPv4Address, port: int
) -> None:
    text = f"released {when.strftime(fmt)} from {ip} {ip}:{port} http://{ip}:{port}/x {ip}/24"
    assert scan_versions(text) == set(), text


async def test_the_whole_walk_has_an_overall_deadline(server: tuple[str, dict[str, bytes]]) -> None:
    """Finding 12: every base's manifest answering slowly cannot make the walk take bases x hops x deadline."""
    url = f"{server[0]}/slow"  # every manifest under /slow/ answers one byte every 0.5 s
    bases = [V(f"15.{minor}.0-{100 + minor}") for minor in range(6)]
    start = time.monotonic()
    async with httpx.AsyncClient() as client:
        reports = await walk_paths(client, url, bases, TARGET, timeout=10.0, deadline=1.5)
    assert time.monotonic() - start < 5, time.monotonic() - start
    assert sorted(reports) == bases
    for report in reports.values():
        assert report.refused is not None and "did not finish within the overall 1.5 s" in report.refused, report
        assert report.path is None and report.findings[-1].level == "refused"


async def test_walks_of_several_bases_run_concurrently(server: tuple[str, dict[str, bytes]]) -> None:
    url = f"{server[0]}/slow"
    bases = [V(f"15.{minor}.0-{100 + minor}") for minor in range(4)]
    start = time.monotonic()
    async with httpx.AsyncClient() as client:
        reports = await walk_paths(client, url, bases, TARGET, timeout=1.5, deadline=60)
    # Four slow manifests, 1.5 s each: one after another 6 s, concurrently about 1.5 s.
    assert time.monotonic() - start < 4.5, time.monotonic() - start
    assert all(r.refused is not None and "timed out" in r.refused for r in reports.values())
