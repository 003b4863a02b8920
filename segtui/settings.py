"""Application settings: `segtui.toml` and `SEGTUI_*` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from segtui.errors import InputError


class Deadlines(BaseModel):
    """Deadline of each step of the procedure, in seconds (scaled by the demo's time scale)."""

    precheck: float = Field(120, gt=0, description="connect, version, status, work queue")
    backup: float = Field(600, gt=0, description="saveconfig + slblconfig + SCP")
    point: float = Field(300, gt=0, description="updateconfig + commit")
    suspend: float = Field(180, gt=0, description="suspendlistener")
    drain: float = Field(1800, gt=0, description="work queue to zero after suspending")
    upgrade: float = Field(3600, gt=0, description="upgrade dialogue: analysis, download, install")
    reboot: float = Field(1800, gt=0, description="reboot until `version` answers (~20 min is normal)")
    resume: float = Field(300, gt=0, description="resumelistener + restore update settings")


class Polling(BaseModel):
    workqueue: float = Field(10, gt=0, description="seconds between work-queue reads while draining")
    reboot_initial: float = Field(5, gt=0, description="first back-off between reboot probes")
    reboot_max: float = Field(30, gt=0, description="longest back-off between reboot probes")


class SSHSettings(BaseModel):
    connect_timeout: float = Field(15, gt=0)
    login_timeout: float = Field(30, gt=0)
    keepalive_interval: float = Field(15, gt=0)
    keepalive_count_max: int = Field(4, ge=1)
    max_handshakes: int = Field(16, ge=1, le=200, description="concurrent SSH handshakes")
    max_dialogues: int = Field(
        64,
        ge=1,
        le=1000,
        description="appliances in a short step at once (pre-check, backup, settings, suspend, verify, restore); "
        "the others wait, those with more upgrades ahead first",
    )
    command_timeout: float = Field(60, gt=0)


class DialogueSettings(BaseModel):
    on_unknown_question: Literal["default", "stop"] = Field(
        "default", description="a question no rule matches: take its default (recorded) or stop the step"
    )
    max_output_bytes: int = Field(16 * 1024 * 1024, ge=64 * 1024, description="cap on one command's output")


class BackupSettings(BaseModel):
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="cap on one backup file fetched over SCP")


class GuardSettings(BaseModel):
    """Mail-flow guards: peers checked before an appliance goes out of service, a bake after it is back."""

    peer_queue_max: int = Field(5000, ge=0, description="a peer's work queue must be below this")
    wait: float = Field(1800, gt=0, description="how long an appliance waits on a guard before the rollout pauses")
    bake: float = Field(600, ge=0, description="seconds of observation after an appliance is back; 0 turns it off")
    bake_queue_max: int = Field(1000, ge=0, description="the work queue must stay below this during the bake")


class WindowSettings(BaseModel):
    end: str | None = Field(None, description="maintenance window end: HH:MM, ISO date-time, or +2h / +90m")
    estimate: float = Field(2400, gt=0, description="expected seconds per appliance before any has finished")


class NotifySettings(BaseModel):
    urls: list[str] = Field(default_factory=list, description="webhook URLs receiving one JSON object per event")
    timeout: float = Field(5, gt=0)
    retries: int = Field(3, ge=0)


class TuiSettings(BaseModel):
    bell: bool = Field(True, description="ring the terminal bell when an appliance needs attention")


class LockSettings(BaseModel):
    dir: Path | None = Field(
        None, description="machine-wide per-appliance locks (default: the user's state directory); shared for teams"
    )


class Settings(BaseSettings):
    """segtui's own settings (the fleet lives in the inventory)."""

    model_config = SettingsConfigDict(
        env_prefix="SEGTUI_",
        env_nested_delimiter="__",
        extra="forbid",
        toml_file="segtui.toml",
    )

    state_dir: Path = Field(
        Path(".segtui"), description="journal, lock, backups (default: .segtui/ beside the inventory file)"
    )
    theme: str = Field("noc-dark", description="noc-dark, noc-light or high-contrast")
    concurrency: int = Field(50, ge=1, description="appliances upgraded at once at most")
    max_unavailable: int = Field(1, ge=1, description="appliances of one group out of service at once")
    listener_close_seconds: int = Field(30, ge=0, le=3600, description="suspend delay before closing connections")
    repaint_hz: float = Field(4, gt=0, le=30, description="dashboard repaint rate")
    min_scaled_deadline: float = Field(
        10, gt=0, description="floor for deadlines scaled by --time-scale (SSH itself is not faster)"
    )
    deadlines: Deadlines = Deadlines()
    polling: Polling = Polling()
    ssh: SSHSettings = SSHSettings()
    dialogue: DialogueSettings = DialogueSettings()
    backups: BackupSettings = BackupSettings()
    guards: GuardSettings = GuardSettings()
    window: WindowSettings = WindowSettings()
    notify: NotifySettings = NotifySettings()
    tui: TuiSettings = TuiSettings()
    locks: LockSettings = LockSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init > environment > segtui.toml
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def beside(self, inventory: Path) -> Settings:
        """The state directory beside the inventory (`.segtui/` in its directory) unless `state_dir` was set,
        so that `resume`, `watch` and `history` find the rollout from any working directory."""
        if "state_dir" in self.model_fields_set:
            return self
        return self.model_copy(update={"state_dir": inventory.resolve().parent / ".segtui"})

    def scaled(self, factor: float) -> Settings:
        """Deadlines and poll intervals multiplied by the simulator's time scale."""
        floor = self.min_scaled_deadline
        deadlines = Deadlines(**{k: max(floor, v * factor) for k, v in self.deadlines.model_dump().items()})
        polling = Polling(**{k: max(0.1, v * factor) for k, v in self.polling.model_dump().items()})
        # The guard must be able to read every peer at least once (SSH is not faster in a demo): floored like deadlines.
        guards = self.guards.model_copy(
            update={"wait": max(floor, self.guards.wait * factor), "bake": self.guards.bake * factor}
        )
        window = self.window.model_copy(update={"estimate": self.window.estimate * factor})
        return self.model_copy(update={"deadlines": deadlines, "polling": polling, "guards": guards, "window": window})


def _env_name(loc: tuple[Any, ...]) -> str | None:
    """The SEGTUI_* variable that set the field at `loc`, if one did (whole field or nested with `__`)."""
    env = {k.upper(): k for k in os.environ}
    parts = [str(p).upper() for p in loc if not isinstance(p, int)]
    for n in range(len(parts), 0, -1):
        name = "SEGTUI_" + "__".join(parts[:n])
        if name in env:
            return env[name]
    return None


_ENV_PARSE_RE = re.compile(r'error parsing value for field "([^"]{1,100})" from source "EnvSettingsSource"')


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings; the file is `--config`, else $SEGTUI_CONFIG, else ./segtui.toml if present.

    Each problem is one line naming where the bad value came from: the file, or the environment variable."""
    path = config_file or (Path(os.environ["SEGTUI_CONFIG"]) if os.environ.get("SEGTUI_CONFIG") else None)
    if path is not None and not path.is_file():
        raise InputError([f"{path}: settings file not found"])
    source = path or Path("segtui.toml")

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=source)

    try:
        return _FileSettings(**overrides)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            where = ".".join(str(p) for p in loc)
            var = _env_name(loc)
            label = f"environment variable {var}" if var else (f"{source}" if source.is_file() else "settings")
            problems.append(f"{label}: {where}: {e['msg']}")
        raise InputError(problems) from None
    except ValueError as exc:
        m = _ENV_PARSE_RE.search(str(exc))
        if m:
            var = _env_name((m.group(1),)) or f"SEGTUI_{m.group(1).upper()}"
            raise InputError([f"environment variable {var}: {m.group(1)}: not valid JSON"]) from None
        if source.is_file():
            raise InputError([f"{source}: not valid TOML: {exc}"]) from None
        raise InputError([f"settings: {exc}"]) from None
    except OSError as exc:
        raise InputError([f"{source}: cannot read: {exc.strerror or exc}"]) from None
