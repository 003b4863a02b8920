"""An interactive AsyncOS CLI session over asyncssh: prompts, pager, questions, deadlines.

What the appliance sends is data, never control: every chunk loses its terminal control sequences before anything
looks at it; the prompt, question, password and pager checks look only at a bounded tail of what was received, in
linear time (no pattern that can backtrack on appliance text); and one command's output is capped.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncssh

from segtui.asyncos import parsers
from segtui.asyncos.connections import Lease
from segtui.asyncos.errors import (
    ApplianceError,
    AuthFailed,
    CommandTimeout,
    ConnectFailed,
    ConnectionLost,
    DialogueError,
    HostKeyRejected,
    KeyFileError,
    OutputTooLarge,
    UnknownCommand,
    UnknownQuestion,
)
from segtui.textsafe import Redactor, one_line, strip_control

# A PTY this large keeps most output off the pager; the pager is still handled.
PTY_SIZE = (512, 10000)

# The prompt, question, password and pager checks look at no more than this much of the end of the text.
TAIL_CHARS = 4096
# A question is the text since the last answer, at most this much of its end. Enough for any list AsyncOS
# prints before a question; small enough that an answer's pattern stays cheap on hostile text.
QUESTION_CHARS = 16 * 1024
# An unterminated control sequence at the end of a chunk waits for the next chunk, up to this length.
HELD_CHARS = 4096
# A transcript keeps at most this much of one command's output (its beginning and its end).
TRANSCRIPT_CHARS = 256 * 1024
# Deadline for the rest of a line that looks like a password question (it may be a menu's heading).
PASSWORD_QUIET = 0.5
# The main prompt counts once the stream stays quiet this long after it: a prompt-like line inside a printout is
# followed by more text within milliseconds. Short enough not to slow commands noticeably.
PROMPT_QUIET = 0.08

# How an SSH server says no to one more session on a connection (OpenSSH's MaxSessions, a refused PTY or shell); a
# connection closing at that moment says OPEN_CONNECT_FAILED, which is not a refusal.
_REFUSALS = frozenset(
    {
        asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
        asyncssh.OPEN_RESOURCE_SHORTAGE,
        asyncssh.OPEN_REQUEST_PTY_FAILED,
        asyncssh.OPEN_REQUEST_SESSION_FAILED,
    }
)

PAGER_MARKER = "-Press Any Key For More-"
_PAGER_ANYWHERE_RE = re.compile(r"-Press Any Key For More-[ \t]*\n?")

# A control sequence cut off at the end of a chunk (its remainder arrives with the next one).
_INCOMPLETE_CONTROL_RE = re.compile(
    r"""
    \x1b
  | (?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*        # CSI without its final byte
  | (?:\x1b\]|\x9d)[^\x07\x1b\x9c]*                # OSC without BEL or ST
  | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*  # DCS, SOS, PM, APC without ST
  | \x1b[\x20-\x2f]+                               # escape with intermediates only
    """,
    re.VERBOSE,
)
_CONTROL_INTRODUCERS = "\x1b\x9b\x9d\x90\x98\x9e\x9f"
_ERASE_RE = re.compile(r"\r[ \t]+\r")
_PROMPT_LABEL_RE = re.compile(r"\((?:Cluster|Group|Machine) [^)\n]+\)|[A-Za-z0-9._-]+")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})")
_SWITCH_MACHINE_RE = re.compile(r'switch to "Machine ([A-Za-z0-9._-]{1,253})" mode', re.IGNORECASE)
_FILE_WRITTEN_RE = re.compile(r'File written on machine "([A-Za-z0-9._-]{1,253})"', re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    """Reply to a question whose text matches `pattern` (case-insensitive regex).

    The question is everything the appliance sent since the previous answer (pager stops taken out), so the
    pattern sees a list's header as well as its items. `reply` is a string or a function of the question text.
    `after` restricts the answer to the question right after one matching that pattern (e.g. the host that belongs
    to the AsyncOS question, not to another service's); `times` limits how often it is used in one command.
    `defaults_only` answers only questions that have a default (`[...]> `), never a password question.
    `when(question)` must be true for the answer to apply (e.g. only before a release was chosen).
    """

    pattern: str
    reply: str | Callable[[str], str]
    after: str | None = None
    times: int | None = None
    defaults_only: bool = False
    when: Callable[[str], bool] | None = None

    def matches(self, question: str, previous: str) -> bool:
        if self.when is not None and not self.when(question):
            return False
        if self.after is not None and not re.search(self.after, previous, re.IGNORECASE | re.DOTALL):
            return False
        return re.search(self.pattern, question, re.IGNORECASE | re.DOTALL) is not None

    def reply_to(self, question: str) -> str:
        return self.reply(question) if callable(self.reply) else self.reply


# Asked by clustered appliances before machine-level commands: always switch to machine mode.
# A bounded gap on one line: linear on a question of "switch to Machine " repeated over 16 KiB.
MACHINE_MODE = Answer(r"switch to \"?Machine [^\n]{0,300}?mode", "Y")

# Put last in a command's answers where taking the default for every other question is the documented way to walk
# it (updateconfig SETUP asks one question per update service: DIALOGUES.md section 5). Those questions are then
# known, not unknown: never recorded nor stopped at. A password question is never answered by it.
OTHERWISE_DEFAULT = Answer("", "", defaults_only=True)


@dataclass(frozen=True)
class DialoguePolicy:
    """What to do with a question no rule answers, and how much output one command may send."""

    on_unknown: Literal["default", "stop"] = "default"
    max_output_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str | None = field(default=None, repr=False)
    key_file: Path | None = None


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach one appliance; host keys are always verified against `known_hosts`.

    `known_hosts` is the file, read anew at every connection attempt: a key the operator adds counts at once.
    """

    name: str
    host: str
    port: int
    credentials: Credentials
    known_hosts: Path | str
    connect_timeout: float = 15.0
    login_timeout: float = 30.0
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 4


@dataclass
class Exchange:
    """One command sent and everything received, for transcripts (secrets redacted, progress folded).

    `complete` is False when the command ended without its prompt (dropped session, deadline, any error);
    `error` then says why, and `output` holds what was received until then.
    """

    command: str
    output: str
    started: float
    finished: float
    complete: bool = True
    error: str | None = None


OutputCallback = Callable[[str], None]
TranscriptSink = Callable[[Exchange], None]
UnknownQuestionSink = Callable[[str, str], None]  # (command, the question's last lines)


# Parsed known_hosts files by path, with the file's identity when parsed: re-read whenever the file changes (a key
# the operator adds counts at the next attempt), not re-parsed for every one of a fleet's connections.
_KNOWN_HOSTS: dict[Path, tuple[tuple[int, int, int, int], asyncssh.SSHKnownHosts]] = {}


def _known_hosts(opts: ConnectOptions) -> asyncssh.SSHKnownHosts:
    path = Path(opts.known_hosts).expanduser().absolute()
    try:
        st = os.stat(path)
        signature = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        cached = _KNOWN_HOSTS.get(path)
        if cached is not None and cached[0] == signature:
            return cached[1]
        parsed = asyncssh.read_known_hosts(str(path))
        if len(_KNOWN_HOSTS) >= 64:
            _KNOWN_HOSTS.clear()
        _KNOWN_HOSTS[path] = (signature, parsed)
        return parsed
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HostKeyRejected(opts.name, f"cannot read known_hosts {path}: {reason}") from None
    except ValueError as exc:
        raise HostKeyRejected(opts.name, f"known_hosts {path} cannot be parsed: {one_line(str(exc), 200)}") from None


def _client_key(opts: ConnectOptions, key_file: Path) -> asyncssh.SSHKey:
    path = key_file.expanduser().absolute()
    try:
        return asyncssh.read_private_key(str(path))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KeyFileError(opts.name, f"cannot read key_file {path}: {reason}") from None
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise KeyFileError(opts.name, f"key_file {path} cannot be used: {one_line(str(exc), 200)}") from None


def host_key_hint(opts: ConnectOptions) -> str:
    """How an operator adds a host key safely: compare the fingerprint first, then append to the right file."""
    kh = shlex.quote(str(Path(opts.known_hosts).expanduser().absolute()))
    host = shlex.quote(opts.host)
    entry = shlex.quote(opts.host if opts.port == 22 else f"[{opts.host}]:{opts.port}")
    return (
        f"compare the key's fingerprint with the one on the appliance console first: "
        f"`ssh-keyscan -p {opts.port} {host} | ssh-keygen -lf -`; only if they match, add it: "
        f"`ssh-keyscan -p {opts.port} {host} >> {kh}` (if the key changed, first remove the old one: "
        f"`ssh-keygen -f {kh} -R {entry}`)"
    )


ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)


async def open_connection(opts: ConnectOptions) -> asyncssh.SSHClientConnection:
    """Connect with host-key verification, explicit timeouts and keepalives; map failures to typed errors."""
    creds = opts.credentials
    kwargs: dict[str, Any] = {
        "port": opts.port,
        "username": creds.username,
        # Read anew at every attempt: a key added by the operator counts at once.
        "known_hosts": _known_hosts(opts),
        "connect_timeout": opts.connect_timeout,
        "login_timeout": opts.login_timeout,
        "keepalive_interval": opts.keepalive_interval,
        "keepalive_count_max": opts.keepalive_count_max,
        "config": None,
        "agent_path": None,
        "preferred_auth": "publickey,keyboard-interactive,password",
        # AES-GCM first: asyncssh's AEAD on AES costs a fraction of its ChaCha20 per packet (a fleet's sessions
        # receive thousands of packets a second); every default stays acceptable, the server picks among them.
        "encryption_algs": ENCRYPTION_ALGS,
        "client_keys": [_client_key(opts, creds.key_file)] if creds.key_file is not None else None,
    }
    if creds.password is not None:
        kwargs["password"] = creds.password
    try:
        return await asyncssh.connect(opts.host, **kwargs)
    except asyncssh.HostKeyNotVerifiable as exc:
        kh = Path(opts.known_hosts).expanduser().absolute()
        raise HostKeyRejected(
            opts.name,
            f"host key for {opts.host}:{opts.port} is not in {kh} or has changed ({one_line(exc.reason, 200)}); "
            + host_key_hint(opts),
        ) from None
    except asyncssh.PermissionDenied:
        raise AuthFailed(opts.name, f"authentication failed for {creds.username}@{opts.host}") from None
    except asyncssh.KeyImportError as exc:
        raise KeyFileError(opts.name, f"SSH key cannot be used: {one_line(str(exc), 200)}") from None
    except TimeoutError:
        raise ConnectFailed(opts.name, f"timed out connecting to {opts.host}:{opts.port}") from None
    except ConnectionRefusedError:
        raise ConnectFailed(opts.name, f"connection refused by {opts.host}:{opts.port}") from None
    except (OSError, asyncssh.Error, ValueError) as exc:
        raise ConnectFailed(
            opts.name, f"cannot connect to {opts.host}:{opts.port}: {one_line(str(exc), 200)}"
        ) from None


# --- bounded, linear-time checks on the end of the received text ------------------------------------------------


def split_incomplete_control(text: str) -> tuple[str, str]:
    """`text` split into what can be cleaned now and an unterminated control sequence at its very end."""
    start = max(0, len(text) - HELD_CHARS)
    idx = max(text.rfind(c, start) for c in _CONTROL_INTRODUCERS)
    if idx >= 0 and _INCOMPLETE_CONTROL_RE.fullmatch(text, idx):
        return text[:idx], text[idx:]
    return text, ""


def clean_chunk(held: str, chunk: str) -> tuple[str, str]:
    """One chunk cleaned of control sequences, given what was held back from the chunk before.

    Returns the clean text and the new held-back tail (an unterminated sequence): a sequence split across chunks
    is removed whole, never half.
    """
    ready, held = split_incomplete_control(held + chunk)
    return strip_control(ready), held


def flatten(text: str) -> str:
    """CRLF to LF and erased pager lines (`\\r` + spaces + `\\r`) and stray CRs removed; pager markers kept."""
    return _ERASE_RE.sub("", text).replace("\r\n", "\n").replace("\r", "")


def pager_at_end(flat: str) -> bool:
    return flat.rstrip().endswith(PAGER_MARKER)


def prompt_label(line: str) -> str | None:
    """The main prompt's label if `line` (one whole line) is exactly the prompt."""
    if not line.endswith("> "):
        return None
    label = line[:-2]
    return label if _PROMPT_LABEL_RE.fullmatch(label) else None


def question_default(line: str) -> str | None:
    """The default of a `[default]> ` question that `line` (the last line) ends with; None if it is none."""
    if not line.endswith("]> "):
        return None
    body = line[:-3]
    idx = body.rfind("[")
    if idx < 0 or "]" in body[idx + 1 :]:
        return None
    return body[idx + 1 :]


def password_at_end(flat: str) -> bool:
    """Whether the text ends in a line asking for a password or passphrase (ending in `:`)."""
    text = flat.rstrip()
    if not text.endswith(":"):
        return False
    low = text[text.rfind("\n") + 1 :].lower()
    return "password" in low or "passphrase" in low


def hostname_from_label(label: str) -> str | None:
    """`host` -> host; `(Machine fqdn)` -> fqdn; cluster and group prompts name no machine."""
    if label.startswith("("):
        if not label.startswith("(Machine "):
            return None
        label = label[len("(Machine ") : -1]
    return label if _HOSTNAME_RE.fullmatch(label) else None


def _is_progress(line: str) -> bool:
    text = line.strip()
    if not text:
        return False
    if "% complete)" in text:
        return True
    return not text.strip(". \t")


def shorten(text: str, limit: int = TRANSCRIPT_CHARS) -> str:
    """At most `limit` characters: the beginning and the end, with what was left out counted between them."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… {len(text) - 2 * half} characters left out …\n{text[-half:]}"


def fold_progress(text: str, keep: int = 1) -> str:
    """Runs of progress lines (rows of dots, `(NN% complete)`) folded to their first and last line."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _is_progress(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and _is_progress(lines[j]):
            j += 1
        run = lines[i:j]
        if len(run) > 2 * keep + 1:
            out.extend([*run[:keep], f"… {len(run) - 2 * keep} progress lines …", *run[-keep:]])
        else:
            out.extend(run)
        i = j
    return "\n".join(out)


class _Received:
    """What one command received: all of it (capped) and the text since the last answer (bounded)."""

    def __init__(self, limit: int, sent: str = "") -> None:
        self.sent = sent  # what we typed last (the command, then each answer): the appliance may echo it
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit
        self.since = ""  # control sequences stripped, CRs kept; at most 2 * QUESTION_CHARS
        self.since_start = 0  # absolute offset (since the last answer) of since[0]
        self.since_end = 0  # absolute offset of since's end
        self.mark = 0  # absolute offset after the last pager stop answered (a line start)

    def add(self, chunk: str) -> bool:
        """Append a cleaned chunk; False when the command's output is over its cap."""
        self.parts.append(chunk)
        self.size += len(chunk.encode("utf-8", "replace"))
        self.since += chunk
        self.since_end += len(chunk)
        if len(self.since) > 2 * QUESTION_CHARS:
            cut = len(self.since) - QUESTION_CHARS
            self.since = self.since[cut:]
            self.since_start += cut
        return self.size <= self.limit

    def tail(self) -> tuple[str, str | None]:
        """The flattened end of the text after the last pager stop, and its last whole line (None if the
        tail holds no line start: a line longer than the tail)."""
        start = max(self.mark, self.since_end - TAIL_CHARS)
        flat = flatten(self.since[start - self.since_start :])
        idx = flat.rfind("\n")
        if idx < 0 and start != self.mark:
            return flat, None
        return flat, flat[idx + 1 :]

    def pager_answered(self) -> None:
        self.mark = self.since_end

    def question(self) -> str:
        """Everything since the last answer (its last QUESTION_CHARS), pager stops and erasures taken out,
        without the echo of what we typed."""
        text = parsers.normalize(self.since[-QUESTION_CHARS:])
        if self.since_start == 0 and self.sent.strip():
            first, sep, rest = text.lstrip("\n").partition("\n")
            if sep and first.strip() == self.sent.strip():
                return rest
        return text

    def answered(self, reply: str) -> None:
        self.sent = reply
        self.since = ""
        self.since_start = self.since_end = self.mark = 0

    def text(self) -> str:
        return "".join(self.parts)


class CLISession:
    """One interactive shell on one appliance; commands run one at a time."""

    def __init__(
        self,
        name: str,
        lease: Lease,
        process: asyncssh.SSHClientProcess[str],
        *,
        transcript: TranscriptSink | None = None,
        redactor: Redactor | None = None,
        policy: DialoguePolicy | None = None,
        on_unknown: UnknownQuestionSink | None = None,
    ) -> None:
        self.name = name
        self.lease = lease  # its connection: its own, or shared with the appliance's other sessions
        self.conn = lease.conn
        self._process = process
        self._held = ""  # an unterminated control sequence from the end of the last chunk
        self._transcript = transcript
        self._redactor = redactor or Redactor()
        self.policy = policy or DialoguePolicy()
        self._on_unknown = on_unknown
        self._lock = asyncio.Lock()
        self.prompt: str | None = None
        self.hostname: str | None = None  # the appliance's own name, as it shows it (never the inventory's)

    @classmethod
    async def open(
        cls,
        opts: ConnectOptions,
        lease: Lease,
        *,
        transcript: TranscriptSink | None = None,
        policy: DialoguePolicy | None = None,
        on_unknown: UnknownQuestionSink | None = None,
        secrets: Sequence[str] = (),
        banner_timeout: float = 30.0,
    ) -> CLISession:
        """Open a shell on the leased connection and read to the first prompt.

        `secrets` (besides the password) are masked in transcripts; `on_unknown(command, question)` is called for
        each question no answer matched (its default was taken, or the command stops with policy "stop").
        On any failure the lease is released and its connection retired.
        """
        try:
            process = await lease.conn.create_process(
                term_type="vt100", term_size=PTY_SIZE, encoding="utf-8", errors="replace"
            )
            redactor = Redactor([opts.credentials.password, *secrets])
            session = cls(
                opts.name,
                lease,
                process,
                transcript=transcript,
                redactor=redactor,
                policy=policy,
                on_unknown=on_unknown,
            )
            rx = _Received(session.policy.max_output_bytes)
            await session._read_to_prompt(rx, deadline=time.monotonic() + banner_timeout, command="(login)")
        except (OSError, asyncssh.Error) as exc:
            if lease.shared and isinstance(exc, asyncssh.ChannelOpenError) and exc.code in _REFUSALS:
                lease.refused()  # no second shell on a live connection: one connection per session from now on
            # Or the appliance went away between login and the shell (e.g. it is rebooting).
            await lease.release(reuse=False)
            raise ConnectionLost(
                opts.name, f"session dropped while opening the shell: {one_line(str(exc), 200)}"
            ) from None
        except BaseException:
            await lease.release(reuse=False)
            raise
        return session

    async def __aenter__(self) -> CLISession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, *, reuse: bool = True) -> None:
        """Close the shell; its connection closes too, unless shared (`reuse=False`: it is not to be shared again)."""
        self._process.close()
        await self.lease.release(reuse=reuse)

    def redact(self, text: str) -> str:
        return self._redactor(text)

    def _send(self, text: str, command: str) -> None:
        try:
            self._process.stdin.write(text)
        except (OSError, asyncssh.Error) as exc:
            raise ConnectionLost(self.name, f"session dropped during `{command}`: {one_line(str(exc), 200)}") from None

    async def _read_raw(self, deadline: float, command: str) -> str:
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
            raise ConnectionLost(self.name, f"session dropped during `{command}`: {one_line(str(exc), 200)}") from None
        if not chunk:
            raise ConnectionLost(self.name, f"session closed during `{command}`")
        return chunk

    def _take(self, rx: _Received, chunk: str, command: str, on_output: OutputCallback | None) -> None:
        """Clean one chunk at the session boundary, append it, and pass it on."""
        clean, self._held = clean_chunk(self._held, chunk)
        if not rx.add(clean):
            raise OutputTooLarge(
                self.name,
                f"`{command}` sent more than {rx.limit} bytes without reaching the prompt; stopped reading "
                f"(per-command output cap)",
            )
        if on_output is not None and clean:
            on_output(parsers.normalize(clean))

    async def _read_to_prompt(
        self,
        rx: _Received,
        *,
        deadline: float,
        command: str,
        answers: Sequence[Answer] = (),
        on_output: OutputCallback | None = None,
    ) -> str:
        """Read until the main prompt, answering questions and paging; return the cleaned text (CRs kept)."""
        used: dict[int, int] = {}
        previous = ""
        repeats = 0
        fresh = False  # whether rx holds data not yet evaluated
        while True:
            if not fresh:
                self._take(rx, await self._read_raw(deadline, command), command, on_output)
                # A read of buffered data does not suspend: let other appliances' sessions run between chunks.
                await asyncio.sleep(0)
            fresh = False
            flat, line = rx.tail()
            if pager_at_end(flat):
                self._send(" ", command)
                rx.pager_answered()
                continue
            label = prompt_label(line) if line is not None else None
            if label is not None:
                # A prompt-like line inside a printout (`esa1> ` followed by more text) must not end the command:
                # the real prompt is the end of the text and the stream stays quiet after it.
                if await self._more_soon(rx, deadline, command, on_output, PROMPT_QUIET, at_deadline=True):
                    fresh = True
                    continue
                self._learn_prompt(label)
                return rx.text()
            default = question_default(line) if line is not None else None
            if default is None and not password_at_end(flat):
                continue
            if default is None:
                # "Choose the password option:" is followed by a menu; only a line that stays quiet is a real
                # password question.
                if await self._more_soon(rx, deadline, command, on_output):
                    fresh = True
                    continue
            question = rx.question()
            # An answer the appliance keeps refusing would loop until the deadline: fail clearly.
            repeats = repeats + 1 if question.strip() == previous.strip() else 0
            if repeats >= 3:
                last = question.strip().splitlines()[-3:]
                raise DialogueError(
                    self.name, f"`{command}` keeps asking the same question: {one_line(' / '.join(last), 300)}"
                )
            reply = self._choose_answer(command, question, previous, answers, used, default)
            self._send(reply + "\n", command)
            rx.answered(reply)
            previous = question

    async def _more_soon(
        self,
        rx: _Received,
        deadline: float,
        command: str,
        on_output: OutputCallback | None,
        wait: float = PASSWORD_QUIET,
        *,
        at_deadline: bool = False,
    ) -> bool:
        """Whether more output arrives within `wait` seconds (it is added to `rx`). Reaching the deadline first is
        a timeout, unless `at_deadline` (then: no more output)."""
        remaining = deadline - time.monotonic()
        quiet = remaining > wait
        try:
            # Never past the command's deadline: a line that keeps growing must not hold the command forever.
            async with asyncio.timeout(min(wait, max(remaining, 0.0))):
                chunk = await self._process.stdout.read(65536)
        except TimeoutError:
            if not quiet and not at_deadline:
                raise CommandTimeout(self.name, f"`{command}` did not finish before its deadline") from None
            return False
        except (asyncssh.Error, OSError):
            return False
        if not chunk:
            return False
        self._take(rx, chunk, command, on_output)
        return True

    def _learn_prompt(self, label: str) -> None:
        self.prompt = label
        hostname = hostname_from_label(label)
        if hostname is not None:
            self.hostname = hostname

    def _learn_from_text(self, text: str) -> None:
        if "machine" not in text.lower():  # both name a machine; a case-blind regex scan of every output is dear
            return
        for pattern in (_SWITCH_MACHINE_RE, _FILE_WRITTEN_RE):
            m = pattern.search(text)
            if m is not None and _HOSTNAME_RE.fullmatch(m.group(1)):
                self.hostname = m.group(1)

    def _choose_answer(
        self,
        command: str,
        question: str,
        previous: str,
        answers: Sequence[Answer],
        used: dict[int, int],
        default: str | None,
    ) -> str:
        # The question is the whole text since our last answer: a list's header and its items belong to it.
        self._learn_from_text(question)
        for idx, answer in enumerate((*answers, MACHINE_MODE)):
            if answer.times is not None and used.get(idx, 0) >= answer.times:
                continue
            if answer.defaults_only and default is None:
                continue
            if answer.matches(question, previous):
                used[idx] = used.get(idx, 0) + 1
                return answer.reply_to(question)
        lines = [ln.strip() for ln in question.strip().splitlines() if ln.strip()]
        last = one_line(self.redact(lines[-1] if lines else ""), 300)
        if default is None:
            raise DialogueError(self.name, f"`{command}` asked for a secret we have no answer for: {last!r}")
        if self._on_unknown is not None:
            self._on_unknown(command, self.redact("\n".join(one_line(ln, 300) for ln in lines[-3:])))
        if self.policy.on_unknown == "stop":
            raise UnknownQuestion(
                self.name, f"`{command}` asked a question segtui has no rule for: {last!r} (policy: stop)"
            )
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
        """Send one command, drive its dialogue to the main prompt, return normalized output.

        Every command is recorded in the transcript, also one that ends in an error (marked incomplete).
        """
        async with self._lock:
            started = time.time()
            rx = _Received(self.policy.max_output_bytes, command)
            try:
                self._send(command + "\n", command)
                raw = await self._read_to_prompt(
                    rx, deadline=time.monotonic() + timeout, command=command, answers=answers, on_output=on_output
                )
            except BaseException as exc:
                if isinstance(exc, ApplianceError):
                    error = exc.message
                elif isinstance(exc, asyncio.CancelledError):
                    error = "cancelled"
                else:
                    error = f"{type(exc).__name__}: {exc}"
                # Cut before the expensive passes: a transcript keeps a bounded head and tail anyway.
                self._record(command, self._output(self._bounded(rx.text()), command, complete=False), started, error)
                raise
            output = self._output(raw, command, complete=True)
            self._learn_from_text(self._bounded(output))
            self._record(command, output, started, None)
            if check_unknown and parsers.find_marker(output, parsers.UNKNOWN_COMMAND_MARKERS):
                raise UnknownCommand(self.name, f"appliance does not know `{command}`")
            return output

    @staticmethod
    def _output(raw: str, command: str, *, complete: bool) -> str:
        # `raw` lost its control sequences chunk by chunk: only the line work is left, all of it C-speed on the
        # whole text (no per-line Python loop: the output can be megabytes).
        text = _PAGER_ANYWHERE_RE.sub("", flatten(raw))
        # Drop the echoed command and the trailing prompt.
        nl = text.find("\n")
        if (text if nl < 0 else text[:nl]).strip() == command.strip():
            text = "" if nl < 0 else text[nl + 1 :]
        if complete:
            nl = text.rfind("\n")
            if prompt_label(text[nl + 1 :]) is not None:
                text = text[: nl + 1] if nl >= 0 else ""
        # Every line of a complete answer ended (the prompt followed it): keep the final newline.
        body = text.strip("\n")
        return body + "\n" if complete or body else body

    def _bounded(self, text: str, limit: int = TRANSCRIPT_CHARS) -> str:
        """At most about `limit` characters: the beginning and the end, cut where no secret straddles a cut."""
        if len(text) <= limit + 100:  # the slack keeps an already bounded text (marker included) as it is
            return text
        half = limit // 2
        head = self._redactor.safe_cut(text, half)
        tail = self._redactor.safe_cut(text, len(text) - half)
        return f"{text[:head]}\n… {tail - head} characters left out …\n{text[tail:]}"

    def _record(self, command: str, output: str, started: float, error: str | None) -> None:
        if self._transcript is None:
            return
        self._transcript(
            Exchange(
                self.redact(command),
                # Cut only where no secret straddles the cut, then redacted: bounded work on any output.
                fold_progress(self.redact(self._bounded(output))),
                started,
                time.time(),
                complete=error is None,
                error=one_line(self.redact(error), 500) if error is not None else None,
            )
        )


__all__ = [
    "OTHERWISE_DEFAULT",
    "Answer",
    "ApplianceError",
    "CLISession",
    "ConnectOptions",
    "Credentials",
    "DialoguePolicy",
    "Exchange",
    "open_connection",
]
