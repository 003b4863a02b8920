"""RebootPoller: TCP port, SSH login, CLI prompt, `version`, with back-off and a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from segtui.asyncos.errors import ApplianceError, AuthFailed, ConnectFailed, ConnectionLost, HostKeyRejected
from segtui.asyncos.versions import Version
from segtui.inventory import ApplianceSpec
from segtui.rollout.context import RolloutContext
from segtui.rollout.events import RebootProbed


class RebootTimeout(ApplianceError):
    """The appliance did not come back before the reboot deadline: its state is unknown."""


class WrongVersion(ApplianceError):
    """The appliance rebooted and came back on a version we did not ask for."""


class RebootPoller:
    def __init__(self, ctx: RolloutContext, spec: ApplianceSpec, *, on_down: Callable[[], None]) -> None:
        self.ctx = ctx
        self.spec = spec
        self.on_down = on_down

    async def _tcp_open(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(self.spec.host, self.spec.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return True

    async def wait_for(self, expected: Version, previous: Version, saw_down: bool, since: float) -> Version:
        """Poll until `version` answers `expected`; raise WrongVersion, RebootTimeout or a key/auth error."""
        p = self.ctx.settings.polling
        deadline = since + self.ctx.settings.deadlines.reboot
        backoff = p.reboot_initial
        attempt = 0
        name = self.spec.name

        def probe(stage: str, error: str | None = None) -> None:
            self.ctx.emit(
                RebootProbed(appliance=name, stage=stage, attempt=attempt, since=since, deadline=deadline, error=error)
            )

        while True:
            attempt += 1
            left = deadline - time.time()
            if left <= 0:
                raise RebootTimeout(
                    name,
                    f"did not come back within {self.ctx.settings.deadlines.reboot:g} s "
                    f"of the reboot ({attempt - 1} probes); state unknown",
                )
            probe("tcp")
            if not await self._tcp_open(min(5.0, left)):
                if not saw_down:
                    saw_down = True
                    self.on_down()
                probe("tcp", "port closed")
            else:
                probe("ssh")
                # Journaled like every other command: the transcript shows what the appliance said on its way back.
                # A new login, never a connection from before: that it is accepted is part of the proof.
                appliance = self.ctx.appliance(self.spec, fresh=True)
                back = False
                try:
                    await appliance.session()
                    probe("cli")
                    probe("version")
                    async with asyncio.timeout(max(1.0, left)):
                        info = await appliance.version()
                except (HostKeyRejected, AuthFailed):
                    raise
                except (ConnectFailed, ConnectionLost, TimeoutError, ApplianceError) as exc:
                    if not saw_down and isinstance(exc, ConnectFailed | ConnectionLost):
                        saw_down = True
                        self.on_down()
                    probe("ssh", self.ctx.clean(str(exc.message if isinstance(exc, ApplianceError) else exc)))
                else:
                    if info.version == expected:
                        back = True
                        return info.version
                    if info.version == previous and not saw_down:
                        # Still installing: the reboot has not happened yet.
                        probe("version", f"still on {previous}: installing")
                    else:
                        raise WrongVersion(name, f"came back on {info.version}, expected {expected}")
                finally:
                    if back:
                        appliance.share()  # proven after the reboot: its connection serves the verification
                    await appliance.close(reuse=back)
            await asyncio.sleep(min(backoff, max(0.0, deadline - time.time())))
            backoff = min(p.reboot_max, backoff * 1.5)
