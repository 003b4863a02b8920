"""Text from appliances, servers and files is data: one sanitiser for control sequences, one redactor for secrets.

Both run in linear time on any input (no backtracking patterns), so hostile text cannot stall the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

# ESC-introduced sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), DCS/SOS/PM/APC (ESC P/X/^/_ ... ST),
# and two-byte escapes (ESC + one char). The 8-bit C1 forms (\x9b CSI, \x9d OSC, \x90 DCS ...) as well.
# Each alternative consumes with a possessive-free, non-nested class: linear time.
_CONTROL_SEQ_RE = re.compile(
    r"""
    (?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?          # CSI: params, intermediates, final
  | (?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?          # OSC: up to BEL or ST
  | (?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]*(?:\x1b\\|\x9c)?  # DCS, SOS, PM, APC: up to ST
  | \x1b[\x20-\x2f]*[\x30-\x7e]?                                   # other escapes (ESC ( B, ESC 7, ...)
    """,
    re.VERBOSE,
)
# C0 controls except tab, newline and carriage return (CR is handled by the caller's line logic),
# DEL, and the remaining C1 controls.
_CONTROL_CHAR_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f]")


_SEQ_START_RE = re.compile(r"[\x1b\x90\x98\x9b\x9d\x9e\x9f]")


def strip_control(text: str) -> str:
    """Remove terminal control sequences and control characters; keeps tab, newline and CR."""
    # One C-level search, never a per-character Python loop: 16 MB of appliance output must stay cheap.
    if _SEQ_START_RE.search(text) is not None:
        text = _CONTROL_SEQ_RE.sub("", text)
    if _CONTROL_CHAR_RE.search(text) is None:
        return text
    return _CONTROL_CHAR_RE.sub("", text)


def sanitize(text: str) -> str:
    """Text safe to show or store: control sequences removed, CRLF and stray CR folded to LF."""
    return strip_control(text).replace("\r\n", "\n").replace("\r", "\n")


def one_line(text: str, limit: int = 500) -> str:
    """Sanitised and folded onto one line (for headless output, notifications, table cells)."""
    flat = " ".join(sanitize(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


MASK = "********"

# scheme://user:password@host -> scheme://user:********@host; a bounded, non-nested pattern.
_URL_CREDS_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,20}://)([^\s:/@]{0,256}):([^\s/@]{1,256})@")


def redact_url(url: str) -> str:
    """A URL with its password masked (the user name stays: it helps the operator, it is no secret)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_CREDS_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{parts.username or ''}:{MASK}@{host}" + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def strip_url_credentials(url: str) -> str:
    """A URL without any user or password (for places where even the user name must not go)."""
    return _URL_CREDS_RE.sub(lambda m: m.group(1), url)


class Redactor:
    """Masks known secrets (passwords, passphrases) and the password of any URL in a text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        # Very short secrets would mask ordinary words; a password of 1-3 characters is refused upstream.
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)  # longest first: a secret containing another

    def safe_cut(self, text: str, pos: int) -> int:
        """`pos`, moved back so that no known secret and no URL credential straddles it: cutting `text` there and
        redacting each part alone masks everything that redacting the whole would."""
        pos = max(0, min(pos, len(text)))
        moved = True
        while moved:
            moved = False
            for secret in self._secrets:
                i = text.find(secret, max(0, pos - len(secret) + 1), pos + len(secret) - 1)
                if 0 <= i < pos:
                    pos, moved = i, True
            start = max(0, pos - 600)
            for m in _URL_CREDS_RE.finditer(text, start, min(len(text), pos + 600)):
                if m.start() < pos < m.end():
                    pos, moved = m.start(), True
        return pos

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "@" in text:
            text = _URL_CREDS_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}:{MASK}@", text)
        return text


def clean(text: str, redactor: Redactor | None = None) -> str:
    """Sanitised, then redacted: what any sink (journal, report, screen, notification) may hold."""
    text = sanitize(text)
    return redactor(text) if redactor is not None else text
