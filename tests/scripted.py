"""A scripted AsyncOS-like SSH server for driver tests: real asyncssh on loopback, canned dialogues."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

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


class _Auth(asyncssh.SSHServer):
    def __init__(self, scripted: ScriptedAppliance) -> None:
        self.scripted = scripted

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return password == self.scripted.password

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def auth_completed(self) -> None:
        if self.scripted.refuse_shell:
            asyncio.get_running_loop().call_soon(self.conn.abort)


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
        process_factory=lambda p: _session(sa, p),
        line_editor=False,
    )
    port = acceptor.sockets[0].getsockname()[1]
    kh = tmp / f"known_hosts_{port}"
    kh.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
    return acceptor, port, kh, key
