"""Pure parsers for AsyncOS CLI output, following DIALOGUES.md; no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from segtui.asyncos.errors import ParseError
from segtui.asyncos.versions import Version, VersionError
from segtui.textsafe import strip_control

# The main prompt, anchored at the end of the buffer: every question also ends in "> ".
MAIN_PROMPT_RE = re.compile(r"(?m)^(\((?:Cluster|Group|Machine) [^)\n]+\)|[A-Za-z0-9._-]+)> \Z")
QUESTION_RE = re.compile(r"\[([^\]\n]*)\]> \Z")
PASSWORD_QUESTION_RE = re.compile(r"(?i)pass(?:word|phrase)[^\n]*:\s*\Z")
PAGER_RE = re.compile(r"-Press Any Key For More-\s*\Z")
_PAGER_ANYWHERE_RE = re.compile(r"-Press Any Key For More-[ \t]*\n?")
_ERASE_RE = re.compile(r"\r[ \t]+\r")

UNKNOWN_COMMAND_MARKERS = ("Unknown command or missing feature key",)
COMMAND_ERROR_MARKERS = (
    "Unknown option",
    "Invalid arguments when processing:",
    "You are not in the correct access group",
)
UPGRADE_FAILURE_MARKERS = (
    "No available upgrades",
    "No Available upgrades.",
    "Failure downloading upgrade list",
    "Failed to connect to manifest server.",
    "machine cannot be upgraded",
    "upgrade data interrupted",
    "Upgrade failure",
    "upgrade could not proceed",
)


def normalize(text: str) -> str:
    """Control sequences out, CRLF to LF, erased pager lines and pager markers out, stray CRs out."""
    text = strip_control(text)
    text = _ERASE_RE.sub("", text)
    text = text.replace("\r\n", "\n")
    text = _PAGER_ANYWHERE_RE.sub("", text)
    return text.replace("\r", "")


def prompt_at_end(buffer: str) -> str | None:
    """The main prompt's label if the buffer ends with it."""
    m = MAIN_PROMPT_RE.search(buffer)
    return m.group(1) if m else None


def question_at_end(buffer: str) -> str | None:
    """The default of a `[default]> ` question the buffer ends with (possibly empty)."""
    if MAIN_PROMPT_RE.search(buffer):
        return None
    m = QUESTION_RE.search(buffer)
    return m.group(1) if m else None


def find_marker(text: str, markers: tuple[str, ...]) -> str | None:
    """The first line of `text` containing one of `markers` (case-insensitive).

    One compiled search over the text (C speed, linear), never a Python loop over its lines: a command's output
    can be megabytes."""
    low = text.lower()
    if len(low) == len(text):
        hits = [i for i in (low.find(m.lower()) for m in markers) if i >= 0]
        at = min(hits) if hits else -1
    else:  # lower() changed the length (rare letters): the same search, slower
        found = re.search("|".join(re.escape(m) for m in markers), text, re.IGNORECASE) if markers else None
        at = found.start() if found else -1
    if at < 0:
        return None
    start = max(text.rfind("\n", 0, at), text.rfind("\r", 0, at)) + 1
    ends = [i for i in (text.find("\n", at), text.find("\r", at)) if i >= 0]
    return text[start : min(ends) if ends else len(text)].strip()


def _complete_lines(text: str) -> list[str]:
    # Only complete lines count: a line cut short by a dropped session must not parse as a value.
    return normalize(text).split("\n")[:-1]


def _words(label: str) -> str:
    """A label compared by its words: case, runs of spaces and a trailing colon do not matter."""
    return " ".join(label.replace(":", " ").split()).lower()


def _key_values(text: str) -> dict[str, str]:
    """`Key: value` lines by the key's words (lower case); the first occurrence of a key wins."""
    out: dict[str, str] = {}
    for line in _complete_lines(text):
        key, sep, value = line.partition(":")
        words = _words(key)
        if sep and words and words not in out:
            out[words] = value.strip()
    return out


_NUMBER_RE = re.compile(r"\d{1,3}(?:,\d{3})+|\d+")


def parse_number(token: str) -> int | None:
    """`1,234` or `1234` (thousands separators allowed); None for anything else."""
    token = token.strip()
    return int(token.replace(",", "")) if _NUMBER_RE.fullmatch(token) else None


@dataclass(frozen=True)
class Row:
    """A table row read by meaning: the words of its label and the numbers that end it."""

    label: str
    numbers: tuple[int, ...]


def _rows(text: str) -> list[Row]:
    """Rows ending in one or more numbers (`Messages Received   1,045,221   233,117`), any widths."""
    rows: list[Row] = []
    for line in _complete_lines(text):
        tokens = line.replace(":", " ").split()
        numbers: list[int] = []
        while tokens and (n := parse_number(tokens[-1])) is not None:
            numbers.append(n)
            tokens.pop()
        if numbers and tokens:
            rows.append(Row(" ".join(tokens).lower(), tuple(reversed(numbers))))
    return rows


def _row_number(rows: list[Row], *labels: str, last: bool = False) -> int | None:
    """The first (or last) number of the first row whose label contains one of `labels`, in order of preference."""
    for wanted in labels:
        for row in rows:
            if wanted in row.label:
                return row.numbers[-1] if last else row.numbers[0]
    return None


@dataclass(frozen=True)
class VersionInfo:
    version: Version
    model: str | None = None
    product: str | None = None
    serial: str | None = None
    vln: str | None = None


def parse_version(text: str) -> VersionInfo:
    """`version` output, by key: extra lines on other releases are ignored."""
    kv = _key_values(text)
    raw = kv.get("version") or kv.get("asyncos version")
    if not raw:
        raise ParseError("no 'Version:' line in version output")
    try:
        version = Version.parse(raw.split()[0])
    except VersionError as exc:
        raise ParseError(f"version output: {exc}") from None
    serial = kv.get("serial #") or kv.get("serial number") or kv.get("serial")
    vln = kv.get("vln") or kv.get("virtual license number")
    return VersionInfo(
        version=version,
        model=kv.get("model") or None,
        product=kv.get("product") or None,
        serial=serial or None,
        vln=vln or None,
    )


@dataclass(frozen=True)
class WorkQueueStatus:
    status: str
    messages: int

    @property
    def paused(self) -> bool:
        return self.status.lower().startswith("paused")


def parse_workqueue_status(text: str) -> WorkQueueStatus:
    kv = _key_values(text)
    status = kv.get("status") or kv.get("work queue status") or kv.get("workqueue status")
    raw = kv.get("messages") or kv.get("messages in work queue")
    messages = parse_number(raw.split()[0]) if raw else None
    if not status or messages is None:
        raise ParseError("workqueue status output lacks 'Status:' or 'Messages:'")
    return WorkQueueStatus(status, messages)


@dataclass(frozen=True)
class StatusDetail:
    system_status: str
    workqueue_messages: int
    # Lifetime counters for mail-flow guards; None when the release prints no such row.
    received: int | None = None
    completed: int | None = None

    @property
    def receiving_suspended(self) -> bool:
        return "receiving" in self.system_status.lower() and "suspended" in self.system_status.lower()


def parse_status_detail(text: str) -> StatusDetail:
    status = _key_values(text).get("system status")
    rows = _rows(text)
    depth = _row_number(rows, "messages in work queue", "messages in workqueue")
    if not status or depth is None:
        raise ParseError("status detail lacks 'System status:' or 'Messages In Work Queue'")
    return StatusDetail(
        status,
        depth,
        received=_row_number(rows, "messages received", last=True),
        completed=_row_number(rows, "completed recipients", "messages delivered", "delivered", last=True),
    )


@dataclass(frozen=True)
class UpgradeOffer:
    number: int
    version: Version
    line: str


_ITEM_RE = re.compile(r"^\s*(\d+)[.)]\s+(.*)$")
# `15.5.1 build 055` (the list's own form), or `15.5.1-055`; the wording around it is not confirmed.
_OFFER_VERSION_RE = re.compile(r"(?<![\d.])(\d+)\.(\d+)\.(\d+)(?:\s+build\s+|-)(\d+)\b", re.IGNORECASE)


def _offer_version(text: str) -> Version | None:
    m = _OFFER_VERSION_RE.search(text)
    if not m:
        return None
    try:
        return Version.from_build(f"{m.group(1)}.{m.group(2)}.{m.group(3)}", m.group(4))
    except VersionError:
        return None


def versions_named(text: str) -> list[Version]:
    """Every release named in `text` as `15.5.1 build 055` or `15.5.1-055`."""
    out: list[Version] = []
    for m in _OFFER_VERSION_RE.finditer(normalize(text)):
        try:
            out.append(Version.from_build(f"{m.group(1)}.{m.group(2)}.{m.group(3)}", m.group(4)))
        except VersionError:
            continue
    return out


def parse_upgrades_available(text: str) -> list[UpgradeOffer]:
    """The numbered items after `Upgrades available.`; empty if there is no such list."""
    text = normalize(text)
    idx = text.lower().rfind("upgrades available")
    if idx < 0:
        return []
    offers: list[UpgradeOffer] = []
    # Complete lines only: an item cut short (`16.0.0 build 1` of `build 123`) must not read as another release.
    for line in text[idx:].split("\n")[1:-1]:
        if line.rstrip().endswith("]>"):
            break
        m = _ITEM_RE.match(line)
        if not m:
            continue
        version = _offer_version(m.group(2))
        if version is not None:
            offers.append(UpgradeOffer(int(m.group(1)), version, line.strip()))
    return offers


_LOCATION_RE = re.compile(r'location\s+"([^"]+)"', re.IGNORECASE)
_QUOTED_PATH_RE = re.compile(r'"(/[^"]+)"')
_MACHINE_WRITTEN_RE = re.compile(r'written\s+on\s+machine\s+"([^"]+)"', re.IGNORECASE)


def parse_saveconfig(text: str) -> str:
    """The file `saveconfig` wrote (quoted, in /configuration/)."""
    text = normalize(text)
    m = _LOCATION_RE.search(text) or _QUOTED_PATH_RE.search(text)
    if not m:
        raise ParseError("saveconfig output names no file")
    path = m.group(1).strip().rstrip(".")
    if not path.startswith("/"):
        path = "/configuration/" + path
    return path


def parse_saveconfig_machine(text: str) -> str | None:
    """The appliance's own hostname from `File written on machine "<name>"`, if the output says it."""
    m = _MACHINE_WRITTEN_RE.search(normalize(text))
    name = m.group(1).strip() if m else ""
    return name or None


_CSV_END_RE = re.compile(r"\.csv\b", re.IGNORECASE)


def parse_slbl_export(text: str) -> str | None:
    """The exported safelist/blocklist file, or None when the feature is off."""
    text = normalize(text)
    if "must be enabled through gui" in text.lower():
        return None
    # Found by its end, then back to the start of the word: linear on any text (no backtracking `\S+`).
    m = _CSV_END_RE.search(text)
    if not m:
        raise ParseError("slblconfig EXPORT output names no .csv file")
    start = max(text.rfind(c, 0, m.start()) for c in " \t\n") + 1
    name = text[start : m.end()].strip("\"'.,")
    return name if name.startswith("/") else "/configuration/" + name.split("/")[-1]


@dataclass(frozen=True)
class UpgradeSource:
    """Where AsyncOS upgrades come from: Cisco's servers or an own server."""

    images: str  # "cisco" or "host:port"
    manifest: str  # "cisco" or the full manifest URL
    raw: list[str] = field(default_factory=list, compare=False)

    @property
    def is_cisco(self) -> bool:
        return self.images == "cisco" and self.manifest == "cisco"


# The row is found by the words `AsyncOS upgrade` anywhere in its label (vendor prefix, any case);
# the value is what follows the label, wherever the column starts.
_UPGRADE_LABEL_RE = re.compile(r"asyncos\s+upgrades?\b(?:\s*\([^)\n]*\))?[ \t:]*", re.IGNORECASE)


# Only the wording of Cisco's own servers ("Cisco IronPort Servers", "Use Cisco AsyncOS upgrade servers"): a value
# that merely contains "cisco" or "ironport" (an own mirror `http://cisco-mirror.corp.example/`) is an own server.
_CISCO_SERVERS_RE = re.compile(
    r"(?:use[ \t]+)?(?:the[ \t]+)?(?:cisco|ironport)"
    r"(?:[ \t]+(?:cisco|ironport|asyncos|upgrade|upgrades|update|updates))*[ \t]+servers?\.?",
    re.IGNORECASE,
)


def _source_value(value: str) -> str:
    value = value.strip()
    if len(value) <= 200 and _CISCO_SERVERS_RE.fullmatch(value):
        return "cisco"
    return value


def parse_update_settings(text: str) -> UpgradeSource:
    """The `AsyncOS upgrades` rows of updateconfig's printout: first the image table, then the list table."""
    rows: list[str] = []
    for line in _complete_lines(text):
        if "choose the operation" in line.lower():
            break  # the menu: what follows is dialogue, not the printout
        m = _UPGRADE_LABEL_RE.search(line)
        if not m:
            continue
        value = line[m.end() :].strip()
        if value and not value.startswith(","):  # "For Cisco AsyncOS upgrades, please select ..." is a question
            rows.append(value)
    if not rows:
        raise ParseError("updateconfig printout has no 'AsyncOS upgrades' row")
    images = _source_value(rows[0])
    manifest = _source_value(rows[1] if len(rows) > 1 else rows[0])
    if images != "cisco":
        images = re.sub(r"^https?://", "", images, flags=re.IGNORECASE).rstrip("/")
    return UpgradeSource(images=images, manifest=manifest, raw=rows)


@dataclass(frozen=True)
class ClusterMachine:
    number: int
    name: str
    group: str | None


_MACHINE_RE = re.compile(r"^\s*(\d+)[.)]\s+(\S+)(?:\s+\(group ([^)]+)\))?", re.IGNORECASE)


def parse_machine_choices(text: str) -> list[ClusterMachine]:
    """The numbered machine list of clusterconfig DISCONNECT / RECONNECT."""
    out = []
    for line in _complete_lines(text):
        m = _MACHINE_RE.match(line)
        if m:
            out.append(ClusterMachine(int(m.group(1)), m.group(2), m.group(3)))
    return out


def same_host(a: str, b: str) -> bool:
    """Hostnames compared as DNS does: case-insensitive, a trailing dot ignored."""
    return a.strip().rstrip(".").casefold() == b.strip().rstrip(".").casefold()


_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+\.?")


def parse_cluster_list(text: str) -> list[str]:
    """Machine hostnames in `clusterconfig > LIST` output (`Machine <fqdn> ...` or `<fqdn> (group ...)`)."""
    names: list[str] = []
    for line in _complete_lines(text):
        tokens = line.split()
        if not tokens or line.rstrip().endswith("]>") or tokens[0].startswith("-"):
            continue
        if tokens[0].lower() == "machine" and len(tokens) > 1:
            candidate = tokens[1]
        elif len(tokens) > 1 and tokens[1].lower().startswith(("(group", "(serial")):
            candidate = tokens[0]
        else:
            continue
        candidate = candidate.rstrip(",:")
        if (
            len(candidate) <= 254
            and _HOSTNAME_RE.fullmatch(candidate)
            and not any(same_host(candidate, n) for n in names)
        ):
            names.append(candidate)
    return names


def parse_listeners(text: str) -> list[str]:
    """Listener names from `listenerconfig`'s list (`1. IncomingMail (on Management, ...) SMTP ...`)."""
    names: list[str] = []
    for line in _complete_lines(text):
        if "choose the operation" in line.lower():
            break
        m = _ITEM_RE.match(line)
        if m and m.group(2).split():
            names.append(m.group(2).split()[0].rstrip(":,"))
    return names


_PERCENT_RE = re.compile(r"\((\d{1,3})% complete\)")


@dataclass(frozen=True)
class UpgradeProgress:
    phase: str  # analysis, download, install, reboot; "" = unchanged
    percent: int | None
    line: str


def parse_progress_line(line: str) -> UpgradeProgress | None:
    """A phase from one line of `upgrade` output, or None if the line says nothing of progress."""
    low = line.lower()
    pct_m = _PERCENT_RE.search(line)
    pct = min(100, int(pct_m.group(1))) if pct_m else None
    if "analyz" in low:
        return UpgradeProgress("analysis", pct, line.strip())
    if low.startswith("downloading") or "download of upgrade image" in low:
        return UpgradeProgress("download", pct, line.strip())
    if "finding partitions" in low or low.startswith("installing"):
        return UpgradeProgress("install", pct, line.strip())
    if "upgrade installation finished" in low:
        return UpgradeProgress("install", 100, line.strip())
    if "rebooting the system" in low:
        return UpgradeProgress("reboot", None, line.strip())
    if pct is not None:
        return UpgradeProgress("", pct, line.strip())  # same phase as the line before
    return None


@dataclass(frozen=True)
class DownloadStatus:
    """What `upgrade > DOWNLOADSTATUS` (or the question before the menu) says of a staged image."""

    state: str  # "none", "downloading", "downloaded"
    version: Version | None = None
    percent: int | None = None


_IMAGE_RE = re.compile(r"AsyncOS (\d+\.\d+\.\d+) build (\d+)", re.IGNORECASE)


def parse_download_status(text: str) -> DownloadStatus:
    """DOWNLOADSTATUS output: in progress (with a percentage), downloaded and ready, or nothing."""
    lines = [ln for ln in normalize(text).split("\n")[:-1] if ln.strip()]  # complete lines only
    for line in reversed(lines):
        low = line.lower()
        image = _IMAGE_RE.search(line)
        version = Version.from_build(image.group(1), image.group(2)) if image else None
        if "no upgrade image" in low or "no download" in low or ("nothing" in low and "download" in low):
            return DownloadStatus("none")
        if "in progress" in low and "download" in low:
            pct = _PERCENT_RE.search(line)
            return DownloadStatus("downloading", version, int(pct.group(1)) if pct else None)
        if version is not None and ("downloaded" in low or "ready to install" in low):
            return DownloadStatus("downloaded", version, 100)
    raise ParseError("DOWNLOADSTATUS output says nothing of a download")
