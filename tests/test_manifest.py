"""Manifests come from a server we do not control: entities refused, size and time bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from segtui.asyncos.versions import Version
from segtui.updates.manifest import ManifestError, fetch_manifest, parse_manifest, path_to_target

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE manifest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<manifest from="15.0.0-104"><release version="16.0.0-123" image="&xxe;"/></manifest>"""

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<manifest from="15.0.0-104"><release version="16.0.0-123" image="&lol3;"/></manifest>"""

GOOD = b'<manifest from="15.0.0-104"><release version="16.0.0-123" image="a.img"/></manifest>'


class Hostile(BaseHTTPRequestHandler):
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
        elif self.path.endswith("slow.xml"):
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
        elif self.path.endswith("phoebe-15-0-0-104.xml"):
            self._send(GOOD)
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
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
async def test_hostile_manifests_refused(server: str, name: str, fragment: str) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ManifestError, match=fragment):
            await fetch_manifest(client, f"{server}/asyncos/{name}")


async def test_slow_server_is_bounded(server: str) -> None:
    start = time.monotonic()
    async with httpx.AsyncClient() as client:
        with pytest.raises(ManifestError, match="timed out"):
            await fetch_manifest(client, f"{server}/asyncos/slow.xml", timeout=2.0)
    assert time.monotonic() - start < 5


async def test_good_manifest_and_path(server: str) -> None:
    async with httpx.AsyncClient() as client:
        m = await fetch_manifest(client, f"{server}/asyncos/phoebe-15-0-0-104.xml")
        assert m.base == Version.parse("15.0.0-104") and m.offers() == [Version.parse("16.0.0-123")]
        path = await path_to_target(client, server, Version.parse("15.0.0-104"), Version.parse("16.0.0-123"))
        assert path == [Version.parse("16.0.0-123")]


def test_parse_never_resolves_entities() -> None:
    with pytest.raises(ManifestError):
        parse_manifest("x", XXE)
    assert parse_manifest("x", GOOD).releases[0].image == "a.img"
