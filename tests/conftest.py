"""Shared fixtures: simulated fleets on loopback, settings scaled for tests, SSH keys."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh
import pytest
from hypothesis import settings as hypothesis_settings
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from segtui.asyncos.versions import Version
from segtui.inventory import Inventory, load_inventory
from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.journal import Journal
from segtui.settings import Settings
from segtui.sim.fleet import SimFleet
from segtui.sim.model import Durations

# Shared, noisy machines: no per-example deadline, a fixed budget of examples.
hypothesis_settings.register_profile("segtui", deadline=None, max_examples=150)
hypothesis_settings.load_profile("segtui")

TARGET = Version.parse("16.0.0-123")
TEST_PASSWORD = "S3cret-Pa55phrase!"
SCALE = 0.002


def fast_durations() -> Durations:
    # Appliance-time seconds; with SCALE a whole upgrade takes ~2 s of wall time.
    return Durations(analysis=(60, 120), download=(120, 200), install=(150, 250), reboot=(300, 500))


# Tools some tests drive for real, and the Debian package that brings each.
TOOLS = {"tmux": "tmux", "ssh": "openssh-client", "ssh-keygen": "openssh-client", "ssh-keyscan": "openssh-client"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs(*tools): the test drives these programs (tmux, ssh) for real")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("needs"):
        for tool in mark.args:
            if shutil.which(tool) is None:
                message = f"needs `{tool}` (apt-get install {TOOLS.get(tool, tool)})"
                if os.environ.get("CI"):
                    pytest.fail(message + ": CI installs it, so its absence is a failure there")
                pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def _hermetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test sees the caller's `segtui.toml`, `SEGTUI_*` variables or machine-wide state (locks).

    The working directory is an empty folder, so `./segtui.toml` is never found; subprocesses inherit the
    cleaned environment.
    """
    home = tmp_path_factory.mktemp("hermetic")
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    for key in [k for k in os.environ if k.startswith("SEGTUI_")]:
        del os.environ[key]
    os.environ["SEGTUI_PASSWORD"] = TEST_PASSWORD
    os.environ["XDG_STATE_HOME"] = str(home / "xdg-state")
    os.chdir(home)
    try:
        yield home
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


@pytest.fixture(autouse=True)
def _password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGTUI_PASSWORD", TEST_PASSWORD)


class _DefaultsOnly(Settings):
    """Settings from code alone: no file, no environment."""

    model_config = SettingsConfigDict(toml_file=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def make_settings(state_dir: Path, **update: object) -> Settings:
    s = _DefaultsOnly(min_scaled_deadline=12.0).scaled(SCALE)
    return s.model_copy(update={"state_dir": state_dir, **update})


async def start_fleet(
    tmp_path: Path,
    n: int,
    faults: dict[str, set[str]] | None = None,
    clusters: bool = True,
    durations: Durations | None = None,
    **kwargs: object,
) -> SimFleet:
    fleet = SimFleet(
        n,
        time_scale=SCALE,
        faults=faults,
        workdir=tmp_path / "sim",
        password=TEST_PASSWORD,
        durations=durations or fast_durations(),
        clusters=clusters,
        **kwargs,  # type: ignore[arg-type]
    )
    (tmp_path / "sim").mkdir(exist_ok=True)
    await fleet.start()
    return fleet


@pytest.fixture
async def fleet6(tmp_path: Path) -> AsyncIterator[SimFleet]:
    fleet = await start_fleet(tmp_path, 6)
    yield fleet
    await fleet.stop()


def make_rollout(
    fleet: SimFleet,
    tmp_path: Path,
    *,
    exit_on_pause: bool = True,
    options: RolloutOptions | None = None,
    **settings_update: object,
) -> Rollout:
    inventory: Inventory = load_inventory(fleet.inventory_path)
    settings = make_settings(tmp_path / "state", **settings_update)
    journal = Journal(settings.state_dir / "journal.sqlite")
    rollout = Rollout(
        inventory,
        settings,
        TARGET,
        journal,
        options or RolloutOptions(max_unavailable=3, max_fail="100%"),
        exit_on_pause=exit_on_pause,
    )
    rollout.begin()
    return rollout


def offline_rollout(
    tmp_path: Path,
    n: int = 8,
    options: RolloutOptions | None = None,
    *,
    settings: Settings | None = None,
    environment: str = "lab",
    fleet: str = "lab",
) -> Rollout:
    """A rollout of appliances nobody connects to (the bookkeeping, the dashboard), `esaNN` in groups dc1/dc2.
    Not begun: the caller begins it (or attaches it) as the test needs."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    (tmp_path / "known_hosts").write_text(f"esa.example.com {key}")
    rows = "".join(
        f'[[appliance]]\nname = "esa{i:02d}"\nhost = "esa{i:02d}.example.com"\ngroup = "dc{i % 2 + 1}"\n'
        for i in range(1, n + 1)
    )
    inv = tmp_path / "inventory.toml"
    name = fleet.replace("\\", "\\\\").replace('"', '\\"')
    inv.write_text(
        f'[fleet]\nname = "{name}"\nenvironment = "{environment}"\n'
        f'update_server = "http://updates.example.com"\n[defaults]\npassword_env = "SEGTUI_PASSWORD"\n{rows}'
    )
    settings = settings or make_settings(tmp_path / "state")
    return Rollout(
        load_inventory(inv), settings, TARGET, Journal.in_dir(settings.state_dir), options or RolloutOptions()
    )
