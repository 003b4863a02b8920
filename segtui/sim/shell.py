"""The simulated AsyncOS CLI: one instance per SSH shell or exec request."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from segtui.sim.dialogue import Dialogue
from segtui.sim.model import RELEASES, SimAppliance, SimVersion, vdotted
from segtui.sim.terminal import Cancelled, SessionClosed, Terminal

if TYPE_CHECKING:
    from segtui.sim.node import SimNode

READ_ONLY = {"version", "status", "status detail", "workqueue", "workqueue status", "showconfig"}
MACHINE_LEVEL = {"suspendlistener", "resumelistener", "upgrade", "reboot", "workqueue", "updateconfig"}

OTHER_SERVICES = (
    "Timezone rules",
    "Enrollment Client Updates",
    "Support Request updates",
    "Sophos Anti-Virus",
)
EXTRA_SERVICE = "Cisco Talos Intelligence Services"  # asked by some appliances only: its default is right
NOT_SIMULATED = "This operation is not available in this simulation."


def _clock() -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y UTC", time.gmtime())


def _yes(answer: str) -> bool:
    return answer.upper().startswith("Y")


class ApplianceShell:
    def __init__(self, node: SimNode, term: Terminal) -> None:
        self.node = node
        self.a: SimAppliance = node.appliance
        self.term = term
        self.d = Dialogue(term, self.a.printing, paged=False)
        self.machine_mode = False

    # --- prompt --------------------------------------------------------------------------------
    def prompt(self) -> str:
        a = self.a
        if a.cluster is None:
            return f"{a.hostname}> "
        if self.machine_mode or not a.cluster_connected:
            return f"(Machine {a.hostname})> "
        return f"(Cluster {a.cluster.name})> "

    async def interactive(self) -> None:
        d = self.d
        d.paged = True
        major, minor, patch, build = self.a.version
        first = f"AsyncOS {major}.{minor}.{patch} for Cisco {self.a.model} build {build:03d}"
        if self.a.printing.banner_colour:
            first = f"\x1b[1;36m{first}\x1b[0m"
        await d.lines(
            first,
            f"Welcome to the Cisco {self.a.model} Secure Email Gateway Virtual",
            "NOTE: This session will expire if left idle for 30 minutes. Any uncommitted configuration",
            "changes will be lost. Commit the configuration changes as soon as they are made.",
            "",
        )
        while True:
            self.term.write(self.prompt())
            try:
                line = (await d.read()).strip()
            except Cancelled:
                self.term.line()
                continue
            if not line:
                continue
            if line in ("exit", "quit"):
                if self.a.pending is not None and await d.confirm(
                    "There are uncommitted changes. Do you want to commit before exiting?", "N"
                ):
                    await self.cmd_commit()
                self.term.line()
                return
            try:
                await self.dispatch(line)
            except Cancelled:
                self.term.line()

    async def exec_once(self, command: str) -> int:
        cmd = " ".join(command.split())
        if cmd not in READ_ONLY:
            self.term.line(f"The command {cmd.split()[0] if cmd else ''} is not available in batch mode.")
            return 1
        self.machine_mode = True
        await self.dispatch(cmd)
        return 0

    async def dispatch(self, line: str) -> None:
        words = line.split()
        cmd = words[0].lower()
        rest = " ".join(words[1:]).lower()
        typed = " ".join(w.lower() for w in words)
        if self.a.drop_now(typed):
            self.node.event(self.a.drop_event(typed))
            self.node.drop_connections()
            raise SessionClosed()
        handlers = {
            "version": self.cmd_version,
            "suspendlistener": self.cmd_suspend,
            "resumelistener": self.cmd_resume,
            "listenerconfig": self.cmd_listenerconfig,
            "updateconfig": self.cmd_updateconfig,
            "commit": self.cmd_commit,
            "saveconfig": self.cmd_saveconfig,
            "slblconfig": self.cmd_slbl,
            "upgrade": self.cmd_upgrade,
            "reboot": self.cmd_reboot,
            "clusterconfig": self.cmd_clusterconfig,
            "help": self.cmd_help,
        }
        if cmd not in handlers and cmd not in ("status", "workqueue"):
            await self.d.lines("", f"Unknown command or missing feature key: {words[0]}", "")
            return
        if cmd in MACHINE_LEVEL and not await self._ensure_machine_mode():
            return
        if cmd == "status":
            await self.cmd_status(detail=rest == "detail")
        elif cmd == "workqueue":
            await self.cmd_workqueue(rest)
        else:
            await handlers[cmd]()

    async def _ensure_machine_mode(self) -> bool:
        a = self.a
        if a.cluster is None or self.machine_mode or not a.cluster_connected:
            return True
        ok = await self.d.confirm(
            "\nThis command is restricted to run in machine mode of the machine you are logged in to.  "
            f'Do you want to switch to "Machine {a.hostname}" mode?',
            "Y",
        )
        self.term.line()
        self.machine_mode = ok
        return ok

    def _pad(self, row: str) -> str:
        """Printouts of some appliances carry trailing spaces to a fixed width."""
        return row.ljust(79) if self.a.printing.trailing_spaces else row

    def _n(self, value: int) -> str:
        return f"{value:,}" if self.a.printing.thousands else str(value)

    # --- read-only -----------------------------------------------------------------------------
    async def cmd_help(self) -> None:
        await self.d.lines(
            "",
            "version, status, workqueue, suspendlistener, resumelistener, listenerconfig, updateconfig,",
            "commit, saveconfig, slblconfig, upgrade, reboot, clusterconfig, exit",
            "",
        )

    async def cmd_version(self) -> None:
        a = self.a
        rel = RELEASES.get(a.version)
        if a.fault("garbled-version"):
            await self.d.lines("", "Current Version", "===============", "Pr\x7foduct: C\ufffd\ufffd", "Versi", "")
            return
        lines = [
            "",
            "Current Version",
            "===============",
            f"Product: Cisco {a.model} Secure Email Gateway Virtual",
            f"Model: {a.model}",
            f"Version: {vdotted(a.version)}",
            f"Build Date: {rel.date if rel else '2025-01-01'}",
            "Install Date: 2026-02-01 09:12:44",
            f"Serial #: {a.serial}",
        ]
        if a.vln:
            lines.append(f"VLN: {a.vln}")
        lines += [
            "BIOS: 6.00",
            "CPUs: 4 expected, 4 allocated",
            "Memory: 8192 MB expected, 8192 MB allocated",
            "RAID: NA",
            "RAID Status: Unknown",
            "RAID Type: NA",
            "BMC: NA",
            "",
        ]
        await self.d.lines(*lines)

    def _settle(self) -> None:
        self.a.settle_mail(self.node.time_scale, self.node.durations.drain_rate)

    def _depth(self) -> int:
        return self.a.tick_mail(self.node.time_scale, self.node.durations.drain_rate)

    async def cmd_workqueue(self, rest: str = "status") -> None:
        if rest not in ("", "status"):
            await self.d.lines("", "Unknown option", "")
            return
        await self.d.lines("", "Status: Operational", f"Messages: {self._n(self._depth())}")

    async def cmd_status(self, detail: bool = False) -> None:
        a = self.a
        depth = self._depth()
        sysstat = "Receiving Suspended" if a.suspended else "Online"
        oldest = f"{1 + depth // 400} mins {depth % 60} secs" if depth else "No Messages"
        head = [
            "",
            f"Status as of:                  {_clock()}",
            "Up since:                      Tue Nov 03 22:01:55 2026 UTC (25d 5h 12m 12s)",
            "Last counter reset:            Never",
            f"System status:                 {sysstat}",
            f"Oldest Message:                {oldest}",
            "Feature - IronPort Anti-Spam:  1042 days",
            "Feature - Sophos:              1042 days",
            "",
        ]
        if not detail:
            await self.d.lines(*head, f"Messages In Work Queue:        {self._n(depth)}", "")
            return
        await self.d.lines(*(self._pad(row) for row in head + self._detail_rows(depth)))

    def _detail_rows(self, depth: int) -> list[str]:
        """Counters, rates and gauges laid out as AsyncOS does: right-aligned numbers with separators."""
        a = self.a
        c = a.counters()
        share = a.group.share_of(a) if a.group is not None else 0.0
        per_hour = int(share * 3600)
        done_per_hour = 0 if a.delivers_nothing else int(per_hour * 1.1 if depth else per_hour)

        def counter(label: str, values: tuple[int, int, int], indent: int = 4) -> str:
            return f"{' ' * indent}{label:<{29 - indent}}" + "".join(f"{v:>13,}" for v in values)

        def gauge(label: str, value: str, indent: int = 4) -> str:
            return f"{' ' * indent}{label:<{34 - indent}}{value:>10}"

        rec = c["Messages Received"]
        rejected = tuple(v // 97 for v in rec)
        zero = (0, 0, 0)
        bounced = tuple(v // 211 for v in c["Completed Recipients"])
        mid = rec[2] + 1_000_000
        return [
            "Counters:                        Reset       Uptime     Lifetime",
            "  Receiving",
            counter("Messages Received", rec),
            counter("Recipients Received", c["Recipients Received"]),
            counter("Generated Bounce Recipients", zero),
            "  Rejection",
            counter("Rejected Recipients", (rejected[0], rejected[1], rejected[2])),
            counter("Dropped Messages", zero),
            "  Queue",
            counter("Soft Bounced Events", zero),
            "  Completion",
            counter("Completed Recipients", c["Completed Recipients"]),
            counter("Hard Bounced Recipients", (bounced[0], bounced[1], bounced[2])),
            counter("DNS Hard Bounces", zero, 6),
            counter("5XX Hard Bounces", (bounced[0], bounced[1], bounced[2]), 6),
            counter("Delivered Recipients", c["Delivered Recipients"]),
            counter("Deleted Recipients", zero),
            "  Current IDs",
            f"    {'Message ID (MID)':<38}{mid:>16,}",
            f"    {'Injection Conn. ID (ICID)':<38}{mid // 3:>16,}",
            f"    {'Delivery Conn. ID (DCID)':<38}{mid // 5:>16,}",
            "",
            "Rates (Events Per Hour):          1-Minute    5-Minutes   15-Minutes",
            "  Receiving",
            counter("Messages Received", (per_hour, per_hour, per_hour)),
            counter("Recipients Received", (int(per_hour * 1.17),) * 3),
            "  Completion",
            counter("Completed Recipients", (done_per_hour,) * 3),
            "",
            "Gauges:                          Current",
            "  System",
            gauge("RAM Utilization", "21%"),
            gauge("Overall CPU load average", f"{min(99, 3 + depth // 300)}%"),
            gauge("Disk I/O Utilization", "2%"),
            gauge("Resource Conservation", "0"),
            gauge("Logging Disk Usage", "3%"),
            "  Connections",
            gauge("Current Inbound Conn.", "0" if a.suspended else f"{3 + int(share) // 4}"),
            gauge("Current Outbound Conn.", f"{min(50, 1 + depth // 200)}" if depth else "0"),
            "  Queue",
            gauge("Active Recipients", f"{int(depth * 1.17):,}"),
            gauge("Messages In Work Queue", f"{depth:,}"),
            gauge("Messages In Quarantine", "0"),
            gauge("Destinations In Memory", f"{3 + depth // 50:,}"),
            gauge("Kilobytes Used", f"{depth * 37:,}"),
            gauge("Kilobytes Free", "83,886,023"),
        ]

    # --- listeners -----------------------------------------------------------------------------
    async def _choose_listeners(self, verb: str) -> list[str] | None:
        names = self.a.listeners
        if not names:
            await self.d.lines("", "There are no listeners configured on this appliance.", "")
            return None
        if len(names) == 1:
            return list(names)
        picks = await self.d.choose(
            ("", f"Choose the listener(s) you wish to {verb}.", "Separate multiple entries with commas."),
            ("All", *names),
            "1",
            multi=True,
        )
        return list(names) if 1 in picks else [names[p - 2] for p in picks]

    async def cmd_suspend(self) -> None:
        chosen = await self._choose_listeners("suspend")
        if chosen is None:
            return
        raw = await self.d.ask(
            ("", "Enter the number of seconds to wait before abruptly closing connections."),
            "30",
            valid=str.isdigit,
            complaint="You must enter a number.",
        )
        await self.d.lines("", "Waiting for listeners to exit...")
        await self.node.sleep(min(int(raw), 5) * 0.2)
        self._settle()  # the group's mail up to now, then this appliance's share moves to its peers
        self.a.suspended = True
        self.node.event("suspended")
        await self.d.line(f"Receiving suspended for {', '.join(chosen)}.")

    async def cmd_resume(self) -> None:
        chosen = await self._choose_listeners("resume")
        if chosen is None:
            return
        self._settle()
        self.a.suspended = False
        self.node.event("resumed")
        await self.d.lines("", f"Receiving resumed for {', '.join(chosen)}.")

    async def cmd_listenerconfig(self) -> None:
        d = self.d
        while True:
            if not self.a.listeners:
                await d.lines("", "There are no listeners configured.")
            else:
                await d.lines("", "Currently configured listeners:")
                for i, name in enumerate(self.a.listeners, start=1):
                    public = "Public" if name in ("IncomingMail", "RelayDMZ") else "Private"
                    await d.line(self._pad(f"{i}. {name} (on Data {i}, 10.10.{i}.11) SMTP TCP Port 25 {public}"))
            op = await d.menu(
                (
                    ("NEW", "Create a new listener."),
                    ("EDIT", "Modify a listener."),
                    ("DELETE", "Remove a listener."),
                    ("SETUP", "Change global settings."),
                )
            )
            if op is None:
                self.term.line()
                return
            await d.lines("", NOT_SIMULATED)

    # --- updateconfig / commit -----------------------------------------------------------------
    def _table(self, title: str, rows: list[tuple[str, str]]) -> list[str]:
        """One table of the printout: the value column starts where the widest label ends, plus a gap."""
        width = max(len(label) for label, _ in [(title, ""), *rows]) + self.a.printing.label_gap
        out = [self._pad(f"{title:<{width}}Update URL:"), "-" * (width + 40)]
        out += [self._pad(f"{label:<{width}}{value}") for label, value in rows]
        return out

    def _update_printout(self) -> list[str]:
        s = self.a.pending or self.a.committed
        label = self.a.printing.upgrades_label

        def col(value: str, url: bool) -> str:
            if value == "cisco":
                return "Cisco IronPort Servers"
            return value if url else f"http://{value}/"

        cisco = "Cisco IronPort Servers"
        images = [("Feature Key updates", col(s.feature_keys, False)), *((svc, cisco) for svc in OTHER_SERVICES)]
        images.append((label, col(s.images, False)))
        listing = [*((svc, cisco) for svc in OTHER_SERVICES[:2]), (label, col(s.listing, True))]
        return [
            "",
            *self._table("Service (images):", images),
            "",
            *self._table("Service (list):", listing),
            "",
            "Update interval: 5m",
            "Proxy server: not enabled",
            "HTTPS Proxy server: not enabled",
        ]

    async def _source_question(self, service: str, current: str, what: str) -> str:
        servers = "1. Use Cisco AsyncOS upgrade servers" if "AsyncOS" in service else "1. Use Cisco IronPort servers"
        picks = await self.d.choose(
            ("", f"For {service}, please select where the system will download {what}:"),
            (servers[3:], "Use own server"),
            "1" if current == "cisco" else "2",
        )
        return str(picks[0])

    async def _host_question(self, current: str) -> str:
        def valid(ans: str) -> bool:
            host, _, port = ans.partition(":")
            return bool(host) and (not port or port.isdigit()) and " " not in ans

        ans = await self.d.ask(
            (
                "",
                "Enter the hostname and port of the HTTP server to download updates from",
                "using the format (local.server:port).",
            ),
            "" if current == "cisco" else current,
            valid=valid,
            complaint="You must enter a valid hostname and port.",
        )
        return ans if ":" in ans else f"{ans}:80"

    async def _url_question(self, current: str) -> str:
        return await self.d.ask(
            (
                "",
                "Enter the full HTTP URL of the update list using the format",
                "(http://optionalname:password@local.server:port/directory/manifest.xml).",
            ),
            "" if current == "cisco" else current,
            valid=lambda ans: ans.startswith("http://") and " " not in ans and len(ans) > 10,
            complaint="You must enter a valid URL starting with http://.",
        )

    async def cmd_updateconfig(self) -> None:
        d = self.d
        while True:
            await d.lines(*self._update_printout())
            op = await d.menu(
                (
                    ("SETUP", "Edit update configuration."),
                    ("VALIDATE_CERTIFICATES", "Validate update server certificates"),
                    ("TRUSTED_CERTIFICATES", "Manage trusted certificates for updates"),
                )
            )
            if op is None:
                self.term.line()
                return
            if op != "SETUP":
                await d.lines("", NOT_SIMULATED)
                continue
            await self._setup()

    async def _setup(self) -> None:
        cur = self.a.pending or self.a.committed
        new = type(cur)(cur.images, cur.listing, cur.feature_keys)
        if await self._source_question("Feature Key updates", cur.feature_keys, "updates from") == "2":
            new.feature_keys = await self._host_question(cur.feature_keys)
        else:
            new.feature_keys = "cisco"
        if self.a.printing.extra_setup_question:
            # Answering "own server" here would point a service we do not touch elsewhere.
            if await self._source_question(EXTRA_SERVICE, "cisco", "updates from") == "2":
                await self._host_question("cisco")
        for svc in OTHER_SERVICES:
            await self._source_question(svc, "cisco", "updates from")
        if await self._source_question("Cisco AsyncOS upgrades", cur.images, "updates from (images)") == "2":
            new.images = await self._host_question(cur.images)
        else:
            new.images = "cisco"
        for svc in OTHER_SERVICES[:2]:
            await self._source_question(svc, "cisco", "the list of available updates from")
        listing = "the list of available updates from"
        if await self._source_question("Cisco AsyncOS upgrades", cur.listing, listing) == "2":
            new.listing = await self._url_question(cur.listing)
        else:
            new.listing = "cisco"
        await self.d.ask(("", "Enter the number of seconds to wait between update checks."), "5m")
        await self.d.confirm("\nDo you want to set up a proxy server for HTTP updates?", "N")
        if new != self.a.committed:
            self.a.pending = new

    async def cmd_commit(self) -> None:
        d = self.d
        if self.a.pending is None:
            await d.lines("", "There is no data to commit.")
            return
        await d.ask(("", "Please enter some comments describing your changes:"), "")
        await d.confirm("\nDo you want to save the current configuration for rollback?", "Y")
        self.a.committed = self.a.pending
        self.a.pending = None
        await d.lines("", f"Changes committed: {_clock()}")

    # --- backups -------------------------------------------------------------------------------
    async def _password_option(self) -> str:
        w = self.a.password_word
        picks = await self.d.choose(
            ("", f"Choose the {w} option:"),
            (f"Mask {w}s (Files with masked {w}s cannot be loaded using loadconfig command)", f"Encrypt {w}s"),
            "1",
        )
        return "masked" if picks == [1] else "encrypted"

    def _write_config(self, mode: str) -> str:
        a = self.a
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{a.model}-{a.serial.split('-')[0]}-{stamp}-{a.reboots}.xml"
        secret = "*****" if mode == "masked" else "$9$" + a.serial[::-1]
        body = (
            '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
            f"<config>\n  <hostname>{a.hostname}</hostname>\n  <version>{vdotted(a.version)}</version>\n"
            f'  <passphrases mode="{mode}">{secret}</passphrases>\n'
            f"  <listeners>{','.join(a.listeners)}</listeners>\n</config>\n"
        )
        (a.config_dir / name).write_text(body)
        return name

    async def cmd_saveconfig(self) -> None:
        mode = await self._password_option()
        name = self._write_config(mode)
        await self.d.lines(
            "",
            f'File written on machine "{self.a.hostname}" to the location "/configuration/{name}".',
            "Configuration saved.",
        )

    async def cmd_slbl(self) -> None:
        d = self.d
        a = self.a
        if not a.slbl_enabled:
            await d.lines(
                "", "End-User Safelist/Blocklist is currently disabled. The feature must be enabled through GUI."
            )
            return
        while True:
            await d.lines("", "End-User Safelist/Blocklist: Enabled")
            op = await d.menu(
                (
                    ("IMPORT", "Replace all entries in the End-User Safelist/Blocklist."),
                    ("EXPORT", "Export all entries from the End-User Safelist/Blocklist."),
                )
            )
            if op is None:
                self.term.line()
                return
            if op == "EXPORT":
                stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime())
                name = f"slbl-{a.serial.split('-')[0]}-{stamp}.csv"
                (a.config_dir / name).write_text("user@example.com,safelist,partner.example.org\n")
                await d.lines("", f"Export is complete. The file {name} was written to the configuration directory.")
            else:
                await d.lines("", NOT_SIMULATED)

    # --- upgrade -------------------------------------------------------------------------------
    def _image_name(self, v: SimVersion) -> str:
        return f"AsyncOS {vdotted(v).split('-')[0]} build {v[3]:03d}"

    def _download_line(self) -> str:
        assert self.a.downloading is not None
        return (
            f"Download of upgrade image ({self._image_name(self.a.downloading)}) is in progress "
            f"({int(self.a.download_percent)}% complete)."
        )

    async def cmd_upgrade(self) -> None:
        d = self.d
        a = self.a
        node = self.node
        if a.upgrade_busy:
            await d.lines("", "Upgrade failure: Upgrade already in progress")
            return
        await d.lines("", "Analyzing system configuration for upgrade readiness...")
        await node.sleep_range(node.durations.analysis, parts=2)
        await d.line("Disk space check ............ ok")
        await node.sleep_range(node.durations.analysis, parts=2)
        await d.line("Configuration check ......... ok")
        if not await d.confirm("Are you sure you want to proceed with upgrade?", "Y"):
            return
        if a.downloading is not None:
            await d.lines("", self._download_line())
            if await d.confirm("Do you want to cancel the download and select a different upgrade image ?", "Y"):
                node.cancel_download()
                await d.line("The download has been cancelled.")
            else:
                op = await d.menu(
                    (
                        ("DOWNLOADSTATUS", "Display the status of the download."),
                        ("CANCELDOWNLOAD", "Cancel the download."),
                    )
                )
                await self._staging_op(op)
                return
        items = [
            ("DOWNLOADINSTALL", "Downloads and installs the upgrade image (needs reboot)."),
            ("DOWNLOAD", "Downloads the upgrade image."),
        ]
        if a.staged is not None:
            items += [
                ("INSTALL", f"Installs the downloaded upgrade image ({self._image_name(a.staged)}) (needs reboot)."),
                ("DELETE", "Delete downloaded image"),
                ("DOWNLOADSTATUS", "Display the status of the download."),
            ]
        op = await d.menu(items)
        if op is None:
            return
        if op in ("DOWNLOADSTATUS", "DELETE", "CANCELDOWNLOAD"):
            await self._staging_op(op)
            return
        if op == "INSTALL":
            assert a.staged is not None
            chosen = a.staged
            await d.lines("", f"The downloaded image {self._image_name(chosen)} will be installed.")
        else:
            offers = await node.fetch_offers()
            if not offers:
                await d.lines("", "No available upgrades. Please check the upgrade settings and try again.")
                return
            picks = await d.choose(
                ("", "Upgrades available."),
                [
                    f"{self._image_name(v)} upgrade For Email, {date}, is a release available for General Deployment"
                    for v, date in offers
                ],
                str(len(offers)),  # the newest: not necessarily what the operator planned
            )
            chosen = offers[picks[0] - 1][0]
            if op == "DOWNLOAD":
                if a.staged is not None and a.staged != chosen:
                    await d.lines("", f"The downloaded image {self._image_name(a.staged)} will be replaced.")
                node.start_download(chosen)
                await d.lines(
                    "",
                    f"Download of {self._image_name(chosen)} has started in the background.",
                    "Use upgrade > DOWNLOADSTATUS to follow it.",
                )
                return
        if not await self._before_upgrade_questions():
            return
        await self._run_upgrade(chosen, from_stage=op == "INSTALL")

    async def _before_upgrade_questions(self) -> bool:
        d = self.d
        a = self.a
        if a.printing.extra_upgrade_question and await d.confirm(
            "\nDo you want to send a notification email to the administrators about this upgrade?", "N"
        ):
            await d.ask(("", "Enter email addresses, separated by commas."), "")
        if await d.confirm(
            "\nWould you like to save the current configuration to the configuration directory before upgrading?",
            "Y",
        ):
            self._write_config(await self._password_option())
        await d.confirm("\nWould you like to email the current configuration before upgrading?", "N")
        if (13, 0, 0, 0) <= a.version < (15, 0, 0, 0) and not await d.confirm(
            "\nFrom AsyncOS 13.0 onwards, the anti-spam engine is updated automatically after the "
            "upgrade. Do you want to proceed with the upgrade?",
            "Y",
        ):
            return False
        return await d.confirm(
            "\nPerforming an upgrade may require a reboot of the system after the upgrade is applied. "
            "You may log in again after this is done. Do you wish to proceed with the upgrade?",
            "Y",
        )

    async def _run_upgrade(self, chosen: SimVersion, *, from_stage: bool) -> None:
        """Stream the appliance's upgrade to this session, ask the seconds, and stay until the reboot."""
        job = self.node.begin_upgrade(chosen, from_stage)
        try:
            while (text := await job.output.get()) is not None:
                self.d.raw(text)
            if job.failed:
                return
            job.answer(await self._close_seconds())
            await self.d.lines("", "Rebooting the system...")
            await self.node.wait_down()
        finally:
            job.answer(30)

    async def _staging_op(self, op: str | None) -> None:
        d = self.d
        a = self.a
        if op == "DOWNLOADSTATUS":
            if a.downloading is not None:
                await d.lines("", self._download_line())
            elif a.staged is not None:
                await d.lines(
                    "", f"Upgrade image {self._image_name(a.staged)} has been downloaded and is ready to install."
                )
            else:
                await d.lines("", "No upgrade image has been downloaded.")
        elif op == "CANCELDOWNLOAD":
            self.node.cancel_download()
            await d.lines("", "The download has been cancelled.")
        elif op == "DELETE":
            a.staged = None
            await d.lines("", "The downloaded upgrade image has been deleted.")

    async def _close_seconds(self) -> int:
        raw = await self.d.ask(("", "Enter the number of seconds to wait before forcibly closing connections."), "30")
        return int(raw) if raw.isdigit() else 30

    async def cmd_reboot(self) -> None:
        if self.a.pending is not None and not await self.d.confirm(
            "\nThere are uncommitted changes. Are you sure you want to reboot?", "N"
        ):
            return
        seconds = await self._close_seconds()
        await self.d.lines("", "Rebooting the system...")
        self.node.schedule_reboot(None, seconds)
        await self.node.wait_down()

    # --- clusters ------------------------------------------------------------------------------
    async def cmd_clusterconfig(self) -> None:
        d = self.d
        a = self.a
        if a.cluster is None:
            await d.lines("", "This machine is not part of a cluster. Use clusterconfig in the GUI to create one.")
            return
        cluster = a.cluster
        while True:
            await d.lines("", f"Cluster {cluster.name}")
            op = await d.menu(
                (
                    ("ADDGROUP", "Add a cluster group."),
                    ("LIST", "List the machines in the cluster."),
                    ("DISCONNECT", "Temporarily detach machines from the cluster."),
                    ("RECONNECT", "Restore connections with machines that were previously detached."),
                    ("REMOVEMACHINE", "Remove a machine from the cluster."),
                )
            )
            if op is None:
                self.term.line()
                break
            if op == "LIST":
                await d.lines("", f"Cluster {cluster.name}", "=" * (8 + len(cluster.name)), "Group Main_Group:")
                for m in cluster.members:
                    state = "" if m.cluster_connected else " (disconnected)"
                    await d.line(self._pad(f"Machine {m.hostname} (Serial #: {m.serial}){state}"))
            elif op in ("DISCONNECT", "RECONNECT"):
                await self._cluster_connect(op == "RECONNECT")
            else:
                await d.lines("", NOT_SIMULATED)
        if a.cluster_connected:
            self.machine_mode = False

    async def _cluster_connect(self, reconnect: bool) -> None:
        d = self.d
        cluster = self.a.cluster
        assert cluster is not None
        verb = "reconnect" if reconnect else "disconnect"
        candidates = [m for m in cluster.members if m.cluster_connected != reconnect]
        if not candidates:
            await d.lines("", f"There are no machines to {verb}.")
            return
        picks = await d.choose(
            ("", f"Choose the machine(s) to {verb}. Separate multiple choices with commas."),
            [f"{m.hostname} (group Main_Group)" for m in candidates],
            "",
            multi=True,
            allow_empty=True,
        )
        chosen = [candidates[p - 1] for p in picks]
        if not chosen or not await d.confirm(
            f"\nAre you sure you want to {verb} {', '.join(m.hostname for m in chosen)}?", "Y"
        ):
            return
        for m in chosen:
            if not reconnect:
                m.cluster_connected = False
                await d.line(f"{m.hostname} is now disconnected from the cluster.")
                continue
            reference = [c.version for c in cluster.connected()] or [self.a.version]
            if any(v != m.version for v in reference):
                await d.line(
                    f"Unable to reconnect {m.hostname}: the machine runs a different AsyncOS version "
                    f"({vdotted(m.version)}) than the cluster ({vdotted(reference[0])})."
                )
                continue
            m.cluster_connected = True
            await d.line(f"{m.hostname} is now reconnected to the cluster.")
