"""Shared fixtures: simulated fleets on loopback, settings scaled for tests, SSH keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from segtui.asyncos.versions import Version
from segtui.inventory import Inventory, load_inventory
from segtui.rollout.engine import Rollout, RolloutOptions
from segtui.rollout.journal import Journal
from segtui.settings import Settings, load_settings
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


@pytest.fixture(autouse=True)
def _password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGTUI_PASSWORD", TEST_PASSWORD)
    monkeypatch.delenv("SEGTUI_CONFIG", raising=False)


def make_settings(state_dir: Path, **update: object) -> Settings:
    base = load_settings()
    s = base.model_copy(update={"min_scaled_deadline": 8.0})
    s = s.scaled(SCALE)
    return s.model_copy(update={"state_dir": state_dir, **update})


async def start_fleet(
    tmp_path: Path, n: int, faults: dict[str, set[str]] | None = None, clusters: bool = True, **kwargs: object
) -> SimFleet:
    fleet = SimFleet(
        n,
        time_scale=SCALE,
        faults=faults,
        workdir=tmp_path / "sim",
        password=TEST_PASSWORD,
        durations=fast_durations(),
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
