"""Pure policy, table-driven and with hypothesis: batch ramps, budgets, queue order, locks, windows, durations."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segtui.errors import InputError
from segtui.rollout.applock import ApplianceLocks, lock_key
from segtui.rollout.batches import (
    BatchStep,
    FailureBudget,
    batch_sizes,
    interleave_groups,
    parse_batch_spec,
    parse_failure_budget,
    plan_batches,
    plan_order,
)
from segtui.rollout.eta import Durations
from segtui.rollout.events import State
from segtui.rollout.journal import ApplianceRecord, Journal, ensure_state_dir
from segtui.rollout.lock import InventoryLock, LockHeld
from segtui.rollout.window import parse_duration, parse_until
from segtui.settings import LockSettings, Settings


@pytest.mark.parametrize(
    ("spec", "fleet", "sizes"),
    [
        ("1", 3, [1, 1, 1]),
        ("1,2,25%", 20, [1, 2, 5, 5, 5, 2]),
        ("100%", 7, [7]),
        ("50%", 3, [2, 1]),
        ("10", 4, [4]),
        ("1,25%", 1, [1]),
        ("1%", 1000, [10] * 100),
        ("3,1", 0, []),
    ],
)
def test_batch_sizes_table(spec: str, fleet: int, sizes: list[int]) -> None:
    assert batch_sizes(parse_batch_spec(spec), fleet) == sizes


@pytest.mark.parametrize("bad", ["0", "-1", "0%", "101%", "nan%", "inf%", "", "1,,2", "x", "2.5", "1;2"])
def test_parse_batch_spec_refuses_with_one_line(bad: str) -> None:
    with pytest.raises(InputError) as info:
        parse_batch_spec(bad)
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith("--batch: ")


@pytest.mark.parametrize(
    ("spec", "fleet", "allowed"),
    [("0", 10, 0), ("2", 10, 2), ("10%", 25, 2), ("0%", 100, 0), ("100%", 7, 7), (" 3 ", 1, 3)],
)
def test_failure_budget_table(spec: str, fleet: int, allowed: int) -> None:
    assert parse_failure_budget(spec).allowed(fleet) == allowed


@pytest.mark.parametrize("bad", ["-1", "101%", "-5%", "x", "", "1.5"])
def test_failure_budget_refuses(bad: str) -> None:
    with pytest.raises(InputError, match=r"^--max-fail: "):
        parse_failure_budget(bad)


steps_strategy = st.lists(
    st.one_of(
        st.integers(1, 50).map(lambda n: BatchStep(count=n)),
        st.floats(0.5, 100).map(lambda p: BatchStep(percent=p)),
    ),
    min_size=1,
    max_size=5,
)


@given(steps=steps_strategy, fleet=st.integers(0, 2000))
def test_batch_sizes_cover_the_fleet_exactly(steps: list[BatchStep], fleet: int) -> None:
    sizes = batch_sizes(steps, fleet)
    assert sum(sizes) == fleet and all(s >= 1 for s in sizes)
    for i, size in enumerate(sizes[:-1]):  # every batch but the last is its step's full size
        assert size == steps[min(i, len(steps) - 1)].size(fleet)


@given(spec=st.text(max_size=12))
def test_parse_batch_spec_never_crashes(spec: str) -> None:
    try:
        steps = parse_batch_spec(spec)
    except InputError as exc:
        assert len(exc.problems) == 1 and "\n" not in exc.problems[0].replace(repr(spec), "")
    else:
        assert steps and all(s.size(100) >= 1 for s in steps)


@given(spec=st.text(max_size=8), fleet=st.integers(0, 10_000))
def test_failure_budget_never_crashes_and_is_bounded(spec: str, fleet: int) -> None:
    try:
        budget = parse_failure_budget(spec)
    except InputError:
        return
    assert budget.allowed(fleet) >= 0
    if budget.percent is not None:
        assert budget.allowed(fleet) <= fleet


class _Spec:
    def __init__(self, name: str, group: str) -> None:
        self.name = name
        self.group = group


def test_plan_order_interleaves_groups_keeping_inventory_order() -> None:
    specs = [_Spec("a1", "dc1"), _Spec("a2", "dc1"), _Spec("b1", "dc2"), _Spec("a3", "dc1"), _Spec("c1", "x")]
    assert plan_order(specs) == ["a1", "b1", "c1", "a2", "a3"]
    assert interleave_groups({}) == []


@given(
    groups=st.lists(st.sampled_from(["dc1", "dc2", "dc3"]), max_size=60),
    steps=steps_strategy,
)
def test_plan_batches_put_every_appliance_in_exactly_one_batch(groups: list[str], steps: list[BatchStep]) -> None:
    specs = [_Spec(f"esa{i:03d}", g) for i, g in enumerate(groups)]
    order = plan_order(specs)
    plan = plan_batches(order, steps)
    flat = [n for batch in plan for n in batch]
    assert flat == order and sorted(flat) == sorted(s.name for s in specs)
    assert [len(b) for b in plan] == batch_sizes(steps, len(specs))


def test_failure_budget_str_round_trips() -> None:
    for text in ("0", "3", "12.5%", "100%"):
        assert parse_failure_budget(str(parse_failure_budget(text))) == parse_failure_budget(text)
    assert FailureBudget(count=2).allowed(1) == 2


# --- the maintenance window ------------------------------------------------------------------------
NOW = datetime(2026, 3, 1, 22, 30).astimezone().timestamp()  # 22:30 local


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+2h", NOW + 7200),
        ("+90m", NOW + 5400),
        ("+45s", NOW + 45),
        ("+1h30m", NOW + 5400),
        ("23:00", NOW + 1800),
        ("05:00", datetime(2026, 3, 2, 5, 0).astimezone().timestamp()),  # crossing midnight
        ("22:30", datetime(2026, 3, 2, 22, 30).astimezone().timestamp()),  # now: the next one
        ("2026-03-02T05:00", datetime(2026, 3, 2, 5, 0).astimezone().timestamp()),
        ("2026-03-02T05:00:00+00:00", datetime.fromisoformat("2026-03-02T05:00:00+00:00").timestamp()),
    ],
)
def test_parse_until_table(text: str, expected: float) -> None:
    assert parse_until(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["+0s", "+", "25:00", "5pm", "tomorrow", "2026-03-01T05:00", "", "+2d", "12:60"])
def test_parse_until_refuses_with_one_line(bad: str) -> None:
    with pytest.raises(InputError) as info:
        parse_until(bad, NOW)
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith("--until: ")


@given(text=st.text(max_size=20))
def test_parse_until_never_crashes(text: str) -> None:
    try:
        end = parse_until(text, NOW)
    except InputError:
        return
    assert end > NOW


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("600", 600), (" 45s ", 45)]
)
def test_parse_duration_table(text: str, seconds: float) -> None:
    assert parse_duration(text, "--bake") == seconds


def test_parse_duration_zero_only_where_it_turns_a_thing_off() -> None:
    assert parse_duration("0", "--bake", zero=True) == 0
    with pytest.raises(InputError) as info:
        parse_duration("0", "--window")
    assert info.value.problems == ["--window: '0' is no time at all; give a duration above zero"]


@pytest.mark.parametrize("bad", ["", "m", "10 m", "-5", "1.5m", "10min", "2d", "99999999", "1h 30m"])
def test_parse_duration_refuses_with_one_line(bad: str) -> None:
    with pytest.raises(InputError) as info:
        parse_duration(bad, "--bake", zero=True)
    assert len(info.value.problems) == 1 and info.value.problems[0].startswith("--bake: ")


@given(text=st.text(max_size=16))
def test_parse_duration_never_crashes(text: str) -> None:
    try:
        seconds = parse_duration(text, "--bake", zero=True)
    except InputError:
        return
    assert 0 <= seconds < 10**8


def test_durations_median_per_number_of_upgrades() -> None:
    recs = []
    for i, (hops, secs) in enumerate([(0, 100), (0, 300), (0, 200), (1, 500)]):
        recs.append(
            ApplianceRecord(name=f"a{i}", state=State.DONE, started=1000.0, finished=1000.0 + secs, hops=["x"] * hops)
        )
    recs.append(ApplianceRecord(name="f", state=State.FAILED, started=0.0, finished=9999.0))
    d = Durations.of(recs)
    assert d.expected(1) == 200 and d.expected(2) == 500
    assert d.expected(3) == pytest.approx(750)  # scaled from the nearest measured count
    assert Durations.of([]).expected(1) is None


# --- locks and the state directory -----------------------------------------------------------------
def test_inventory_lock_names_the_holder_and_is_released(tmp_path: Path) -> None:
    inv = tmp_path / "fleet.toml"
    inv.write_text("")
    first = InventoryLock(tmp_path / "state", inv, "run")
    watcher = InventoryLock(tmp_path / "state", inv, "watch")
    assert watcher.holder() is None
    first.acquire()
    holder = watcher.holder()
    assert holder is not None and holder["pid"] == os.getpid() and holder["command"] == "run"
    with pytest.raises(LockHeld, match=f"pid {os.getpid()}.*command run"):
        InventoryLock(tmp_path / "state", inv, "resume").acquire()
    first.release()
    assert watcher.holder() is None
    with InventoryLock(tmp_path / "state", inv, "resume"):
        pass


def test_lock_file_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    inv = tmp_path / "fleet.toml"
    inv.write_text("")
    state = ensure_state_dir(tmp_path / "state")
    victim = tmp_path / "victim"
    victim.write_text("precious")
    lock = InventoryLock(state, inv, "stage")
    lock.path.symlink_to(victim)
    with pytest.raises(InputError, match="symbolic link"):
        lock.acquire()
    assert victim.read_text() == "precious"


def test_state_dir_created_private_and_foreign_modes_refused(tmp_path: Path) -> None:
    state = tmp_path / "deep" / "state"
    Journal.in_dir(state).close()
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "journal.sqlite").stat().st_mode & 0o777 == 0o600
    os.chmod(state, 0o777)
    with pytest.raises(InputError, match=r"state directory is owned by .* with mode 0777"):
        Journal.in_dir(state)
    os.chmod(state, 0o700)
    os.chmod(state / "journal.sqlite", 0o666)
    with pytest.raises(InputError, match=r"journal.sqlite: the file is owned by .* mode 0666"):
        Journal.in_dir(state)
    os.chmod(state / "journal.sqlite", 0o600)
    Journal.in_dir(state).close()


def test_journal_symlink_refused(tmp_path: Path) -> None:
    state = ensure_state_dir(tmp_path / "state")
    elsewhere = tmp_path / "elsewhere.sqlite"
    sqlite3.connect(elsewhere).close()
    (state / "journal.sqlite").symlink_to(elsewhere)
    with pytest.raises(InputError, match="symbolic link"):
        Journal.in_dir(state)


def test_damaged_journal_is_one_line_with_guidance(tmp_path: Path) -> None:
    state = ensure_state_dir(tmp_path / "state")
    path = state / "journal.sqlite"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, b"SQLite format 3\x00" + b"\xff" * 4000)
    os.close(fd)
    with pytest.raises(InputError) as info:
        Journal.in_dir(state)
    (line,) = info.value.problems
    assert "is damaged" in line and "move it aside" in line and "backups are in" in line


def test_readonly_journal_reads_beside_the_writer(tmp_path: Path) -> None:
    writer = Journal.in_dir(tmp_path / "state")
    writer.begin("fleet.toml", "16.0.0-123", {"batch": "1"})
    writer.event("state", "running", "esa01")
    writer.action("abort", None, "bob@host")
    writer.finish("aborted")
    reader = Journal.open_readonly(writer.path)
    assert writer.rollout_id is not None
    rows = reader.events(writer.rollout_id)
    assert [(r.kind, r.appliance, r.text) for r in rows] == [("state", "esa01", "running")]
    last = reader.last_rollout("fleet.toml")
    assert last is not None and last.outcome == "aborted" and last.ended_by is not None
    assert "aborted by bob@host at" in last.describe()
    with pytest.raises(sqlite3.OperationalError):
        reader.event("note", "a reader cannot write")


def _locks(tmp_path: Path) -> ApplianceLocks:
    settings = Settings().model_copy(update={"locks": LockSettings(dir=tmp_path / "locks")})
    return ApplianceLocks(settings, "test")


HOLDER = """
import sys, time
from pathlib import Path
from segtui.rollout.applock import ApplianceLocks
from segtui.settings import LockSettings, Settings
s = Settings().model_copy(update={"locks": LockSettings(dir=Path(sys.argv[1]))})
locks = ApplianceLocks(s, "other")
assert locks.acquire("esa01", "127.0.0.1", 2201) is None
print("held", flush=True)
time.sleep(120)
"""


def test_appliance_lock_held_by_another_process_then_freed_by_kill(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "locks")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        locks = _locks(tmp_path)
        reason = locks.acquire("esa01", "127.0.0.1", 2201)
        assert reason is not None and f"pid {proc.pid}" in reason and reason.startswith("another segtui (")
        assert locks.acquire("esa02", "127.0.0.1", 2202) is None  # another address is free
        data = json.loads((tmp_path / "locks" / lock_key("127.0.0.1", 2202)).read_text())
        assert data["pid"] == os.getpid() and data["appliance"] == "127.0.0.1:2202"
    finally:
        proc.kill()
        proc.wait()
    # kill -9 leaves the file but not the lock
    deadline = time.monotonic() + 10
    while (reason := _locks(tmp_path).acquire("esa01", "127.0.0.1", 2201)) is not None:
        assert time.monotonic() < deadline, reason
    assert lock_key("127.0.0.1", 22) != lock_key("127.0.0.1", 2222)


def _team_dir(tmp_path: Path, mode: int = 0o3770) -> Path:
    shared = tmp_path / "team-locks"
    shared.mkdir()
    os.chmod(shared, mode)
    return shared


def test_a_team_shared_lock_directory_is_accepted_and_its_locks_are_the_team_s(tmp_path: Path) -> None:
    shared = _team_dir(tmp_path)  # group-writable, sticky (nobody removes another's lock), setgid
    settings = Settings().model_copy(update={"locks": LockSettings(dir=shared)})
    mine, theirs = ApplianceLocks(settings, "alice's run"), ApplianceLocks(settings, "bob's run")
    assert mine.shared_gid == shared.stat().st_gid
    assert mine.acquire("esa01", "10.0.0.1", 22) is None
    path = shared / lock_key("10.0.0.1", 22)
    st = path.stat()
    assert st.st_mode & 0o777 == 0o660 and st.st_gid == shared.stat().st_gid  # the team can take it once free
    refused = theirs.acquire("gw-a", "10.0.0.1", 22)
    assert refused is not None and refused.startswith("another segtui (") and f"pid {os.getpid()}" in refused
    mine.release("esa01")
    assert theirs.acquire("gw-a", "10.0.0.1", 22) is None  # the same file, taken over
    assert json.loads(path.read_text())["rollout"] == "bob's run"


@pytest.mark.parametrize("mode", [0o0770, 0o1777, 0o0777])
def test_a_shared_lock_directory_without_the_sticky_bit_or_open_to_everyone_is_refused(
    tmp_path: Path, mode: int
) -> None:
    shared = _team_dir(tmp_path, mode)
    settings = Settings().model_copy(update={"locks": LockSettings(dir=shared)})
    with pytest.raises(InputError) as refused:
        ApplianceLocks(settings, "run")
    (line,) = refused.value.problems
    assert "appliance lock directory (locks.dir)" in line and f"{mode:04o}" in line


def test_a_hard_link_or_symlink_planted_in_a_shared_lock_directory_is_refused_and_its_target_untouched(
    tmp_path: Path,
) -> None:
    shared = _team_dir(tmp_path)
    settings = Settings().model_copy(update={"locks": LockSettings(dir=shared)})
    victim = tmp_path / "journal-of-someone"
    victim.write_text("precious")
    os.chmod(victim, 0o660)
    os.chown(victim, -1, shared.stat().st_gid)
    os.link(victim, shared / lock_key("10.0.0.1", 22))
    (shared / lock_key("10.0.0.2", 22)).symlink_to(victim)
    locks = ApplianceLocks(settings, "run")
    with pytest.raises(InputError, match="one link"):
        locks.acquire("esa01", "10.0.0.1", 22)
    with pytest.raises(InputError, match="symbolic link"):
        locks.acquire("esa02", "10.0.0.2", 22)
    assert victim.read_text() == "precious"


def test_serial_lock_is_kept_when_the_serial_is_learned_again(tmp_path: Path) -> None:
    mine, other = _locks(tmp_path), _locks(tmp_path)
    assert mine.acquire("esa01", "10.0.0.1", 22) is None
    assert mine.acquire_serial("esa01", "SER-1") is None
    assert mine.acquire_serial("esa01", "SER-1") is None  # after its reboot the procedure learns it again
    # the same box behind another address (another inventory): refused while held, free once released
    assert other.acquire("esa99", "esa01.example.com", 22) is None
    refused = other.acquire_serial("esa99", "SER-1")
    assert refused is not None and refused.startswith("another segtui (")
    # the same box twice in one inventory: said as such, not as "another segtui" that is in fact this one
    assert mine.acquire("esa02", "10.0.0.2", 22) is None
    assert mine.acquire_serial("esa02", "SER-1") == "the same appliance as esa01 (serial SER-1) in this rollout: " + (
        "nothing more done"
    )
    mine.release("esa01")
    assert other.acquire_serial("esa99", "SER-1") is None


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_state_dir_or_journal_of_another_user_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    Journal.in_dir(state).close()
    os.chown(state / "journal.sqlite", 65534, 65534)
    with pytest.raises(InputError, match=r"journal.sqlite: the file is owned by \S+ with mode 0600"):
        Journal.in_dir(state)
    os.chown(state / "journal.sqlite", 0, 0)
    os.chown(state, 65534, 65534)
    with pytest.raises(InputError, match=r"the state directory is owned by \S+ with mode 0700"):
        Journal.in_dir(state)


@pytest.mark.parametrize(
    "spellings",
    [
        ("127.0.0.1", "127.1", "::ffff:127.0.0.1", "[::ffff:127.0.0.1]", " 127.0.0.1 "),
        ("esa1.example.com", "ESA1.example.com", "esa1.example.com."),
        ("2001:db8::1", "2001:DB8:0:0::1", "[2001:db8::1]"),
    ],
)
def test_one_lock_per_address_whatever_its_spelling(spellings: tuple[str, ...]) -> None:
    from segtui.rollout.applock import lock_key

    assert len({lock_key(h, 22) for h in spellings}) == 1, spellings
    assert lock_key(spellings[0], 22) != lock_key(spellings[0], 2222)


def test_an_untrusted_lock_directory_refuses_when_the_locks_are_made(tmp_path: Path) -> None:
    # The engine makes its locks when the rollout is built, before anything is journaled.
    shared = tmp_path / "locks"
    shared.mkdir()
    os.chmod(shared, 0o777)  # others could plant or remove locks in it
    settings = Settings().model_copy(update={"locks": LockSettings(dir=shared)})
    with pytest.raises(InputError) as refused:
        ApplianceLocks(settings, "fleet.toml -> 16.0.0-123")
    (line,) = refused.value.problems
    assert "appliance lock directory (locks.dir)" in line and "0777" in line


@pytest.mark.parametrize(
    "batches,groups,max_unavailable,concurrency,waves",
    [
        ([["a"], ["b", "c"]], {"a": "g1", "b": "g1", "c": "g2"}, 1, 50, 2),  # b and c in different groups: one wave
        ([["a", "b", "c"]], {"a": "g1", "b": "g1", "c": "g1"}, 1, 50, 3),  # one group, one at a time
        ([["a", "b", "c", "d"]], {"a": "g1", "b": "g1", "c": "g2", "d": "g2"}, 2, 50, 1),
        ([["a", "b", "c", "d"]], {"a": "g1", "b": "g2", "c": "g3", "d": "g4"}, 1, 2, 2),  # the concurrency cap
        ([], {}, 1, 50, 0),
    ],
)
def test_fleet_duration_counts_waves_per_batch(
    batches: list[list[str]], groups: dict[str, str], max_unavailable: int, concurrency: int, waves: int
) -> None:
    from segtui.rollout.window import fleet_duration

    assert fleet_duration(batches, groups, max_unavailable, concurrency, 600.0) == waves * 600.0


@pytest.mark.parametrize("duration,window,needed", [(0, 3600, 1), (3600, 3600, 1), (3601, 3600, 2), (9000, 3600, 3)])
def test_windows_needed(duration: float, window: float, needed: int) -> None:
    from segtui.rollout.window import windows_needed

    assert windows_needed(duration, window) == needed


def test_plan_says_how_many_windows_the_fleet_needs(tmp_path: Path) -> None:
    from tests.test_cli_safety import inventory, segtui

    inv = inventory(tmp_path, "lab")
    proc = segtui(["plan", "--offline", "--inventory", str(inv), "--target", "16.0.0-123", "--window", "1h"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    # two appliances of one group, one at a time, 40 min each: 80 min, two one-hour windows
    assert "expected duration: about 1.3 h" in proc.stdout and "2 window(s) of 1h" in proc.stdout, proc.stdout
