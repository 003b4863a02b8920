"""The simulated AsyncOS CLI: one instance per SSH shell or exec request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from segtui.sim.model import RELEASES, SimAppliance, SimVersion, vdotted
from segtui.sim.terminal import Cancelled, SessionClosed, Terminal

if TYPE_CHECKING:
    from segtui.sim.node import SimNode

READ_ONLY = {"version", "status", "status detail", "workqueue", "workqueue status", "showconfig"}
MACHINE_LEVEL = {"suspendlistener", "resumelistener", "upgrade", "reboot", "workqueue", "updateconfig"}
PAGE_LINES = 14  # AsyncOS pages long output whatever the terminal says

OTHER_SERVICES = (
    "Timezone rules",
    "Enrollment Client Updates",
    "Support Request updates",
    "Sophos Anti-Virus",
)


def _clock() -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y UTC", time.gmtime())


class ApplianceShell:
    def __init__(self, node: SimNode, term: Terminal) -> None:
        self.node = node
        self.a: SimAppliance = node.appliance
        self.term = term
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
        t = self.term
        major, minor, patch, build = self.a.version
        t.line(f"AsyncOS {major}.{minor}.{patch} for Cisco {self.a.model} build {build:03d}")
        t.line(f"Welcome to the Cisco {self.a.model} Secure Email Gateway Virtual")
        t.line("NOTE: This session will expire if left idle for 30 minutes. Any uncommitted configuration")
        t.line("changes will be lost. Commit the configuration changes as soon as they are made.")
        t.line()
        while True:
            t.write(self.prompt())
            try:
                line = (await t.readline()).strip()
            except Cancelled:
                t.line()
                continue
            if not line:
                continue
            if line in ("exit", "quit"):
                if self.a.pending is not None:
                    ans = await t.ask_inline(
                        "There are uncommitted changes. Do you want to commit before exiting?", "N"
                    )
                    if ans.upper().startswith("Y"):
                        await self.cmd_commit()
                t.line()
                return
            try:
                await self.dispatch(line)
            except Cancelled:
                t.line()

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
        if self.a.drop_now(" ".join(w.lower() for w in words)):
            self.node.event(f"dropped:{line}")
            self.node.drop_connections()
            raise SessionClosed()
        handlers = {
            "version": self.cmd_version,
            "status": self.cmd_status,
            "workqueue": self.cmd_workqueue,
            "suspendlistener": self.cmd_suspend,
            "resumelistener": self.cmd_resume,
            "updateconfig": self.cmd_updateconfig,
            "commit": self.cmd_commit,
            "saveconfig": self.cmd_saveconfig,
            "slblconfig": self.cmd_slbl,
            "upgrade": self.cmd_upgrade,
            "reboot": self.cmd_reboot,
            "clusterconfig": self.cmd_clusterconfig,
            "help": self.cmd_help,
        }
        handler = handlers.get(cmd)
        if handler is None:
            self.term.line()
            self.term.line(f"Unknown command or missing feature key: {words[0]}")
            self.term.line()
            return
        if cmd in MACHINE_LEVEL and not await self._ensure_machine_mode():
            return
        if cmd == "status":
            await self.cmd_status(detail=rest == "detail")
        elif cmd == "workqueue":
            await self.cmd_workqueue(rest)
        else:
            await handler()

    async def _ensure_machine_mode(self) -> bool:
        a = self.a
        if a.cluster is None or self.machine_mode or not a.cluster_connected:
            return True
        ans = await self.term.ask_inline(
            "\nThis command is restricted to run in machine mode of the machine you are logged in to.  "
            f'Do you want to switch to "Machine {a.hostname}" mode?',
            "Y",
        )
        self.term.line()
        if ans.upper().startswith("Y"):
            self.machine_mode = True
            return True
        return False

    async def paged(self, lines: list[str]) -> None:
        for i, text in enumerate(lines):
            if i and i % PAGE_LINES == 0:
                self.term.write("-Press Any Key For More-")
                await self.term.key()
                self.term.write("\r" + " " * 24 + "\r")
            self.term.line(text)

    # --- read-only -----------------------------------------------------------------------------
    async def cmd_help(self) -> None:
        self.term.line("\nversion, status, workqueue, suspendlistener, resumelistener, updateconfig, commit,")
        self.term.line("saveconfig, slblconfig, upgrade, reboot, clusterconfig, exit\n")

    async def cmd_version(self) -> None:
        a = self.a
        rel = RELEASES.get(a.version)
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
        for text in lines:
            self.term.line(text)

    def _depth(self) -> int:
        return self.a.tick_mail(self.node.time_scale, self.node.durations.drain_rate)

    async def cmd_workqueue(self, rest: str = "status") -> None:
        if rest not in ("", "status"):
            self.term.line("\nUnknown option\n")
            return
        self.term.line()
        self.term.line("Status: Operational")
        self.term.line(f"Messages: {self._depth()}")

    async def cmd_status(self, detail: bool = False) -> None:
        a = self.a
        depth = self._depth()
        sysstat = "Receiving Suspended" if a.suspended else "Online"
        head = [
            "",
            f"Status as of:                  {_clock()}",
            "Up since:                      Tue Nov 03 22:01:55 2026 UTC (25d 5h 12m 12s)",
            "Last counter reset:            Never",
            f"System status:                 {sysstat}",
            "Oldest Message:                3 mins 12 secs" if depth else "Oldest Message:                No Messages",
            "Feature - IronPort Anti-Spam:  1042 days",
            "Feature - Sophos:              1042 days",
            "",
        ]
        if not detail:
            head += [f"Messages In Work Queue:        {depth}", ""]
            for text in head:
                self.term.line(text)
            return
        body = [
            "Counters:                        Reset       Uptime     Lifetime",
            "  Receiving",
            "    Messages Received        1,045,221      233,117    9,845,112",
            "    Recipients Received      1,211,002      260,001   11,001,245",
            "Gauges:                          Current",
            " System",
            "   RAM Utilization                   21%",
            "   Overall CPU load average           7%",
            "   Disk I/O Utilization               2%",
            "   Resource Conservation              0",
            " Queue",
            "   Active Recipients                 12",
            f"   Messages In Work Queue         {depth:>5,}",
            "   Kilobytes Used                 4,096",
            "   Kilobytes Free            83,886,023",
        ]
        await self.paged(head + body)

    # --- listeners -----------------------------------------------------------------------------
    async def _choose_listeners(self, verb: str) -> list[str] | None:
        names = self.a.listeners
        t = self.term
        if not names:
            t.line("\nThere are no listeners configured on this appliance.\n")
            return None
        if len(names) == 1:
            return list(names)
        t.line()
        t.line(f"Choose the listener(s) you wish to {verb}.")
        t.line("Separate multiple entries with commas.")
        t.line("1. All")
        for i, n in enumerate(names, start=2):
            t.line(f"{i}. {n}")
        while True:
            t.write("[1]> ")
            raw = (await t.readline()).strip() or "1"
            try:
                picks = [int(x) for x in raw.split(",")]
            except ValueError:
                t.line(f"You must enter a number from 1 to {len(names) + 1}.")
                continue
            if any(p < 1 or p > len(names) + 1 for p in picks):
                t.line(f"You must enter a number from 1 to {len(names) + 1}.")
                continue
            if 1 in picks:
                return list(names)
            return [names[p - 2] for p in picks]

    async def cmd_suspend(self) -> None:
        chosen = await self._choose_listeners("suspend")
        if chosen is None:
            return
        t = self.term
        t.line()
        t.line("Enter the number of seconds to wait before abruptly closing connections.")
        while True:
            t.write("[30]> ")
            raw = (await t.readline()).strip() or "30"
            if raw.isdigit():
                break
            t.line("You must enter a number.")
        t.line()
        t.line("Waiting for listeners to exit...")
        await self.node.sleep(min(int(raw), 5) * 0.2)
        self._depth()
        self.a.suspended = True
        self.node.event("suspended")
        t.line(f"Receiving suspended for {', '.join(chosen)}.")

    async def cmd_resume(self) -> None:
        chosen = await self._choose_listeners("resume")
        if chosen is None:
            return
        self._depth()
        self.a.suspended = False
        self.node.event("resumed")
        self.term.line()
        self.term.line(f"Receiving resumed for {', '.join(chosen)}.")

    # --- updateconfig / commit -----------------------------------------------------------------
    def _print_update_table(self) -> None:
        s = self.a.pending or self.a.committed
        t = self.term

        def col(value: str, url: bool) -> str:
            if value == "cisco":
                return "Cisco IronPort Servers"
            return value if url else f"http://{value}/"

        t.line()
        t.line(f"{'Service (images):':<52}Update URL:")
        t.line("-" * 90)
        t.line(f"{'Feature Key updates':<52}{col(s.feature_keys, False)}")
        for svc in OTHER_SERVICES:
            t.line(f"{svc:<52}Cisco IronPort Servers")
        t.line(f"{'AsyncOS upgrades':<52}{col(s.images, False)}")
        t.line()
        t.line(f"{'Service (list):':<52}Update URL:")
        t.line("-" * 90)
        for svc in OTHER_SERVICES[:2]:
            t.line(f"{svc:<52}Cisco IronPort Servers")
        t.line(f"{'AsyncOS upgrades':<52}{col(s.listing, True)}")
        t.line()
        t.line("Update interval: 5m")
        t.line("Proxy server: not enabled")
        t.line("HTTPS Proxy server: not enabled")

    async def _source_question(self, service: str, current: str, what: str) -> str:
        t = self.term
        t.line()
        t.line(f"For {service}, please select where the system will download {what}:")
        t.line("1. Use Cisco AsyncOS upgrade servers" if "AsyncOS" in service else "1. Use Cisco IronPort servers")
        t.line("2. Use own server")
        default = "1" if current == "cisco" else "2"
        while True:
            t.write(f"[{default}]> ")
            ans = (await t.readline()).strip() or default
            if ans in ("1", "2"):
                return ans
            t.line("You must enter a number from 1 to 2.")

    async def _value_question(
        self, lines: tuple[str, str], current: str, valid: Callable[[str], bool], complaint: str
    ) -> str:
        t = self.term
        t.line()
        for text in lines:
            t.line(text)
        default = "" if current == "cisco" else current
        while True:
            t.write(f"[{default}]> ")
            ans = (await t.readline()).strip() or default
            if valid(ans):
                return ans
            t.line(complaint)

    async def _host_question(self, current: str) -> str:
        def valid(ans: str) -> bool:
            host, _, port = ans.partition(":")
            return bool(host) and (not port or port.isdigit()) and " " not in ans

        ans = await self._value_question(
            (
                "Enter the hostname and port of the HTTP server to download updates from",
                "using the format (local.server:port).",
            ),
            current,
            valid,
            "You must enter a valid hostname and port.",
        )
        return ans if ":" in ans else f"{ans}:80"

    async def _url_question(self, current: str) -> str:
        return await self._value_question(
            (
                "Enter the full HTTP URL of the update list using the format",
                "(http://optionalname:password@local.server:port/directory/manifest.xml).",
            ),
            current,
            lambda ans: ans.startswith("http://") and " " not in ans and len(ans) > 10,
            "You must enter a valid URL starting with http://.",
        )

    async def cmd_updateconfig(self) -> None:
        t = self.term
        while True:
            self._print_update_table()
            t.line()
            t.line("Choose the operation you want to perform:")
            t.line("- SETUP - Edit update configuration.")
            t.line("- VALIDATE_CERTIFICATES - Validate update server certificates")
            t.line("- TRUSTED_CERTIFICATES - Manage trusted certificates for updates")
            t.write("[]> ")
            op = (await t.readline()).strip().upper()
            if not op:
                t.line()
                return
            if op != "SETUP":
                t.line("\nThis operation is not available in this simulation.")
                continue
            cur = self.a.pending or self.a.committed
            new = type(cur)(cur.images, cur.listing, cur.feature_keys)
            if await self._source_question("Feature Key updates", cur.feature_keys, "updates from") == "2":
                new.feature_keys = await self._host_question(cur.feature_keys)
            else:
                new.feature_keys = "cisco"
            for svc in OTHER_SERVICES:
                await self._source_question(svc, "cisco", "updates from")
            if await self._source_question("Cisco AsyncOS upgrades", cur.images, "updates from (images)") == "2":
                new.images = await self._host_question(cur.images)
            else:
                new.images = "cisco"
            for svc in OTHER_SERVICES[:2]:
                await self._source_question(svc, "cisco", "the list of available updates from")
            if (
                await self._source_question("Cisco AsyncOS upgrades", cur.listing, "the list of available updates from")
                == "2"
            ):
                new.listing = await self._url_question(cur.listing)
            else:
                new.listing = "cisco"
            t.line()
            t.line("Enter the number of seconds to wait between update checks.")
            t.write("[5m]> ")
            await t.readline()
            t.line()
            await t.ask_inline("Do you want to set up a proxy server for HTTP updates?", "N")
            if new != self.a.committed:
                self.a.pending = new

    async def cmd_commit(self) -> None:
        t = self.term
        if self.a.pending is None:
            t.line("\nThere is no data to commit.")
            return
        t.line()
        t.line("Please enter some comments describing your changes:")
        t.write("[]> ")
        await t.readline()
        t.line()
        await t.ask_inline("Do you want to save the current configuration for rollback?", "Y")
        self.a.committed = self.a.pending
        self.a.pending = None
        t.line()
        t.line(f"Changes committed: {_clock()}")

    # --- backups -------------------------------------------------------------------------------
    async def _password_option(self) -> str:
        t = self.term
        w = self.a.password_word
        t.line()
        t.line(f"Choose the {w} option:")
        t.line(f"1. Mask {w}s (Files with masked {w}s cannot be loaded using loadconfig command)")
        t.line(f"2. Encrypt {w}s")
        while True:
            t.write("[1]> ")
            ans = (await t.readline()).strip() or "1"
            if ans in ("1", "2"):
                return "masked" if ans == "1" else "encrypted"
            t.line("You must enter a number from 1 to 2.")

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
        self.term.line()
        self.term.line(f'File written on machine "{self.a.hostname}" to the location "/configuration/{name}".')
        self.term.line("Configuration saved.")

    async def cmd_slbl(self) -> None:
        t = self.term
        a = self.a
        if not a.slbl_enabled:
            t.line()
            t.line("End-User Safelist/Blocklist is currently disabled. The feature must be enabled through GUI.")
            return
        while True:
            t.line()
            t.line("End-User Safelist/Blocklist: Enabled")
            t.line()
            t.line("Choose the operation you want to perform:")
            t.line("- IMPORT - Replace all entries in the End-User Safelist/Blocklist.")
            t.line("- EXPORT - Export all entries from the End-User Safelist/Blocklist.")
            t.write("[]> ")
            op = (await t.readline()).strip().upper()
            if not op:
                t.line()
                return
            if op == "EXPORT":
                stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime())
                name = f"slbl-{a.serial.split('-')[0]}-{stamp}.csv"
                (a.config_dir / name).write_text("user@example.com,safelist,partner.example.org\n")
                t.line()
                t.line(f"Export is complete. The file {name} was written to the configuration directory.")
            else:
                t.line("\nIMPORT is not available in this simulation.")

    # --- upgrade -------------------------------------------------------------------------------
    def _image_name(self, v: SimVersion) -> str:
        return f"AsyncOS {vdotted(v).split('-')[0]} build {v[3]:03d}"

    async def _menu(self, items: list[tuple[str, str]]) -> str | None:
        t = self.term
        t.line()
        t.line("Choose the operation you want to perform:")
        for op, text in items:
            t.line(f"- {op} - {text}")
        names = [op for op, _ in items]
        while True:
            t.write("[]> ")
            op = (await t.readline()).strip().upper()
            if not op:
                return None
            if op in names:
                return op
            t.line("Unknown option")

    async def cmd_upgrade(self) -> None:
        t = self.term
        a = self.a
        node = self.node
        if a.upgrade_busy:
            t.line("\nUpgrade failure: Upgrade already in progress")
            return
        t.line()
        t.line("Analyzing system configuration for upgrade readiness...")
        await node.sleep_range(node.durations.analysis, parts=2)
        t.line("Disk space check ............ ok")
        await node.sleep_range(node.durations.analysis, parts=2)
        t.line("Configuration check ......... ok")
        if not (await t.ask_inline("Are you sure you want to proceed with upgrade?", "Y")).upper().startswith("Y"):
            return
        if a.downloading is not None:
            t.line()
            t.line(
                f"Download of upgrade image ({self._image_name(a.downloading)}) is in progress "
                f"({int(a.download_percent)}% complete)."
            )
            ans = await t.ask_inline("Do you want to cancel the download and select a different upgrade image ?", "Y")
            if ans.upper().startswith("Y"):
                node.cancel_download()
                t.line("The download has been cancelled.")
            else:
                op = await self._menu(
                    [
                        ("DOWNLOADSTATUS", "Display the status of the download."),
                        ("CANCELDOWNLOAD", "Cancel the download."),
                    ]
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
        op = await self._menu(items)
        if op is None:
            return
        if op in ("DOWNLOADSTATUS", "DELETE", "CANCELDOWNLOAD"):
            await self._staging_op(op)
            return
        if op == "INSTALL":
            assert a.staged is not None
            chosen = a.staged
            t.line()
            t.line(f"The downloaded image {self._image_name(chosen)} will be installed.")
        else:
            offers = await node.fetch_offers()
            if offers is None or not offers:
                t.line()
                t.line("No available upgrades. Please check the upgrade settings and try again.")
                return
            t.line()
            t.line("Upgrades available.")
            for i, (ver, date) in enumerate(offers, start=1):
                t.line(
                    f"{i}. {self._image_name(ver)} upgrade For Email, {date}, "
                    "is a release available for General Deployment"
                )
            default = str(len(offers))
            while True:
                t.write(f"[{default}]> ")
                raw = (await t.readline()).strip() or default
                if raw.isdigit() and 1 <= int(raw) <= len(offers):
                    chosen = offers[int(raw) - 1][0]
                    break
                t.line(f"You must enter a number from 1 to {len(offers)}.")
            if op == "DOWNLOAD":
                if a.staged is not None and a.staged != chosen:
                    t.line(f"\nThe downloaded image {self._image_name(a.staged)} will be replaced.")
                node.start_download(chosen)
                t.line()
                t.line(f"Download of {self._image_name(chosen)} has started in the background.")
                t.line("Use upgrade > DOWNLOADSTATUS to follow it.")
                return
        t.line()
        save = await t.ask_inline(
            "Would you like to save the current configuration to the configuration directory before upgrading?",
            "Y",
        )
        if save.upper().startswith("Y"):
            mode = await self._password_option()
            self._write_config(mode)
        t.line()
        await t.ask_inline("Would you like to email the current configuration before upgrading?", "N")
        if a.version >= (13, 0, 0, 0) and a.version < (15, 0, 0, 0):
            t.line()
            ans = await t.ask_inline(
                "From AsyncOS 13.0 onwards, the anti-spam engine is updated automatically after the "
                "upgrade. Do you want to proceed with the upgrade?",
                "Y",
            )
            if not ans.upper().startswith("Y"):
                return
        t.line()
        ans = await t.ask_inline(
            "Performing an upgrade may require a reboot of the system after the upgrade is applied. "
            "You may log in again after this is done. Do you wish to proceed with the upgrade?",
            "Y",
        )
        if not ans.upper().startswith("Y"):
            return
        await node.run_upgrade(chosen, self, from_stage=op == "INSTALL")

    async def _staging_op(self, op: str | None) -> None:
        t = self.term
        a = self.a
        t.line()
        if op == "DOWNLOADSTATUS":
            if a.downloading is not None:
                t.line(
                    f"Download of upgrade image ({self._image_name(a.downloading)}) is in progress "
                    f"({int(a.download_percent)}% complete)."
                )
            elif a.staged is not None:
                t.line(f"Upgrade image {self._image_name(a.staged)} has been downloaded and is ready to install.")
            else:
                t.line("No upgrade image has been downloaded.")
        elif op == "CANCELDOWNLOAD":
            self.node.cancel_download()
            t.line("The download has been cancelled.")
        elif op == "DELETE":
            a.staged = None
            t.line("The downloaded upgrade image has been deleted.")

    async def upgrade_progress(self, lines: asyncio.Queue[str | None]) -> None:
        """Stream the appliance's upgrade output to this session until it asks for the seconds."""
        while True:
            text = await lines.get()
            if text is None:
                return
            self.term.write(text)

    async def ask_close_seconds(self) -> int:
        t = self.term
        t.line()
        t.line("Enter the number of seconds to wait before forcibly closing connections.")
        t.write("[30]> ")
        raw = (await t.readline()).strip() or "30"
        return int(raw) if raw.isdigit() else 30

    async def cmd_reboot(self) -> None:
        t = self.term
        if self.a.pending is not None:
            ans = await t.ask_inline("\nThere are uncommitted changes. Are you sure you want to reboot?", "N")
            if not ans.upper().startswith("Y"):
                return
        seconds = await self.ask_close_seconds()
        t.line()
        t.line("Rebooting the system...")
        self.node.schedule_reboot(None, seconds)
        await self.node.wait_down()

    # --- clusters ------------------------------------------------------------------------------
    async def cmd_clusterconfig(self) -> None:
        t = self.term
        a = self.a
        if a.cluster is None:
            t.line("\nThis machine is not part of a cluster. Use clusterconfig in the GUI to create one.")
            return
        cluster = a.cluster
        t.line()
        t.line(f"Cluster {cluster.name}")
        t.line()
        t.line("Choose the operation you want to perform:")
        t.line("- ADDGROUP - Add a cluster group.")
        t.line("- LIST - List the machines in the cluster.")
        t.line("- DISCONNECT - Temporarily detach machines from the cluster.")
        t.line("- RECONNECT - Restore connections with machines that were previously detached.")
        t.line("- REMOVEMACHINE - Remove a machine from the cluster.")
        t.write("[]> ")
        op = (await t.readline()).strip().upper()
        if op == "LIST":
            t.line()
            for m in cluster.members:
                state = "connected" if m.cluster_connected else "disconnected"
                t.line(f"{m.hostname} (group Main_Group) {state}, AsyncOS {vdotted(m.version)}")
            return
        if op not in ("DISCONNECT", "RECONNECT"):
            if op:
                t.line("\nThat operation is not available in this simulation.")
            return
        want_connected = op == "DISCONNECT"
        candidates = [m for m in cluster.members if m.cluster_connected == want_connected]
        if not candidates:
            t.line(f"\nThere are no machines to {op.lower()}.")
            return
        t.line()
        verb = "disconnect" if want_connected else "reconnect"
        t.line(f"Choose the machine(s) to {verb}. Separate multiple choices with commas.")
        for i, m in enumerate(candidates, start=1):
            t.line(f"{i}. {m.hostname} (group Main_Group)")
        t.write("[]> ")
        raw = (await t.readline()).strip()
        try:
            picks = [candidates[int(x) - 1] for x in raw.split(",") if x.strip()]
        except (ValueError, IndexError):
            t.line("\nYou must enter a number from the list.")
            return
        if not picks:
            return
        names = ", ".join(m.hostname for m in picks)
        ans = await t.ask_inline(f"\nAre you sure you want to {verb} {names}?", "Y")
        if not ans.upper().startswith("Y"):
            return
        for m in picks:
            if want_connected:
                m.cluster_connected = False
                t.line(f"{m.hostname} is now disconnected from the cluster.")
                continue
            reference = [c.version for c in cluster.connected()] or [a.version]
            if any(v != m.version for v in reference):
                t.line(
                    f"Unable to reconnect {m.hostname}: the machine runs a different AsyncOS version "
                    f"({vdotted(m.version)}) than the cluster ({vdotted(reference[0])})."
                )
                continue
            m.cluster_connected = True
            t.line(f"{m.hostname} is now reconnected to the cluster.")
        if a.cluster_connected:
            self.machine_mode = False
