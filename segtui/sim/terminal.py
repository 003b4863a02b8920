"""Line I/O for the simulated CLI over an asyncssh process without asyncssh's line editor."""

from __future__ import annotations

import asyncssh


class SessionClosed(Exception):
    """The client went away."""


class Cancelled(Exception):
    """The operator pressed ctrl+c: back to the prompt."""


class Terminal:
    """Echoes what the client types (as AsyncOS does), uses CRLF on a PTY, handles backspace."""

    def __init__(self, process: asyncssh.SSHServerProcess[str]) -> None:
        self._process = process
        self.pty = process.get_terminal_type() is not None
        self._pending = ""

    def write(self, text: str) -> None:
        if self.pty:
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        try:
            self._process.stdout.write(text)
        except (asyncssh.Error, OSError, BrokenPipeError) as exc:
            raise SessionClosed() from exc

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    async def _more(self) -> str:
        try:
            data = await self._process.stdin.read(4096)
        except (asyncssh.Error, OSError, asyncssh.BreakReceived, asyncssh.TerminalSizeChanged) as exc:
            if isinstance(exc, asyncssh.TerminalSizeChanged):
                return ""
            raise SessionClosed() from exc
        if not data:
            raise SessionClosed()
        return data

    async def key(self) -> str:
        """One key press (for the pager)."""
        while not self._pending:
            self._pending += await self._more()
        ch, self._pending = self._pending[0], self._pending[1:]
        if ch == "\r" and self._pending.startswith("\n"):
            self._pending = self._pending[1:]
        return ch

    async def readline(self) -> str:
        # The echo of what arrived together goes back together (a PTY's echo reaches sshd as one read, not a packet
        # per key), and always before waiting for more input.
        line = ""
        echo = ""
        while True:
            while not self._pending:
                if echo:
                    self.write(echo)
                    echo = ""
                self._pending += await self._more()
            ch, self._pending = self._pending[0], self._pending[1:]
            if ch in "\r\n":
                if ch == "\r" and self._pending.startswith("\n"):
                    self._pending = self._pending[1:]
                if self.pty:
                    self.write(echo + "\n")
                return line
            if ch == "\x03":
                if self.pty:
                    self.write(echo + "^C\n")
                raise Cancelled()
            if ch == "\x04" and not line:
                if echo:
                    self.write(echo)
                raise SessionClosed()
            if ch in "\x7f\x08":
                if line:
                    line = line[:-1]
                    if self.pty:
                        echo += "\b \b"
                continue
            if ch == "\x1b":  # drop escape sequences (arrow keys)
                self._pending = self._pending.lstrip("[0123456789;ABCDEFHOPQRS~")
                continue
            line += ch
            if self.pty:
                echo += ch
