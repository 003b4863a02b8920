"""A scripted AsyncOS-like SSH server for driver tests: real asyncssh on loopback, canned dialogues."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from segtui.asyncos.commands import Appliance, CommandTimeouts
from segtui.asyncos.session import ConnectOptions, Credentials

# (text to write, regex the next input line must match or None to stop reading)
Turn = tuple[str, str | None]


@dataclass
class ScriptedAppliance:
    prompt: str = "esa1.example.com> "
    banner: str = "AsyncOS 15.0.0 for Cisco C300V build 104\nWelcome\n\n"
    crlf: bool = False
    echo: bool = False
    password: str = "pw"
    script: dict[str, list[Turn]] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    silent: set[str] = field(default_factory=set)  # commands that never answer (timeouts)
    drop: set[str] = field(default_factory=set)  # commands after which the session drops
    prompt_after: dict[str, str] = field(default_factory=dict)  # command -> new prompt
    refuse_shell: bool = False  # log in, then refuse the shell (an appliance going down just then)
    hang: set[str] = field(default_factory=set)  # commands whose script is followed by silence, no prompt
    pace: float = 0.0  # seconds between the turns of a script (a slow appliance)
    shells_per_connection: int | None = None  # more shells on one connection are refused (None: no limit)
    logins: int = 0  # successful logins (one per connection)
    connected: int = 0  # connections open now
    refused_shells: int = 0
    password_checks: int = 0


class _Auth(asyncssh.SSHServer):
    def __init__(self, scripted: ScriptedAppliance) -> None:
        self.scripted = scripted

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        self.scripted.password_checks += 1
        return password == self.scripted.password

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.shells = 0
        self.scripted.connected += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.scripted.connected -= 1

    def auth_completed(self) -> None:
        self.scripted.logins += 1
        if self.scripted.refuse_shell:
            asyncio.get_running_loop().call_soon(self.conn.abort)

    def session_requested(self) -> asyncssh.SSHServerProcess[str]:
        # Called only when shells per connection are limited (serve() then passes no process factory): an appliance
        # whose sshd refuses a second session on one connection (OpenSSH's MaxSessions).
        limit = self.scripted.shells_per_connection
        if limit is not None and self.shells >= limit:
            self.scripted.refused_shells += 1
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "open failed")
        self.shells += 1
        return asyncssh.SSHServerProcess(lambda p: _session(self.scripted, p), None, 0, False)


async def _session(sa: ScriptedAppliance, process: asyncssh.SSHServerProcess[str]) -> None:
    def out(text: str) -> None:
        if sa.crlf:
            text = text.replace("\n", "\r\n")
        process.stdout.write(text)

    buf = ""

    async def readline() -> str:
        nonlocal buf
        while "\n" not in buf and "\r" not in buf:
            data = await process.stdin.read(1024)
            if not data:
                raise EOFError
            buf += data
        idx = min(i for i in (buf.find("\n"), buf.find("\r")) if i >= 0)
        line, buf = buf[:idx], buf[idx + 1 :].lstrip("\n")
        if sa.echo:
            out(line + "\n")
        return line

    out(sa.banner + sa.prompt)
    try:
        while True:
            line = (await readline()).strip()
            sa.received.append(line)
            if line in sa.silent:
                await asyncio.sleep(3600)
            for text, expect in sa.script.get(line, [(f"\nUnknown command or missing feature key: {line}\n", None)]):
                if sa.pace:
                    await asyncio.sleep(sa.pace)
                out(text)
                if expect == "KEY":  # the pager takes any single key
                    while not buf:
                        buf += await process.stdin.read(1024)
                    sa.received.append(buf[0])
                    buf = buf[1:]
                    continue
                if expect is not None:
                    answer = await readline()
                    sa.received.append(answer)
                    if not re.fullmatch(expect, answer.strip()):
                        sa.mismatches.append(f"{line}: {answer!r} !~ {expect!r}")
            if line in sa.drop:
                process.channel.get_connection().abort()
                return
            if line in sa.hang:
                await asyncio.sleep(3600)
            if line in sa.prompt_after:
                sa.prompt = sa.prompt_after[line]
            out("\n" + sa.prompt)
    except (EOFError, asyncssh.Error, OSError):
        pass
    finally:
        process.exit(0)


async def serve(sa: ScriptedAppliance, tmp: Path) -> tuple[asyncssh.SSHAcceptor, int, Path, asyncssh.SSHKey]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    acceptor = await asyncssh.create_server(
        lambda: _Auth(sa),
        "127.0.0.1",
        0,
        server_host_keys=[key],
        process_factory=None if sa.shells_per_connection is not None else lambda p: _session(sa, p),
        line_editor=False,
    )
    port = acceptor.sockets[0].getsockname()[1]
    kh = tmp / f"known_hosts_{port}"
    kh.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
    return acceptor, port, kh, key


_PROMPT_LINE_RE = re.compile(r"^(\((?:Cluster|Group|Machine) [^)]+\)|[A-Za-z0-9._-]+)>(?: (.*))?$")
_ANSWERED_RE = re.compile(r"^(.*\]> )(.*)$")
PAGER = "-Press Any Key For More-"


def from_transcript(text: str, **kwargs: Any) -> ScriptedAppliance:
    """A scripted appliance that replays a transcript (tests/data/transcripts format) and checks our answers.

    Each `...]> answer` line becomes a question whose answer must be exactly `answer`; a pager line waits for a
    key; a transcript that ends without a prompt drops the session after its last command (a reboot).
    """
    sa = ScriptedAppliance(**kwargs)
    command: str | None = None
    prompt: str | None = None
    acc: list[str] = []
    turns: list[Turn] = []

    def finish(next_prompt: str | None) -> None:
        assert command is not None
        turns.append(("\n".join(acc), None))
        sa.script[command] = list(turns)
        if next_prompt is None:
            sa.drop.add(command)
        elif next_prompt != prompt:
            sa.prompt_after[command] = next_prompt + "> "

    for line in text.rstrip("\n").split("\n"):
        m = _PROMPT_LINE_RE.match(line)
        if m:
            if command is not None:
                finish(m.group(1))
            else:
                sa.prompt = m.group(1) + "> "
            prompt, command = m.group(1), (m.group(2) or "").strip() or None
            acc, turns = [""], []
            continue
        if command is None:
            continue
        if line.strip() == PAGER:
            turns.append(("\n".join([*acc, PAGER]), "KEY"))
            acc = [""]
            continue
        q = _ANSWERED_RE.match(line)
        if q:
            turns.append(("\n".join([*acc, q.group(1)]), re.escape(q.group(2).strip())))
            acc = [""]
            continue
        acc.append(line)
    if command is not None:
        finish(None)
    return sa


class Served:
    """Scripted appliances served on loopback for one test; any answer a script did not expect fails the test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.items: list[tuple[ScriptedAppliance, asyncssh.SSHAcceptor]] = []

    async def serve(self, sa: ScriptedAppliance) -> tuple[int, Path, asyncssh.SSHKey]:
        acceptor, port, kh, key = await serve(sa, self.tmp_path)
        self.items.append((sa, acceptor))
        return port, kh, key

    def options(self, port: int, kh: Path, password: str, **kwargs: Any) -> ConnectOptions:
        kwargs.setdefault("connect_timeout", 3)
        kwargs.setdefault("login_timeout", 3)
        return ConnectOptions("esa1", "127.0.0.1", port, Credentials("admin", password), kh, **kwargs)

    async def connect(
        self,
        sa: ScriptedAppliance,
        *,
        password: str | None = None,
        known_hosts: Path | None = None,
        timeout: float = 5,
        **appliance_kwargs: Any,
    ) -> Appliance:
        port, kh, _ = await self.serve(sa)
        opts = self.options(port, known_hosts or kh, password or sa.password)
        timeouts = CommandTimeouts(default=timeout, analysis=timeout, upgrade=timeout, backup=timeout)
        return Appliance(opts, timeouts=timeouts, **appliance_kwargs)

    def mismatches(self) -> list[str]:
        return [m for sa, _ in self.items for m in sa.mismatches]

    async def close(self) -> None:
        for _, acceptor in self.items:
            acceptor.close()


@asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[Served]:
    """Scripted appliances for one test (use in a fixture); fails the test if any received an answer its script
    did not expect."""
    s = Served(tmp_path)
    try:
        yield s
    finally:
        await s.close()
    if s.mismatches():
        pytest.fail(f"scripted appliance got unexpected answers: {s.mismatches()}")
