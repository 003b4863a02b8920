"""The fleet inventory (TOML written by hand), validated into typed appliances."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncssh
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from segtui.errors import InputError

Environment = Literal["production", "staging", "lab"]
_CONNECTION_KEYS = ("username", "password_env", "key_file", "known_hosts", "port")
# A DNS name: labels of letters, digits, '-' and '_' (found in the wild on internal names), dot-separated.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")


def check_host(value: str) -> str:
    """A hostname or an IP address; anything else (spaces, `;`, `$(...)`, quotes) is refused."""
    try:
        ipaddress.ip_address(value.strip("[]") if value.startswith("[") else value)
        return value
    except ValueError:
        pass
    if len(value) > 253 or not _HOSTNAME_RE.fullmatch(value):
        raise ValueError("must be a hostname or an IP address")
    return value


def check_url(value: str) -> str:
    """An http(s) URL with a host and a valid port (credentials allowed: AsyncOS accepts them)."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be http://HOST[:PORT][/PATH] or https://...")
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    check_host(parts.hostname)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# Names an operator types or reads on screen: printable text only (a control sequence in a fleet or group name
# would reach the terminal through every screen, report and log line that shows it).
_PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]+$"


class FleetSection(_Strict):
    name: str = Field(min_length=1, pattern=_PRINTABLE)
    environment: Environment = "production"
    update_server: str = Field(pattern=r"^https?://[^/\s]+(/\S*)?$")

    @field_validator("update_server")
    @classmethod
    def _valid_url(cls, v: str) -> str:
        return check_url(v)


class DefaultsSection(_Strict):
    username: str = "admin"
    password_env: str | None = None
    key_file: str | None = None
    known_hosts: str = "known_hosts"
    port: int = Field(default=22, ge=1, le=65535)


class ApplianceSection(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    group: str = Field("default", min_length=1, pattern=_PRINTABLE)
    cluster: str | None = Field(None, min_length=1, pattern=_PRINTABLE)
    username: str | None = None
    password_env: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if any(c.isspace() for c in v):
            raise ValueError("must not contain spaces")
        return check_host(v)


class InventoryFile(_Strict):
    fleet: FleetSection
    defaults: DefaultsSection = DefaultsSection()
    appliance: list[ApplianceSection] = Field(min_length=1)


class ApplianceSpec(BaseModel):
    """One appliance with its defaults applied and its secret resolved (kept out of repr)."""

    model_config = ConfigDict(frozen=True)

    name: str
    host: str
    port: int
    group: str
    cluster: str | None
    username: str
    password: str | None = Field(default=None, repr=False, exclude=True)
    key_file: Path | None
    known_hosts: Path


class Inventory(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    name: str
    environment: Environment
    update_server: str
    appliances: tuple[ApplianceSpec, ...]

    @property
    def production(self) -> bool:
        return self.environment == "production"

    def by_name(self, name: str) -> ApplianceSpec:
        for a in self.appliances:
            if a.name == name:
                return a
        raise KeyError(name)

    def load_known_hosts(self) -> dict[Path, asyncssh.SSHKnownHosts]:
        """Parse each known_hosts file once for the whole fleet."""
        out: dict[Path, asyncssh.SSHKnownHosts] = {}
        for a in self.appliances:
            if a.known_hosts not in out:
                out[a.known_hosts] = asyncssh.read_known_hosts(str(a.known_hosts))
        return out


def _loc(path: Path, loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int) and parts and parts[-1] == "appliance":
            try:
                name = data["appliance"][item].get("name")
            except (KeyError, IndexError, AttributeError, TypeError):
                name = None
            parts[-1] = f"appliance[{item}]" + (f" ({name})" if isinstance(name, str) else "")
        else:
            parts.append(str(item))
    return ".".join(parts)


def load_inventory(path: Path, *, environ: dict[str, str] | None = None) -> Inventory:
    """Load and check an inventory; raise InputError with one line per problem."""
    env = os.environ if environ is None else environ
    if not path.is_file():
        raise InputError([f"{path}: inventory file not found"])
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError([f"{path}: not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([f"{path}: cannot read: {exc}"]) from None
    try:
        parsed = InventoryFile.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            where = _loc(path, tuple(err["loc"]), data)
            msg = err["msg"]
            if err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == _PRINTABLE:
                msg = "must be printable text (no control characters or escape sequences)"
            errors.append(f"{path}: {where}: {msg}")
        raise InputError(errors) from None

    problems: list[str] = []
    seen: dict[str, int] = {}
    base = path.parent
    specs: list[ApplianceSpec] = []
    known_hosts_owner: dict[Path, str] = {}
    d = parsed.defaults
    for i, a in enumerate(parsed.appliance):
        where = f"appliance[{i}] ({a.name})"
        if a.name in seen:
            problems.append(f"{path}: {where}.name: duplicate name (also appliance[{seen[a.name]}])")
            continue
        seen[a.name] = i
        password_env = a.password_env or d.password_env
        key_file = a.key_file or d.key_file
        password = None
        if password_env:
            password = env.get(password_env)
            if not password:
                owner = where if a.password_env else "defaults"
                problems.append(f"{path}: {owner}.password_env: environment variable {password_env} is not set")
        key_path = None
        if key_file:
            key_path = Path(key_file).expanduser()
            if not key_path.is_absolute():
                key_path = base / key_path
            owner = where if a.key_file else "defaults"
            if not key_path.is_file():
                problems.append(f"{path}: {owner}.key_file: {key_path} not found")
            else:
                problem = _key_problem(key_path)
                if problem:
                    problems.append(f"{path}: {owner}.key_file: {key_path}: {problem}")
        if not password_env and not key_file:
            problems.append(f"{path}: {where}: needs password_env or key_file (in the appliance or [defaults])")
        kh = Path(a.known_hosts or d.known_hosts).expanduser()
        if not kh.is_absolute():
            kh = base / kh
        kh_owner = f"{where}.known_hosts" if a.known_hosts else "defaults.known_hosts"
        if not kh.is_file():
            problems.append(f"{path}: {kh_owner}: {kh} not found (host keys are always verified)")
        else:
            known_hosts_owner.setdefault(kh, kh_owner)
        specs.append(
            ApplianceSpec(
                name=a.name,
                host=a.host,
                port=a.port or d.port,
                group=a.group,
                cluster=a.cluster,
                username=a.username or d.username,
                password=password,
                key_file=key_path,
                known_hosts=kh,
            )
        )
    # One missing variable is one problem, not one per appliance.
    problems = list(dict.fromkeys(problems))
    if problems:
        raise InputError(problems)
    inv = Inventory(
        path=path.resolve(),
        name=parsed.fleet.name,
        environment=parsed.fleet.environment,
        update_server=parsed.fleet.update_server,
        appliances=tuple(sorted(specs, key=lambda s: s.name)),
    )
    for kh, owner in known_hosts_owner.items():
        try:
            asyncssh.read_known_hosts(str(kh))
        except (ValueError, OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: {owner}: {kh}: cannot parse: {exc}")
    if problems:
        raise InputError(problems)
    return inv


def _key_problem(key_path: Path) -> str | None:
    """Why a private key cannot be used (encrypted: no passphrase can be given; not a key), or None."""
    try:
        asyncssh.read_private_key(str(key_path))
    except asyncssh.KeyImportError as exc:
        text = str(exc)
        if "passphrase" in text.lower():
            return "the key is encrypted; use an unencrypted key or a password (password_env)"
        return f"not a usable private key ({text})"
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        return f"not a usable private key ({exc})"
    return None
