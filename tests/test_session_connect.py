"""Connecting: host keys read anew at every attempt, a hint that does not invite blind trust, unusable key files."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncssh
import pytest

from segtui.asyncos.commands import Appliance
from segtui.asyncos.errors import HostKeyRejected, KeyFileError
from segtui.asyncos.session import Credentials, host_key_hint
from tests.scripted import ScriptedAppliance, Served, serving

VERSION_OUT = "\nCurrent Version\n===============\nModel: C300V\nVersion: 15.0.0-104\nSerial #: 4229F1C3E7A9-X\n"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(tmp_path) as s:
        yield s


async def test_a_host_key_added_by_the_operator_counts_at_the_next_attempt(served: Served, tmp_path: Path) -> None:
    sa = ScriptedAppliance(script={"version": [(VERSION_OUT, None)]})
    port, _, key = await served.serve(sa)
    known_hosts = tmp_path / "fleet" / "known_hosts"
    known_hosts.parent.mkdir()
    known_hosts.write_text("")
    appliance = Appliance(served.options(port, known_hosts, sa.password))
    with pytest.raises(HostKeyRejected) as refused:
        await appliance.version()
    message = refused.value.message
    assert "\n" not in message
    assert f"ssh-keyscan -p {port} 127.0.0.1 | ssh-keygen -lf -" in message
    assert f"ssh-keyscan -p {port} 127.0.0.1 >> {known_hosts.absolute()}" in message
    assert message.index("ssh-keygen -lf -") < message.index(">>")  # compare first, then add
    # The operator compares the fingerprint and adds the key; the same options now connect.
    known_hosts.write_text(f"[127.0.0.1]:{port} {key.export_public_key().decode()}")
    assert str((await appliance.version()).version) == "15.0.0-104"
    await appliance.close()
    # Parsed files are kept while unchanged, but a change counts at once, even one of the same size: the key
    # replaced by another (a re-imaged appliance, or a mistake) refuses the next attempt.
    other = asyncssh.generate_private_key(key.algorithm.decode()).export_public_key().decode()
    before = known_hosts.stat().st_size
    known_hosts.write_text(f"[127.0.0.1]:{port} {other}")
    assert known_hosts.stat().st_size == before
    with pytest.raises(HostKeyRejected):
        await appliance.version()
    await appliance.close()


def test_the_hint_quotes_the_host_and_names_the_file_by_absolute_path(served: Served, tmp_path: Path) -> None:
    opts = replace(served.options(2222, Path("relative/known_hosts"), "pw"), host="evil;$(touch x)")
    hint = host_key_hint(opts)
    quoted = shlex.quote("evil;$(touch x)")
    assert f"ssh-keyscan -p 2222 {quoted} | ssh-keygen -lf -" in hint
    assert f">> {shlex.quote(str(Path('relative/known_hosts').absolute()))}" in hint
    assert "evil;$(touch x) " not in hint.replace(quoted, "")


async def test_missing_or_garbage_known_hosts_is_one_line(served: Served, tmp_path: Path) -> None:
    sa = ScriptedAppliance()
    port, _, _ = await served.serve(sa)
    garbage = tmp_path / "garbage_known_hosts"
    garbage.write_text("[x\n")
    for path, words in ((tmp_path / "absent", "cannot read known_hosts"), (garbage, "cannot be parsed")):
        with pytest.raises(HostKeyRejected, match=words) as exc:
            await Appliance(served.options(port, path, sa.password)).version()
        assert "\n" not in str(exc.value) and str(path.absolute()) in str(exc.value)


def _encrypted_key(path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    try:
        key.write_private_key(str(path), format_name="pkcs8-pem", passphrase="a passphrase")
    except asyncssh.KeyExportError:  # no encryption support in this build: let OpenSSH make one
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(path)], check=True)


@pytest.mark.parametrize("kind", ["encrypted", "garbage", "missing"])
async def test_an_unusable_key_file_is_a_typed_one_line_error(served: Served, tmp_path: Path, kind: str) -> None:
    sa = ScriptedAppliance()
    port, kh, _ = await served.serve(sa)
    key_file = tmp_path / "id_test"
    if kind == "encrypted":
        _encrypted_key(key_file)
    elif kind == "garbage":
        key_file.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n")
    opts = replace(served.options(port, kh, sa.password), credentials=Credentials("admin", None, key_file))
    with pytest.raises(KeyFileError) as exc:
        await Appliance(opts).version()
    assert "\n" not in str(exc.value) and "key_file" in str(exc.value) and str(key_file.absolute()) in str(exc.value)


async def test_two_callers_needing_a_session_at_once_open_one(served: Served, tmp_path: Path) -> None:
    # A procedure and a peer reading may both need the appliance's session at the same moment: one session.
    sa = ScriptedAppliance(script={"version": [(VERSION_OUT, None)]})
    port, kh, _ = await served.serve(sa)
    appliance = Appliance(served.options(port, kh, sa.password))
    first, second = await asyncio.gather(appliance.session(), appliance.session())
    assert first is second
    await appliance.close()
