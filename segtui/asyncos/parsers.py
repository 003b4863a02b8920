"""Pure parsers for AsyncOS CLI output, following DIALOGUES.md; no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from segtui.asyncos.errors import ParseError
from segtui.asyncos.versions import Version, VersionError

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
    """CRLF to LF, drop erased pager lines and pager markers, drop stray CRs."""
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
    """The first line of `text` containing one of `markers` (case-insensitive)."""
    lowered = [m.lower() for m in markers]
    for line in text.splitlines():
        low = line.lower()
        if any(m in low for m in lowered):
            return line.strip()
    return None


def _key_values(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    # Only complete lines count: a line cut short by a dropped session must not parse as a value.
    for line in normalize(text).split("\n")[:-1]:
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


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
    raw = kv.get("Version")
    if not raw:
        raise ParseError("no 'Version:' line in version output")
    try:
        version = Version.parse(raw.split()[0])
    except VersionError as exc:
        raise ParseError(str(exc)) from exc
    vln = kv.get("VLN") or kv.get("Virtual License Number")
    return VersionInfo(
        version=version,
        model=kv.get("Model") or None,
        product=kv.get("Product") or None,
        serial=kv.get("Serial #") or None,
        vln=vln or None,
    )


@dataclass(frozen=True)
class WorkQueueStatus:
    status: str
    messages: int

    @property
    def paused(self) -> bool:
        return self.status.lower().startswith("paused")


_WQ_STATUS_RE = re.compile(r"Status:[ \t]+(.+)\n")
_WQ_MESSAGES_RE = re.compile(r"Messages:[ \t]+([\d,]+)[ \t]*\n")


def parse_workqueue_status(text: str) -> WorkQueueStatus:
    text = normalize(text)
    status = _WQ_STATUS_RE.search(text)
    messages = _WQ_MESSAGES_RE.search(text)
    if not status or not messages:
        raise ParseError("workqueue status output lacks 'Status:' or 'Messages:'")
    return WorkQueueStatus(status.group(1).strip(), int(messages.group(1).replace(",", "")))


@dataclass(frozen=True)
class StatusDetail:
    system_status: str
    workqueue_messages: int

    @property
    def receiving_suspended(self) -> bool:
        return "receiving" in self.system_status.lower() and "suspended" in self.system_status.lower()


_SYSTEM_STATUS_RE = re.compile(r"System status:[ \t]+(.+)\n")
_WQ_GAUGE_RE = re.compile(r"Messages In Work Queue[ \t]+([\d,]+)[ \t]*\n")


def parse_status_detail(text: str) -> StatusDetail:
    text = normalize(text)
    status = _SYSTEM_STATUS_RE.search(text)
    depth = _WQ_GAUGE_RE.search(text)
    if not status or not depth:
        raise ParseError("status detail lacks 'System status:' or 'Messages In Work Queue'")
    return StatusDetail(status.group(1).strip(), int(depth.group(1).replace(",", "")))


@dataclass(frozen=True)
class UpgradeOffer:
    number: int
    version: Version
    line: str


_OFFER_RE = re.compile(r"^\s*(\d+)\.\s+.*?(\d+\.\d+\.\d+) build (\d+) upgrade For Email", re.IGNORECASE)


def parse_upgrades_available(text: str) -> list[UpgradeOffer]:
    """The numbered items after `Upgrades available.`; empty if there is no such list."""
    text = normalize(text)
    idx = text.find("Upgrades available.")
    if idx < 0:
        return []
    offers: list[UpgradeOffer] = []
    for line in text[idx:].splitlines()[1:]:
        m = _OFFER_RE.match(line)
        if m:
            offers.append(UpgradeOffer(int(m.group(1)), Version.from_build(m.group(2), m.group(3)), line.strip()))
        elif QUESTION_RE.search(line + " ") or line.strip().endswith("]>"):
            break
    return offers


_LOCATION_RE = re.compile(r'location\s+"([^"]+)"', re.IGNORECASE)
_QUOTED_PATH_RE = re.compile(r'"(/[^"]+)"')


def parse_saveconfig(text: str) -> str:
    """The file `saveconfig` wrote (quoted, in /configuration/)."""
    text = normalize(text)
    m = _LOCATION_RE.search(text) or _QUOTED_PATH_RE.search(text)
    if not m:
        raise ParseError("saveconfig output names no file")
    path = m.group(1).rstrip(".")
    if not path.startswith("/"):
        path = "/configuration/" + path
    return path


_CSV_RE = re.compile(r"(\S+\.csv)\b")


def parse_slbl_export(text: str) -> str | None:
    """The exported safelist/blocklist file, or None when the feature is off."""
    text = normalize(text)
    if "must be enabled through gui" in text.lower():
        return None
    m = _CSV_RE.search(text)
    if not m:
        raise ParseError("slblconfig EXPORT output names no .csv file")
    name = m.group(1).strip("\"'.,")
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


_UPGRADE_ROW_RE = re.compile(r"^\s*AsyncOS upgrades?\s{2,}(.+?)\s*$", re.IGNORECASE)


def _source_value(value: str) -> str:
    low = value.lower()
    if "cisco" in low or "ironport" in low:
        return "cisco"
    return value.strip()


def parse_update_settings(text: str) -> UpgradeSource:
    """The `AsyncOS upgrades` rows of updateconfig's printout: first the image table, then the list table."""
    lines = normalize(text).split("\n")[:-1]  # complete lines only
    rows = [m.group(1) for line in lines if (m := _UPGRADE_ROW_RE.match(line))]
    if not rows:
        raise ParseError("updateconfig printout has no 'AsyncOS upgrades' row")
    images = _source_value(rows[0])
    manifest = _source_value(rows[1] if len(rows) > 1 else rows[0])
    if images != "cisco":
        images = re.sub(r"^https?://", "", images).rstrip("/")
    return UpgradeSource(images=images, manifest=manifest, raw=rows)


@dataclass(frozen=True)
class ClusterMachine:
    number: int
    name: str
    group: str | None


_MACHINE_RE = re.compile(r"^\s*(\d+)\.\s+(\S+)(?:\s+\(group ([^)]+)\))?", re.IGNORECASE)


def parse_machine_choices(text: str) -> list[ClusterMachine]:
    """The numbered machine list of clusterconfig DISCONNECT / RECONNECT."""
    out = []
    for line in normalize(text).splitlines():
        m = _MACHINE_RE.match(line)
        if m:
            out.append(ClusterMachine(int(m.group(1)), m.group(2), m.group(3)))
    return out


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
        if "in progress" in low and "download" in low:
            pct = _PERCENT_RE.search(line)
            return DownloadStatus("downloading", version, int(pct.group(1)) if pct else None)
        if version is not None and ("downloaded" in low or "ready to install" in low):
            return DownloadStatus("downloaded", version, 100)
        if "no upgrade image" in low or "no download" in low:
            return DownloadStatus("none")
    raise ParseError("DOWNLOADSTATUS output says nothing of a download")
