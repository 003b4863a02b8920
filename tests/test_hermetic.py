"""The suite itself is hermetic: it cannot pick up the caller's settings, environment or working directory."""

from __future__ import annotations

import os
from pathlib import Path

from segtui.settings import Settings, load_settings
from tests.conftest import TEST_PASSWORD, make_settings

REPO = Path(__file__).resolve().parents[1]


def test_no_caller_settings_leak_in() -> None:
    assert [k for k in os.environ if k.startswith("SEGTUI_")] == ["SEGTUI_PASSWORD"]
    assert os.environ["SEGTUI_PASSWORD"] == TEST_PASSWORD
    assert Path.cwd() != REPO and not (Path.cwd() / "segtui.toml").exists()
    # machine-wide state (appliance locks) lives in the test's own folder
    assert Path(os.environ["XDG_STATE_HOME"]).is_relative_to(Path.cwd())


def test_make_settings_ignores_files_and_environment(tmp_path: Path) -> None:
    (Path.cwd() / "segtui.toml").write_text('theme = "high-contrast"\nconcurrency = 3\n')
    os.environ["SEGTUI_CONCURRENCY"] = "7"
    try:
        assert load_settings().concurrency == 7  # the real loader does read them...
        s = make_settings(tmp_path)
        assert s.concurrency == Settings.model_fields["concurrency"].default  # ...the tests' settings do not
        assert s.theme == "noc-dark"
    finally:
        del os.environ["SEGTUI_CONCURRENCY"]
        (Path.cwd() / "segtui.toml").unlink()
