"""Field kit for one appliance: read-only commands, each exchange as a transcript, and what each parser made of it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from segtui.asyncos import parsers
from segtui.asyncos.commands import Appliance
from segtui.asyncos.errors import ApplianceError, AuthFailed, ConnectFailed, HostKeyRejected, ParseError
from segtui.asyncos.session import Answer
from segtui.textsafe import Redactor, one_line, sanitize

Fields = dict[str, Any]


def _version(text: str) -> Fields:
    v = parsers.parse_version(text)
    return {"version": str(v.version), "model": v.model, "serial": v.serial, "product": v.product}


def _status_detail(text: str) -> Fields:
    s = parsers.parse_status_detail(text)
    return {
        "system_status": s.system_status,
        "workqueue_messages": s.workqueue_messages,
        "received": s.received,
        "completed": s.completed,
    }


def _workqueue(text: str) -> Fields:
    w = parsers.parse_workqueue_status(text)
    return {"status": w.status, "messages": w.messages}


def _update_settings(text: str) -> Fields:
    u = parsers.parse_update_settings(text)
    return {"images": u.images, "manifest": u.manifest}


def _listeners(text: str) -> Fields:
    names = parsers.parse_listeners(text)
    if not names and "no listeners" not in text.lower():
        raise ParseError("no listener list and no 'no listeners' message")
    return {"listeners": names}


def _cluster(text: str) -> Fields:
    machines = parsers.parse_cluster_list(text)
    if not machines:
        raise ParseError("no machine names in the cluster list")
    return {"machines": machines}


def _offers(text: str) -> Fields:
    offers = parsers.parse_upgrades_available(text)
    if not offers:
        raise ParseError("no readable 'Upgrades available.' list")
    return {"offers": [[o.number, str(o.version)] for o in offers]}


def _progress(text: str) -> Fields:
    phases: list[str] = []
    for line in parsers.normalize(text).split("\n"):
        p = parsers.parse_progress_line(line)
        if p is not None and p.phase and (not phases or phases[-1] != p.phase):
            phases.append(p.phase)
    return {"phases": phases}


def _saveconfig(text: str) -> Fields:
    return {"path": parsers.parse_saveconfig(text), "machine": parsers.parse_saveconfig_machine(text)}


def _slbl(text: str) -> Fields:
    return {"path": parsers.parse_slbl_export(text)}


def _download_status(text: str) -> Fields:
    d = parsers.parse_download_status(text)
    return {"state": d.state, "version": str(d.version) if d.version else None, "percent": d.percent}


# What each parser made of an output, as JSON-able key fields: one home for the probe and the replay test.
READERS: dict[str, Callable[[str], Fields]] = {
    "version": _version,
    "status_detail": _status_detail,
    "workqueue_status": _workqueue,
    "update_settings": _update_settings,
    "listeners": _listeners,
    "cluster_list": _cluster,
    "upgrades_available": _offers,
    "progress": _progress,
    "saveconfig": _saveconfig,
    "slbl_export": _slbl,
    "download_status": _download_status,
}


# The parsers that read each command's output (a transcript of that command is checked with each).
PARSERS_FOR_COMMAND: dict[str, tuple[str, ...]] = {
    "version": ("version",),
    "status detail": ("status_detail",),
    "workqueue status": ("workqueue_status",),
    "updateconfig": ("update_settings",),
    "listenerconfig": ("listeners",),
    "clusterconfig": ("cluster_list",),
    "upgrade": ("upgrades_available", "progress"),
    "saveconfig": ("saveconfig",),
    "slblconfig": ("slbl_export",),
}


@dataclass(frozen=True)
class Reading:
    """What one parser made of one output: ok with its key fields, or failed and why (one line)."""

    parser: str
    ok: bool
    fields: Fields = field(default_factory=dict)
    error: str | None = None

    def to_json(self) -> Fields:
        return {"parser": self.parser, "ok": self.ok, "fields": self.fields, "error": self.error}


def read_output(parser: str, text: str) -> Reading:
    try:
        return Reading(parser, True, READERS[parser](text))
    except ParseError as exc:
        return Reading(parser, False, error=one_line(exc.message, 300))


@dataclass(frozen=True)
class ProbeCommand:
    """A read-only command, how to leave its dialogue without changing anything, and its parser."""

    command: str
    parser: str
    answers: tuple[Answer, ...] = ()
    clustered_only: bool = False

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.command.lower()).strip("-")


_LEAVE_MENU = Answer(r"Choose the operation you want to perform", "")

PROBE_COMMANDS: tuple[ProbeCommand, ...] = (
    ProbeCommand("version", "version"),
    ProbeCommand("status detail", "status_detail"),
    ProbeCommand("workqueue status", "workqueue_status"),
    # The printout comes before the menu; an empty answer leaves without changes.
    ProbeCommand("updateconfig", "update_settings", (_LEAVE_MENU,)),
    ProbeCommand("listenerconfig", "listeners", (_LEAVE_MENU,)),
    ProbeCommand(
        "clusterconfig",
        "cluster_list",
        (Answer(r"Choose the operation you want to perform", "LIST", times=1), _LEAVE_MENU),
        clustered_only=True,
    ),
)


@dataclass
class CommandProbe:
    command: str
    slug: str
    transcript: str  # redacted, control sequences stripped; empty when the command did not run
    reading: Reading | None  # None when the command itself failed
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.reading is not None and self.reading.ok


@dataclass
class ApplianceProbe:
    name: str
    host: str
    prompt: str | None = None
    hostname: str | None = None
    commands: list[CommandProbe] = field(default_factory=list)
    error: str | None = None  # the probe of this appliance stopped: one line

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.commands)


def transcript_text(prompt: str | None, command: str, output: str, prompt_after: str | None) -> str:
    """One exchange in the format of tests/data/transcripts: `prompt> command`, the output, the prompt."""
    before = f"{prompt}> " if prompt else "> "
    after = f"{prompt_after or prompt or ''}>"
    body = sanitize(output)
    if body and not body.endswith("\n"):
        body += "\n"
    return f"{before}{command}\n{body}{after}\n"


_TRANSCRIPT_PROMPT_RE = re.compile(r"^(\((?:Cluster|Group|Machine) [^)\n]+\)|[A-Za-z0-9._-]+)> ?(.*)$")


def split_transcript(text: str) -> list[tuple[str, str]]:
    """(command, output) for each `prompt> command` line of a transcript, in order."""
    exchanges: list[tuple[str, str]] = []
    command: str | None = None
    lines: list[str] = []
    for line in parsers.normalize(text).split("\n"):
        m = _TRANSCRIPT_PROMPT_RE.match(line)
        if m is not None:
            if command is not None:
                exchanges.append((command, "\n".join(lines) + "\n"))
            command = m.group(2).strip() or None
            lines = []
        elif command is not None:
            lines.append(line)
    if command is not None:
        exchanges.append((command, "\n".join(lines) + "\n"))
    return exchanges


_FATAL = (ConnectFailed, AuthFailed, HostKeyRejected)


async def probe_appliance(
    appliance: Appliance, *, host: str = "", clustered: bool | None = None, secrets: tuple[str, ...] = ()
) -> ApplianceProbe:
    """Run every probe command on one appliance; never raises for what the appliance does.

    `clustered` None: decided from the prompt (`(Cluster ...)`, `(Group ...)`, `(Machine ...)`).
    """
    redact = Redactor([appliance.opts.credentials.password, *secrets])
    result = ApplianceProbe(appliance.name, host)
    try:
        await appliance.session()
    except ApplianceError as exc:
        result.error = one_line(redact(exc.message), 300)
        return result
    result.prompt = appliance.prompt
    for probe in PROBE_COMMANDS:
        if probe.clustered_only:
            on_cluster = clustered if clustered is not None else (appliance.prompt or "").startswith("(")
            if not on_cluster:
                continue
        before = appliance.prompt
        try:
            output = await appliance.read(probe.command, answers=probe.answers)
        except ApplianceError as exc:
            message = one_line(redact(exc.message), 300)
            result.commands.append(CommandProbe(probe.command, probe.slug, "", None, message))
            if isinstance(exc, _FATAL):
                result.error = message
                break
            continue
        output = redact(output)
        text = transcript_text(before, probe.command, output, appliance.prompt)
        result.commands.append(CommandProbe(probe.command, probe.slug, text, read_output(probe.parser, output)))
    # The appliance's own name as the session learned it (prompt, machine mode), never the inventory's.
    result.hostname = getattr(appliance, "hostname", None)
    return result
