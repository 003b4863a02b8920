"""An interactive AsyncOS CLI session over asyncssh: prompts, pager, questions, deadlines."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from segtui.asyncos import parsers
from segtui.asyncos.errors import (
    ApplianceError,
    AuthFailed,
    CommandTimeout,
    ConnectFailed,
    ConnectionLost,
    DialogueError,
    HostKeyRejected,
    UnknownCommand,
)

# A PTY this large keeps most output off the pager; the pager is still handled.
PTY_SIZE = (512, 10000)


@dataclass(frozen=True)
class Answer:
    """Reply to a question whose text matches `pattern` (case-insensitive regex).

    `reply` is a string or a function of the question text. `after` restricts the answer to the
    question right after one matching that pattern (e.g. the host that belongs to the AsyncOS
    question, not to another service's); `times` limits how often it is used in one command.
    """

    pattern: str
    reply: str | Callable[[str], str]
    after: str | None = None
    times: int | None = None

    def matches(self, question: str, previous: str) -> bool:
        if self.after is not None and not re.search(self.after, previous, re.IGNORECASE | re.DOTALL):
            return False
        return re.search(self.pattern, question, re.IGNORECASE | re.DOTALL) is not None

    def reply_to(self, question: str) -> str:
        return self.reply(question) if callable(self.reply) else self.reply


# Asked by clustered appliances before machine-level commands: always switch to machine mode.
MACHINE_MODE = Answer(r"switch to \"?Machine .*mode", "Y")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str | None = field(default=None, repr=False)
    key_file: Path | None = None


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach one appliance; host keys are always verified."""

    name: str
    host: str
    port: int
    credentials: Credentials
    known_hosts: Any  # asyncssh.SSHKnownHosts parsed once per inventory
    connect_timeout: float = 15.0
    login_timeout: float = 30.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 4


@dataclass
class Exchange:
    """One command sent and everything received, for transcripts (secrets already redacted)."""

    command: str
    output: str
    started: float
    finished: float


OutputCallback = Callable[[str], None]
TranscriptSink = Callable[[Exchange], None]


async def open_connection(opts: ConnectOptions) -> asyncssh.SSHClientConnection:
    """Connect with host-key verification, explicit timeouts and keepalives; map failures to typed errors."""
    creds = opts.credentials
    kwargs: dict[str, Any] = {
        "port": opts.port,
        "username": creds.username,
        "known_hosts": opts.known_hosts,
        "connect_timeout": opts.connect_timeout,
        "login_timeout": opts.login_timeout,
        "keepalive_interval": opts.keepalive_interval,
        "keepalive_count_max": opts.keepalive_count_max,
        "config": None,
        "agent_path": None,
        "preferred_auth": "publickey,keyboard-interactive,password",
    }
    if creds.key_file is not None:
        kwargs["client_keys"] = [str(creds.key_file)]
    else:
        kwargs["client_keys"] = None
    if creds.password is not None:
        kwargs["password"] = creds.password
    try:
        return await asyncssh.connect(opts.host, **kwargs)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise HostKeyRejected(
            opts.name,
            f"host key for {opts.host}:{opts.port} is not in known_hosts or has changed ({exc.reason}); "
            f"verify the fingerprint on the appliance console, then add it with "
            f"`ssh-keyscan -p {opts.port} {opts.host} >> known_hosts`",
        ) from None
    except asyncssh.PermissionDenied:
        raise AuthFailed(opts.name, f"authentication failed for {creds.username}@{opts.host}") from None
    except TimeoutError:
        raise ConnectFailed(opts.name, f"timed out connecting to {opts.host}:{opts.port}") from None
    except ConnectionRefusedError:
        raise ConnectFailed(opts.name, f"connection refused by {opts.host}:{opts.port}") from None
    except (OSError, asyncssh.Error) as exc:
        raise ConnectFailed(opts.name, f"cannot connect to {opts.host}:{opts.port}: {exc}") from None


class CLISession:
    """One interactive shell on one appliance; commands run one at a time."""

    def __init__(
        self,
        name: str,
        conn: asyncssh.SSHClientConnection,
        process: asyncssh.SSHClientProcess[str],
        *,
        transcript: TranscriptSink | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.conn = conn
        self._process = process
        self._buffer = ""
        self._transcript = transcript
        self._secrets = [s for s in secrets if s]
        self._lock = asyncio.Lock()
        self.prompt: str | None = None

    @classmethod
    async def open(
        cls,
        opts: ConnectOptions,
        *,
        transcript: TranscriptSink | None = None,
        banner_timeout: float = 30.0,
    ) -> CLISession:
        conn = await open_connection(opts)
        try:
            process = await conn.create_process(
                term_type="vt100", term_size=PTY_SIZE, encoding="utf-8", errors="replace"
            )
            secrets = [opts.credentials.password] if opts.credentials.password else []
            session = cls(opts.name, conn, process, transcript=transcript, secrets=secrets)
            await session._read_to_prompt(deadline=time.monotonic() + banner_timeout, command="(login)")
        except (OSError, asyncssh.Error) as exc:
            # The appliance went away between login and the shell (e.g. it is rebooting).
            conn.close()
            raise ConnectionLost(opts.name, f"session dropped while opening the shell: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return session

    async def __aenter__(self) -> CLISession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.conn.close()
        try:
            async with asyncio.timeout(5):
                await self.conn.wait_closed()
        except (TimeoutError, OSError, asyncssh.Error):
            pass

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "********")
        return text

    def _send(self, text: str, command: str) -> None:
        try:
            self._process.stdin.write(text)
        except (OSError, asyncssh.Error) as exc:
            raise ConnectionLost(self.name, f"session dropped during `{command}`: {exc}") from None

    async def _read_chunk(self, deadline: float, command: str) -> str:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CommandTimeout(self.name, f"`{command}` did not finish before its deadline")
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation (abort, skip).
            async with asyncio.timeout(remaining):
                chunk = await self._process.stdout.read(65536)
        except TimeoutError:
            raise CommandTimeout(self.name, f"`{command}` did not finish before its deadline") from None
        except (asyncssh.Error, OSError, asyncio.IncompleteReadError) as exc:
            raise ConnectionLost(self.name, f"session dropped during `{command}`: {exc}") from None
        if not chunk:
            raise ConnectionLost(self.name, f"session closed during `{command}`")
        return chunk

    async def _read_to_prompt(
        self,
        *,
        deadline: float,
        command: str,
        answers: Sequence[Answer] = (),
        on_output: OutputCallback | None = None,
    ) -> str:
        """Read until the main prompt, answering questions and paging; return the raw text."""
        start = len(self._buffer)
        consumed = start
        used: dict[int, int] = {}
        previous = ""
        repeats = 0
        fresh = False  # whether the buffer holds data not yet evaluated
        while True:
            if not fresh:
                chunk = await self._read_chunk(deadline, command)
                self._buffer += chunk
                if on_output is not None:
                    on_output(parsers.normalize(chunk))
            fresh = False
            norm_tail = self._buffer[consumed:].replace("\r", "")
            if parsers.PAGER_RE.search(norm_tail):
                self._send(" ", command)
                consumed = len(self._buffer)
                continue
            label = parsers.prompt_at_end(self._buffer[max(0, start - 1) :].replace("\r", ""))
            if label is not None:
                self.prompt = label
                text = self._buffer[start:]
                self._buffer = ""
                return text
            default = parsers.question_at_end(norm_tail)
            if default is not None:
                # An answer the appliance keeps refusing would loop until the deadline: fail clearly.
                repeats = repeats + 1 if norm_tail.strip() == previous.strip() else 0
                if repeats >= 3:
                    last = norm_tail.strip().splitlines()[-3:]
                    raise DialogueError(self.name, f"`{command}` keeps asking the same question: {' / '.join(last)}")
                reply = self._choose_answer(norm_tail, previous, answers, used, default)
                self._send(reply + "\n", command)
                consumed = len(self._buffer)
                previous = norm_tail
                continue
            if parsers.PASSWORD_QUESTION_RE.search(norm_tail):
                # "Choose the password option:" is followed by a menu; only a line that stays
                # quiet is a real password question.
                more = await self._more_soon(on_output)
                if more:
                    fresh = True
                    continue
                reply = self._choose_answer(norm_tail, previous, answers, used, None)
                self._send(reply + "\n", command)
                consumed = len(self._buffer)
                previous = norm_tail

    async def _more_soon(self, on_output: OutputCallback | None, wait: float = 0.5) -> bool:
        """Whether more output arrives within `wait` seconds (it is appended to the buffer)."""
        try:
            async with asyncio.timeout(wait):
                chunk = await self._process.stdout.read(65536)
        except (TimeoutError, asyncssh.Error, OSError):
            return False
        if not chunk:
            return False
        self._buffer += chunk
        if on_output is not None:
            on_output(parsers.normalize(chunk))
        return True

    def _choose_answer(
        self,
        question: str,
        previous: str,
        answers: Sequence[Answer],
        used: dict[int, int],
        default: str | None,
    ) -> str:
        # The question is the text since our last answer; only its last lines are matched so that
        # a long printout before a menu does not trigger answers meant for other questions.
        text = "\n".join(question.strip("\n").split("\n")[-14:])
        for idx, answer in enumerate((*answers, MACHINE_MODE)):
            if answer.times is not None and used.get(idx, 0) >= answer.times:
                continue
            if answer.matches(text, previous):
                used[idx] = used.get(idx, 0) + 1
                return answer.reply_to(text)
        if default is None:
            raise DialogueError(self.name, f"asked for a secret we have no answer for: {text.splitlines()[-1]!r}")
        # Unknown question: take the appliance's default, as an operator pressing Enter would.
        return ""

    async def run(
        self,
        command: str,
        *,
        timeout: float,
        answers: Sequence[Answer] = (),
        on_output: OutputCallback | None = None,
        check_unknown: bool = True,
    ) -> str:
        """Send one command, drive its dialogue to the main prompt, return normalized output."""
        async with self._lock:
            started = time.time()
            self._send(command + "\n", command)
            raw = await self._read_to_prompt(
                deadline=time.monotonic() + timeout, command=command, answers=answers, on_output=on_output
            )
            text = parsers.normalize(raw)
            # Drop the echoed command and the trailing prompt.
            lines = text.split("\n")
            if lines and lines[0].strip() == command.strip():
                lines = lines[1:]
            if lines and parsers.MAIN_PROMPT_RE.search(lines[-1]):
                lines = lines[:-1]
            # Every line of the answer is complete (the prompt followed it): keep the final newline.
            output = "\n".join(lines).strip("\n") + "\n"
            if self._transcript is not None:
                self._transcript(Exchange(command, self.redact(output), started, time.time()))
            if check_unknown and parsers.find_marker(output, parsers.UNKNOWN_COMMAND_MARKERS):
                raise UnknownCommand(self.name, f"appliance does not know `{command}`")
            return output

    async def write_raw(self, text: str) -> None:
        self._send(text, "(raw)")


async def exec_readonly(opts: ConnectOptions, command: str, timeout: float = 30.0) -> str:
    """One-shot SSH exec of a read-only command (no PTY, no dialogue)."""
    conn = await open_connection(opts)
    try:
        async with asyncio.timeout(timeout):
            result = await conn.run(command, check=False)
    except TimeoutError:
        raise CommandTimeout(opts.name, f"`{command}` timed out") from None
    except (asyncssh.Error, OSError) as exc:
        raise ConnectionLost(opts.name, f"exec `{command}` failed: {exc}") from None
    finally:
        conn.close()
    out = result.stdout if isinstance(result.stdout, str) else (result.stdout or b"").decode()
    return parsers.normalize(out)


__all__ = [
    "Answer",
    "ApplianceError",
    "CLISession",
    "ConnectOptions",
    "Credentials",
    "Exchange",
    "exec_readonly",
    "open_connection",
]
