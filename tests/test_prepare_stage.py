"""Before the window: prepare (fetch_manifest inputs, server checks), unpack, serve-updates, stage."""

from __future__ import annotations

import asyncio
import io
import os
import re
import socketserver
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from segtui.sim.fleet import SimFleet
from segtui.updates.prepare import IMAGE_CONCURRENCY, SERVER_DEADLINE, ServerCheck, check_image
from tests.conftest import TEST_PASSWORD, start_fleet

SETTINGS = """
[polling]
workqueue = 0.2
reboot_initial = 0.1
reboot_max = 0.3
[deadlines]
drain = 20
reboot = 30
upgrade = 60
[guards]
bake = 1
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEGTUI_PASSWORD": TEST_PASSWORD}
    return subprocess.run(
        [sys.executable, "-m", "segtui", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


async def acli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, *args, cwd=cwd)


@pytest.fixture
async def two_bases(tmp_path: Path) -> AsyncIterator[SimFleet]:
    fleet = await start_fleet(tmp_path, 4, clusters=False)  # esa01-03 on 15.0.0-104, esa04 on 15.5.1-055
    (tmp_path / "segtui.toml").write_text(SETTINGS)
    yield fleet
    await fleet.stop()


async def test_prepare_names_manifests_serials_and_flags_missing_image(two_bases: SimFleet, tmp_path: Path) -> None:
    fleet = two_bases
    inv = str(fleet.inventory_path)
    proc = await acli("prepare", "--inventory", inv, "--target", "16.0.0-123", cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    tags = re.findall(r"Base release tag: (\S+)", out)
    assert tags == ["phoebe-15-0-0-104", "phoebe-15-5-1-055"]
    assert "asyncos/phoebe-15-0-0-104.xml" in out and "asyncos/phoebe-15-5-1-055.xml" in out
    for node in fleet.nodes.values():
        a = node.appliance
        if a.vln:
            assert f"Virtual license number (VLN): {a.vln}  Model: {a.model}" in out
        else:
            assert a.serial in out
    assert "ready: nothing is missing" in out
    # a deliberately missing image is flagged, then passes once served again
    image = fleet.workdir / "updates" / "asyncos" / "images" / "phoebe-16-0-0-123.img"
    kept = image.read_bytes()
    image.unlink()
    proc = await acli("prepare", "--inventory", inv, "--target", "16.0.0-123", cwd=tmp_path)
    assert proc.returncode == 1
    assert re.search(r"image 16\.0\.0-123\s+\S+phoebe-16-0-0-123\.img\s+HTTP 404", proc.stdout), proc.stdout
    image.write_bytes(kept)
    proc = await acli("prepare", "--inventory", inv, "--target", "16.0.0-123", cwd=tmp_path)
    assert proc.returncode == 0 and "ready: nothing is missing" in proc.stdout


def _zip(entries: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


MANIFEST = (
    b'<?xml version="1.0"?><manifest from="15.0.0-104"><release version="16.0.0-123" '
    b'image="asyncos/images/phoebe-16-0-0-123.img"/></manifest>'
)


def test_unpack_lays_out_and_verifies(tmp_path: Path) -> None:
    good = tmp_path / "bundle.zip"
    good.write_bytes(
        _zip({"asyncos/phoebe-15-0-0-104.xml": MANIFEST, "asyncos/images/phoebe-16-0-0-123.img": b"x" * 1000})
    )
    root = tmp_path / "www"
    proc = cli("prepare", "--unpack", str(good), "--into", str(root), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (root / "asyncos" / "phoebe-15-0-0-104.xml").read_bytes() == MANIFEST
    assert "manifests: phoebe-15-0-0-104.xml" in proc.stdout
    partial = tmp_path / "partial.zip"
    partial.write_bytes(_zip({"asyncos/phoebe-15-0-0-104.xml": MANIFEST}))
    proc = cli("prepare", "--unpack", str(partial), "--into", str(tmp_path / "www2"), cwd=tmp_path)
    assert proc.returncode == 1 and "MISSING image" in proc.stdout


@pytest.mark.parametrize(
    "entries,symlink",
    [
        ({"../escape.txt": b"x"}, None),
        ({"/etc/evil.xml": b"x"}, None),
        ({"asyncos/../../escape.txt": b"x"}, None),
        ({"asyncos/ok.xml": MANIFEST}, "asyncos/link"),
    ],
)
def test_unpack_refuses_escaping_archives(tmp_path: Path, entries: dict[str, bytes], symlink: str | None) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(_zip(entries, symlink))
    root = tmp_path / "www"
    proc = cli("prepare", "--unpack", str(bad), "--into", str(root), cwd=tmp_path)
    assert proc.returncode == 2 and "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "escape.txt").exists()
    assert not root.exists() or not any(root.rglob("*"))  # nothing written


def test_unpack_refuses_damaged_archive(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    data = bytearray(_zip({"asyncos/images/a.img": b"a" * 5000}))
    bad.write_bytes(bytes(data[: len(data) // 2]))
    proc = cli("prepare", "--unpack", str(bad), "--into", str(tmp_path / "www"), cwd=tmp_path)
    assert proc.returncode == 2 and "ZIP" in proc.stderr


def test_serve_updates_with_ranges_and_access_log(tmp_path: Path) -> None:
    root = tmp_path / "www"
    (root / "asyncos").mkdir(parents=True)
    (root / "asyncos" / "phoebe-15-0-0-104.xml").write_bytes(MANIFEST)
    server = subprocess.Popen(
        [sys.executable, "-m", "segtui", "serve-updates", str(root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stderr is not None
        first = server.stdout.readline()
        second = server.stdout.readline()
        assert "serving" in first and "http://127.0.0.1:" in first
        port = int(re.search(r":(\d+)/", first).group(1))  # type: ignore[union-attr]
        assert f'update_server = "http://127.0.0.1:{port}"' in second
        url = f"http://127.0.0.1:{port}/asyncos/phoebe-15-0-0-104.xml"
        full = httpx.get(url)
        assert full.status_code == 200 and full.content == MANIFEST
        part = httpx.get(url, headers={"Range": "bytes=5-14"})
        assert part.status_code == 206 and part.content == MANIFEST[5:15]
        assert part.headers["content-range"] == f"bytes 5-14/{len(MANIFEST)}"
        tail = httpx.get(url, headers={"Range": "bytes=-4"})
        assert tail.content == MANIFEST[-4:]
        assert httpx.get(url, headers={"Range": "bytes=9999-"}).status_code == 416
        assert httpx.get(f"http://127.0.0.1:{port}/nope.xml").status_code == 404
    finally:
        server.terminate()
        server.wait(10)
    log = server.stderr.read()
    assert '"GET /asyncos/phoebe-15-0-0-104.xml HTTP/1.1" 206' in log


async def test_stage_then_run_installs_without_downloading(two_bases: SimFleet, tmp_path: Path) -> None:
    fleet = two_bases
    inv = str(fleet.inventory_path)
    proc = await acli("stage", "--inventory", inv, "--target", "16.0.0-123", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 of 4 appliances hold the staged image" in proc.stdout
    for node in fleet.nodes.values():
        a = node.appliance
        assert a.staged == (16, 0, 0, 123) and a.image_downloads == 1
        assert not a.suspended and a.committed.listing == "cisco"  # mail kept flowing; settings put back
    assert not any(what == "suspended" for _, what in fleet.events)
    # staging again is a no-op
    proc = await acli("stage", "--inventory", inv, "--target", "16.0.0-123", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.count("already-staged") == 4
    run = await acli(
        "run",
        "--headless",
        "--inventory",
        inv,
        "--target",
        "16.0.0-123",
        "--max-unavailable",
        "2",
        "--report",
        str(tmp_path / "report.json"),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    for node in fleet.nodes.values():
        a = node.appliance
        assert a.version == (16, 0, 0, 123)
        assert a.image_downloads == 1, "the window must not download the image again"
    assert sum(1 for _, what in fleet.events if what == "upgrade-start:install") == 4
    import json

    report = json.loads((tmp_path / "report.json").read_text())
    assert all(a["installed_staged"] == "16.0.0-123" for a in report["appliances"])


async def test_stage_reports_an_image_for_another_version(two_bases: SimFleet, tmp_path: Path) -> None:
    fleet = two_bases
    other = fleet.nodes["esa02"].appliance
    other.staged = (15, 5, 1, 55)
    proc = await acli("stage", "--inventory", str(fleet.inventory_path), "--target", "16.0.0-123", cwd=tmp_path)
    assert proc.returncode == 1
    assert re.search(r"esa02\s+other-image\s+15\.5\.1-055", proc.stdout), proc.stdout
    assert other.staged == (15, 5, 1, 55), "never deleted silently"
    assert fleet.nodes["esa01"].appliance.staged == (16, 0, 0, 123)


# --- image checks bounded in bytes and time, against servers that misbehave (real HTTP on loopback) -------------


class _ImageServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, behaviour: str) -> None:
        super().__init__(("127.0.0.1", 0), _ImageHandler)
        self.behaviour = behaviour
        self.sent = 0  # body bytes written before the client went away
        self.requests: list[str] = []
        self.done = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/asyncos/images/phoebe-16-0-0-123.img"


class _ImageHandler(socketserver.StreamRequestHandler):
    server: _ImageServer

    def handle(self) -> None:
        srv = self.server
        try:
            while True:
                request = self.rfile.readline().decode("latin-1").strip()
                if not request:
                    return
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                srv.requests.append(request)
                method = request.split(" ", 1)[0]
                if srv.behaviour == "drip":  # one byte at a time, never a complete status line
                    for byte in b"HTTP/1.1 200 OK\r\n":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.5)
                    return
                if method == "HEAD":
                    status = {"missing": "404 Not Found"}.get(srv.behaviour, "405 Method Not Allowed")
                    self.wfile.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
                    continue
                if srv.behaviour == "missing":
                    self.wfile.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                # Ignores Range: a 256 MB "image", streamed until the client hangs up.
                size = 256 * 1024 * 1024
                self.wfile.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                chunk = b"\0" * 65536
                while srv.sent < size:
                    self.wfile.write(chunk)
                    srv.sent += len(chunk)
                return
        except OSError:
            return
        finally:
            srv.done.set()


@pytest.fixture
def image_server(request: pytest.FixtureRequest) -> Iterator[_ImageServer]:
    srv = _ImageServer(request.param)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("image_server", ["ignores-range"], indirect=True)
async def test_image_check_never_downloads_the_image(image_server: _ImageServer) -> None:
    async with httpx.AsyncClient() as client:
        problem = await asyncio.wait_for(check_image(client, image_server.url, deadline=10), 20)
    assert problem is None, "a 200 to the ranged GET means the image is there"
    assert [r.split(" ")[0] for r in image_server.requests] == ["HEAD", "GET"]
    assert await asyncio.to_thread(image_server.done.wait, 20), "the client should have hung up"
    # What the kernel buffered before the client hung up, not the 256 MB body.
    assert image_server.sent < 32 * 1024 * 1024, image_server.sent


@pytest.mark.parametrize("image_server", ["drip"], indirect=True)
async def test_image_check_has_an_overall_deadline(image_server: _ImageServer) -> None:
    start = time.monotonic()
    async with httpx.AsyncClient() as client:
        problem = await asyncio.wait_for(check_image(client, image_server.url, deadline=2), 30)
    assert problem == "timed out after 2 s"
    assert time.monotonic() - start < 4


@pytest.mark.parametrize("image_server", ["missing"], indirect=True)
async def test_missing_image_is_reported(image_server: _ImageServer) -> None:
    async with httpx.AsyncClient() as client:
        assert await check_image(client, image_server.url) == "HTTP 404"


def test_group_by_base_one_request_per_version_below_the_target() -> None:
    from segtui.asyncos.parsers import VersionInfo
    from segtui.asyncos.versions import Version
    from segtui.updates.prepare import group_by_base

    v = Version.parse
    infos = {
        "b": VersionInfo(v("15.0.0-104"), model="C300V", vln="VLN1"),
        "a": VersionInfo(v("15.0.0-104"), serial="S-A"),
        "c": VersionInfo(v("14.2.1-015"), serial=None),
        "d": VersionInfo(v("16.0.0-123"), serial="S-D"),  # at the target: nothing to fetch
        "e": VersionInfo(v("16.5.0-001"), serial="S-E"),  # past it: the pre-flight refuses, prepare skips
    }
    bases = group_by_base(infos, v("16.0.0-123"))
    assert [b.tag for b in bases] == ["phoebe-14-2-1-015", "phoebe-15-0-0-104"]
    assert bases[0].serials == [("c", "?")] and bases[0].count == 1
    assert bases[1].serials == [("a", "S-A")] and bases[1].virtual == [("b", "VLN1", "C300V")]


# --- the whole server check is bounded (finding 12) ----------------------------------------------------------------


class _ManyImages(socketserver.ThreadingTCPServer):
    """One manifest offering the target and naming `count` images; HEAD on an image answers 200, or never ('hang')."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, count: int, hang: bool) -> None:
        super().__init__(("127.0.0.1", 0), _ManyImagesHandler)
        self.count, self.hang = count, hang
        self.heads: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _ManyImagesHandler(socketserver.StreamRequestHandler):
    server: _ManyImages

    def handle(self) -> None:
        srv = self.server
        try:
            request = self.rfile.readline().decode("latin-1").strip()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            method, path = request.split(" ")[:2]
            if path.endswith(".xml"):
                items = "".join(f"<img>asyncos/images/a{i}.img</img>" for i in range(srv.count))
                body = f"<m><release><v>16.0.0-123</v>{items}</release></m>".encode()
                self.wfile.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                return
            with srv.lock:
                srv.heads.append(f"{method} {path}")
            if srv.hang:
                srv.stop.wait(60)
                return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (OSError, ValueError):
            return


@pytest.fixture
def many_images(request: pytest.FixtureRequest) -> Iterator[_ManyImages]:
    count, hang = request.param
    srv = _ManyImages(count, hang)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("many_images", [(200, False)], indirect=True)
async def test_images_checked_per_manifest_are_capped(many_images: _ManyImages) -> None:
    from segtui.asyncos.versions import Version
    from segtui.updates.prepare import MAX_IMAGES_PER_MANIFEST, check_server

    target = Version.parse("16.0.0-123")
    async with httpx.AsyncClient() as client:
        check = await asyncio.wait_for(check_server(client, many_images.url, [Version.parse("15.0.0-104")], target), 60)
    assert len(many_images.heads) <= MAX_IMAGES_PER_MANIFEST, len(many_images.heads)
    assert len(check.images_ok) == MAX_IMAGES_PER_MANIFEST and not check.missing
    skipped = 200 - MAX_IMAGES_PER_MANIFEST
    assert any(
        f"names 200 images; only the first {MAX_IMAGES_PER_MANIFEST} checked, {skipped} not" in n for n in check.notes
    ), check.notes


async def _check_one_base(
    many_images: _ManyImages,
    *,
    image_deadline: float,
    concurrency: int = IMAGE_CONCURRENCY,
    deadline: float = SERVER_DEADLINE,
) -> ServerCheck:
    """`check_server` for one base release (15.0.0-104) to the target, with the given deadlines and concurrency."""
    from segtui.asyncos.versions import Version
    from segtui.updates.prepare import check_server

    base, target = Version.parse("15.0.0-104"), Version.parse("16.0.0-123")
    async with httpx.AsyncClient() as client:
        check = check_server(
            client,
            many_images.url,
            [base],
            target,
            image_deadline=image_deadline,
            concurrency=concurrency,
            deadline=deadline,
        )
        return await asyncio.wait_for(check, 60)


@pytest.mark.parametrize("many_images", [(8, True)], indirect=True)
async def test_image_checks_run_concurrently(many_images: _ManyImages) -> None:
    start = time.monotonic()
    check = await _check_one_base(many_images, image_deadline=1.5, concurrency=4)
    # 8 hanging images, 1.5 s each: one after another 12 s; four at a time about 3 s.
    assert time.monotonic() - start < 7, time.monotonic() - start
    assert len(check.missing) == 8 and all(m.problem == "timed out after 1.5 s" for m in check.missing)


@pytest.mark.parametrize("many_images", [(8, True)], indirect=True)
async def test_server_check_has_an_overall_deadline(many_images: _ManyImages) -> None:
    start = time.monotonic()
    check = await _check_one_base(many_images, image_deadline=30, deadline=2)
    assert time.monotonic() - start < 6, time.monotonic() - start
    assert not check.ready and len(check.missing) == 8
    assert all(m.problem == "not checked: overall 2 s reached" for m in check.missing), check.missing
    assert any("overall deadline of 2 s: 8 image(s) not checked" in n for n in check.notes), check.notes
