"""One simulated appliance on the network: its SSH server, files, upgrade and reboot behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncssh
import httpx

from segtui.sim.model import Durations, SimAppliance, SimVersion, vdotted
from segtui.sim.shell import ApplianceShell
from segtui.sim.terminal import Cancelled, SessionClosed, Terminal
from segtui.sim.updateserver import read_manifest


class UpgradeJob:
    """What a running upgrade says (progress text, then None) and the one answer it waits for."""

    def __init__(self) -> None:
        self.output: asyncio.Queue[str | None] = asyncio.Queue()
        self.seconds: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.failed = False

    def fail(self, text: str) -> None:
        self.failed = True
        self.output.put_nowait(text)
        self.output.put_nowait(None)

    def answer(self, seconds: int) -> None:
        """The seconds to wait before forcibly closing connections (asked once the install is done)."""
        if not self.seconds.done():
            self.seconds.set_result(seconds)


class _Server(asyncssh.SSHServer):
    def __init__(self, node: SimNode) -> None:
        self.node = node
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        node = self.node
        if node.appliance.fault("flaky") and node.appliance.connections_refused < node.flaky_refusals:
            node.appliance.connections_refused += 1
            asyncio.get_running_loop().call_soon(conn.close)
            return
        node.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.node.connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        if self.node.appliance.fault("auth-fail"):
            return False
        return username == self.node.username and password == self.node.password


class _ConfigSFTP(asyncssh.SFTPServer):
    """SCP and SFTP see the appliance's files, with /configuration/ inside its own root."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path) -> None:
        super().__init__(chan, chroot=str(root).encode())


class SimNode:
    """A simulated appliance listening on 127.0.0.1:port."""

    def __init__(
        self,
        appliance: SimAppliance,
        *,
        port: int,
        root: Path,
        username: str,
        password: str,
        time_scale: float,
        durations: Durations,
        http: httpx.AsyncClient,
        host_key: asyncssh.SSHKey,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        self.appliance = appliance
        self.port = port
        self.root = root
        self.username = username
        self.password = password
        self.time_scale = time_scale
        self.durations = durations
        self.http = http
        self.host_key = host_key
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_event = on_event
        self.flaky_refusals = 2
        self.going_down = asyncio.Event()
        self.rng = random.Random(appliance.rng.random())

    def event(self, what: str) -> None:
        if self._on_event is not None:
            self._on_event(self.appliance.name, what)

    # --- time ----------------------------------------------------------------------------------
    async def sleep(self, appliance_seconds: float) -> None:
        await asyncio.sleep(max(0.0, appliance_seconds * self.time_scale))

    async def sleep_range(self, bounds: tuple[float, float], parts: int = 1) -> None:
        await self.sleep(self.rng.uniform(*bounds) / parts)

    # --- SSH -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._acceptor = await asyncssh.create_server(
            lambda: _Server(self),
            "127.0.0.1",
            self.port,
            server_host_keys=[self.host_key],
            process_factory=self._handle,
            line_editor=False,
            allow_scp=True,
            sftp_factory=lambda chan: _ConfigSFTP(chan, self.root),
            reuse_address=True,
            keepalive_interval=0,
        )
        if self.port == 0:
            self.port = self._acceptor.sockets[0].getsockname()[1]
        self.going_down = asyncio.Event()
        self.appliance.settle_mail(self.time_scale, self.durations.drain_rate)  # back in service: shares move
        self.appliance.state = "up"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._close_network()

    async def wait_down(self) -> None:
        """Park a session that asked for a reboot until the reboot closes it."""
        await self.going_down.wait()
        raise SessionClosed()

    def drop_connections(self) -> None:
        for conn in list(self.connections):
            conn.abort()

    async def _close_network(self) -> None:
        self.going_down.set()
        if self._acceptor is not None:
            self._acceptor.close()
            with contextlib.suppress(Exception):
                await self._acceptor.wait_closed()
            self._acceptor = None
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()

    async def _handle(self, process: asyncssh.SSHServerProcess[str]) -> None:
        term = Terminal(process)
        shell = ApplianceShell(self, term)
        status = 0
        try:
            if process.command:
                status = await shell.exec_once(process.command)
            else:
                await shell.interactive()
        except (SessionClosed, Cancelled, asyncssh.Error, OSError, BrokenPipeError):
            status = 1
        with contextlib.suppress(Exception):
            process.exit(status)

    # --- update server -------------------------------------------------------------------------
    async def fetch_offers(self) -> list[tuple[SimVersion, str]] | None:
        """Read the committed manifest URL over HTTP; None when there is nothing usable."""
        a = self.appliance
        url = a.committed.listing
        if url == "cisco" or a.fault("no-manifest"):
            return None
        try:
            resp = await self.http.get(url, timeout=10)
        except httpx.HTTPError:
            return None
        if resp.status_code != 200:
            return None
        read = read_manifest(resp.content)
        if read is None:
            return None
        base, offers = read
        if base is not None and base != a.version:
            return None  # a manifest for another release
        # The images server is the one configured in updateconfig; a URL in the manifest only names the path.
        self._images = {o.version: urlsplit(o.image).path if "://" in o.image else o.image for o in offers}
        return sorted((o.version, o.date) for o in offers if o.version > a.version)

    def start_download(self, version: SimVersion) -> None:
        """upgrade > DOWNLOAD: fetch the image in the background; mail keeps flowing."""
        self.cancel_download()
        a = self.appliance
        a.downloading, a.download_percent = version, 0.0
        self._download_task = asyncio.create_task(self._download(version))
        self._tasks.add(self._download_task)
        self._download_task.add_done_callback(self._tasks.discard)

    def cancel_download(self) -> None:
        task = getattr(self, "_download_task", None)
        if task is not None and not task.done():
            task.cancel()
        self.appliance.downloading = None
        self.appliance.download_percent = 0.0

    async def _download(self, version: SimVersion) -> None:
        a = self.appliance
        total = self.rng.uniform(*self.durations.download)
        ok = await self._fetch_image(version)
        for pct in range(10, 101, 10):
            await self.sleep(total / 10)
            a.download_percent = pct
        a.downloading = None
        if ok:
            a.staged = version
            self.event(f"staged:{vdotted(version)}")

    async def _fetch_image(self, version: SimVersion) -> bool:
        host = self.appliance.committed.images
        path = getattr(self, "_images", {}).get(version)
        if host == "cisco" or not path:
            return False
        try:
            async with self.http.stream("GET", f"http://{host}/{path.lstrip('/')}", timeout=30) as resp:
                if resp.status_code != 200:
                    return False
                async for _ in resp.aiter_bytes():
                    pass
        except httpx.HTTPError:
            return False
        self.appliance.image_downloads += 1
        return True

    # --- upgrade and reboot --------------------------------------------------------------------
    def begin_upgrade(self, chosen: SimVersion, from_stage: bool = False) -> UpgradeJob:
        """A confirmed upgrade: it runs on the appliance even if the SSH session that started it drops."""
        a = self.appliance
        a.upgrade_busy = True
        if a.cluster is not None and a.cluster_connected:
            # The footgun of DIALOGUES.md: upgrading a connected machine detaches the whole cluster.
            for m in a.cluster.members:
                m.cluster_connected = False
        job = UpgradeJob()
        task = asyncio.create_task(self._upgrade_work(chosen, job, from_stage))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _upgrade_work(self, chosen: SimVersion, job: UpgradeJob, from_stage: bool = False) -> None:
        a = self.appliance
        d = self.durations
        self.event("upgrade-start" + (":install" if from_stage else ""))
        if from_stage:
            # The image is already here: straight to the install.
            a.staged = None
            await self._install(chosen, job)
            return
        out = job.output
        out.put_nowait("\nDownloading application...\n")
        download_time = self.rng.uniform(*d.download)
        fetched = await self._fetch_image(chosen)
        for pct in (20, 40, 60, 80):
            await self.sleep(download_time / 5)
            out.put_nowait("." * 11 + f" ({pct}% complete)\n")
            if a.fault("upgrade-fail") and pct == 40:
                a.upgrade_busy = False
                job.fail("\nupgrade data interrupted\nUpgrade failure: upgrade could not proceed.\n")
                return
        if not fetched:
            a.upgrade_busy = False
            job.fail("\nUpgrade failure: upgrade data interrupted.\n")
            return
        await self.sleep(download_time / 5)
        out.put_nowait("........... done.\nDownloading Sophos Anti-Virus...\n.................. done.\n")
        await self._install(chosen, job)

    async def _install(self, chosen: SimVersion, job: UpgradeJob) -> None:
        a = self.appliance
        out = job.output
        d = self.durations
        out.put_nowait("Finding partitions... done.\nInstalling application...\n")
        install_time = self.rng.uniform(*d.install)
        for step in range(4):
            await self.sleep(install_time / 4)
            out.put_nowait("." * 16 + f" ({(step + 1) * 25}% complete)\n")
            if step == 1 and a.fault("drop-during-upgrade"):
                self.drop_connections()
        out.put_nowait(" done.\nUpgrade installation finished.\n")
        out.put_nowait(None)
        try:
            seconds = await asyncio.wait_for(asyncio.shield(job.seconds), timeout=max(0.05, 300 * self.time_scale))
        except TimeoutError:
            seconds = 30
        self.schedule_reboot(chosen, seconds)

    def schedule_reboot(self, new_version: SimVersion | None, close_seconds: int) -> None:
        task = asyncio.create_task(self._reboot(new_version, close_seconds))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reboot(self, new_version: SimVersion | None, close_seconds: int) -> None:
        a = self.appliance
        await self.sleep(min(close_seconds, 30) * 0.1)
        a.settle_mail(self.time_scale, self.durations.drain_rate)  # mail up to now, then its share moves
        a.state = "rebooting"
        self.event("reboot")
        await self._close_network()
        await self.sleep_range(self.durations.reboot)
        a.reboots += 1
        a.upgrade_busy = False
        if new_version is not None and not a.fault("wrong-version"):
            a.upgrades_done.append(new_version)
            a.version = new_version
            self.event(f"upgraded:{vdotted(new_version)}")
        if a.fault("reboot-hang"):
            a.state = "down"
            self.event("hung")
            return
        if a.fault("hostkey-change"):
            self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        a.settle_mail(self.time_scale, self.durations.drain_rate)
        a.booted()
        await self.start()
        self.event("up")
