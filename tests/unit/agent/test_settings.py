"""The state dir is found, created and guarded; the credential file is atomic and private."""

from __future__ import annotations

import datetime as dt
import json
import stat
import sys
from pathlib import Path

import pytest

from agent.domain.errors import NotEnrolled, StateDirUnusable
from agent.settings import (
    ENV_STATE_DIR,
    Credentials,
    StateDir,
    default_state_dir,
    read_ca_file,
    resolve_state_dir,
    write_atomic,
)
from common.errors import InvalidArgument

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def creds(**changes: object) -> Credentials:
    base = {
        "server": "backup.example.com:7443",
        "agent_id": "a1",
        "credential": "s3cr3t-credential",
        "site": "shop-1",
        "group": "north",
        "enrolled_at": dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC),
    }
    return Credentials(**{**base, **changes})  # type: ignore[arg-type]


def test_state_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_STATE_DIR, raising=False)
    assert resolve_state_dir() == default_state_dir()
    monkeypatch.setenv(ENV_STATE_DIR, str(tmp_path / "env"))
    assert resolve_state_dir() == tmp_path / "env"
    assert resolve_state_dir(tmp_path / "flag") == tmp_path / "flag"


def test_default_state_dir_per_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert default_state_dir() == Path("/var/lib/storesafe-agent")
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("PROGRAMDATA", "D:\\PD")
    assert default_state_dir() == Path("D:\\PD") / "StoreSafe"


def test_credentials_round_trip_with_the_ca(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.save_credentials(creds(), PEM)
    assert state.is_enrolled()
    loaded = state.load_credentials()
    assert loaded == creds()
    assert state.read_ca(loaded) == PEM


def test_credential_file_is_private_and_the_dir_too(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    state.save_credentials(creds(), PEM)
    assert stat.S_IMODE(state.credentials_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o700


def test_no_ca_means_system_roots(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.save_credentials(creds(ca_file=None), None)
    loaded = state.load_credentials()
    assert loaded.ca_file is None
    assert state.read_ca(loaded) is None


def test_the_secret_never_shows_in_a_repr() -> None:
    assert "s3cr3t" not in repr(creds())
    assert "s3cr3t" not in str(creds())


def test_not_enrolled_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NotEnrolled, match="storesafe-agent enroll"):
        StateDir(tmp_path).load_credentials()


def test_a_damaged_credential_file_is_a_clear_error(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.credentials_path.write_text("{not json")
    with pytest.raises(StateDirUnusable, match="damaged"):
        state.load_credentials()
    state.credentials_path.write_text(json.dumps({"server": "x"}))
    with pytest.raises(StateDirUnusable, match="damaged"):
        state.load_credentials()


def test_a_missing_ca_copy_is_a_clear_error(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    with pytest.raises(StateDirUnusable, match="CA certificate"):
        state.read_ca(creds())


def test_an_unwritable_state_dir_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    state = StateDir(tmp_path / "file" / "state")
    with pytest.raises(StateDirUnusable, match="--state-dir"):
        state.ensure()
    with pytest.raises(StateDirUnusable):
        state.save_credentials(creds(), None)


def test_write_atomic_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two", mode=0o644)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_write_atomic_keeps_the_old_file_when_writing_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    write_atomic(target, b"old")

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("agent.settings.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_ca_file_must_be_pem(tmp_path: Path) -> None:
    good = tmp_path / "ca.pem"
    good.write_bytes(PEM)
    assert read_ca_file(good) == PEM
    bad = tmp_path / "ca.der"
    bad.write_bytes(b"\x30\x82")
    with pytest.raises(InvalidArgument, match="not a PEM"):
        read_ca_file(bad)
    with pytest.raises(InvalidArgument, match="cannot read"):
        read_ca_file(tmp_path / "missing.pem")
