"""The simulated local update server: real HTTP on loopback serving manifests and images."""

from __future__ import annotations

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from segtui.sim.model import RELEASES, SimVersion, vdotted, vtag

IMAGE_BYTES = 256 * 1024


def write_update_root(root: Path, *, omit_images: set[SimVersion] | None = None) -> None:
    """Lay out `asyncos/phoebe-<tag>.xml` for every base release, and the images they name."""
    asyncos = root / "asyncos"
    (asyncos / "images").mkdir(parents=True, exist_ok=True)
    for base, rel in RELEASES.items():
        items = []
        for target in rel.offers:
            image = f"asyncos/images/{vtag(target)}.img"
            data = (vtag(target).encode() * (IMAGE_BYTES // len(vtag(target)) + 1))[:IMAGE_BYTES]
            if not omit_images or target not in omit_images:
                (root / image).write_bytes(data)
            items.append(
                f'  <release version="{vdotted(target)}" date="{RELEASES[target].date}" '
                f'image="{image}" size="{len(data)}" sha256="{hashlib.sha256(data).hexdigest()}"/>'
            )
        body = "\n".join(
            [
                '<?xml version="1.0" encoding="UTF-8"?>',
                f'<manifest product="phoebe" from="{vdotted(base)}">',
                *items,
                "</manifest>",
                "",
            ]
        )
        (asyncos / f"{vtag(base)}.xml").write_text(body)


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
