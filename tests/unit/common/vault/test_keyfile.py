"""The fleet key file: written 0600 and never over a file unasked; damage named on reading."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from common.errors import AlreadyExists, NotFound
from common.vault.errors import BadKeyText, UnsupportedFormat
from common.vault.keyfile import key_file_text, parse_key_file, read_key_file, write_key_file
from common.vault.keys import FleetPrivateKey

WHEN = dt.datetime(2026, 12, 7, 1, 40, 12, 345678, tzinfo=dt.UTC)


def test_round_trip_and_mode(tmp_path: Path, fleet: FleetPrivateKey) -> None:
    path = tmp_path / "fleet.key"
    write_key_file(path, fleet, WHEN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "storesafe-fleet-key: v1" in text
    assert "created: 2026-12-07T01:40:12Z" in text
    assert f"fingerprint: {fleet.fingerprint}" in text
    assert f"public: {fleet.public.text}" in text
    again = read_key_file(path)
    assert again.public == fleet.public
    assert again.fingerprint == fleet.fingerprint


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path, fleet: FleetPrivateKey) -> None:
    path = tmp_path / "fleet.key"
    path.write_text("precious")
    with pytest.raises(AlreadyExists, match="exists; pass --force"):
        write_key_file(path, fleet, WHEN)
    assert path.read_text() == "precious"
    write_key_file(path, fleet, WHEN, force=True)
    assert read_key_file(path).public == fleet.public
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.key"]  # no temporary left


def test_the_mode_ignores_a_loose_umask(tmp_path: Path, fleet: FleetPrivateKey) -> None:
    old = os.umask(0)
    try:
        write_key_file(tmp_path / "k", fleet, WHEN)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def _lines(fleet: FleetPrivateKey) -> list[str]:
    return key_file_text(fleet, WHEN).splitlines()


def _replace(fleet: FleetPrivateKey, label: str, value: str) -> str:
    lines = [f"{label}: {value}" if ln.startswith(f"{label}:") else ln for ln in _lines(fleet)]
    return "\n".join(lines)


def test_a_changed_private_key_is_damage(fleet: FleetPrivateKey) -> None:
    private = next(ln for ln in _lines(fleet) if ln.startswith("private:")).split(": ")[1]
    broken = private[:10] + ("B" if private[10] != "B" else "C") + private[11:]
    with pytest.raises(BadKeyText, match="is damaged: the private key fails its checksum"):
        parse_key_file(_replace(fleet, "private", broken))


def test_a_public_key_of_another_pair_is_damage(
    fleet: FleetPrivateKey, other_fleet: FleetPrivateKey
) -> None:
    with pytest.raises(BadKeyText, match="does not give the public key written in it"):
        parse_key_file(_replace(fleet, "public", other_fleet.public.text))
    with pytest.raises(BadKeyText, match="does not give the public key"):
        parse_key_file(_replace(fleet, "fingerprint", other_fleet.fingerprint))


def test_a_missing_line_is_named(fleet: FleetPrivateKey) -> None:
    text = "\n".join(ln for ln in _lines(fleet) if not ln.startswith("private:"))
    with pytest.raises(BadKeyText, match="its 'private:' line is missing"):
        parse_key_file(text)


def test_a_public_key_is_not_a_key_file(fleet: FleetPrivateKey) -> None:
    with pytest.raises(BadKeyText, match="holds a fleet public key; opening needs the private"):
        parse_key_file(fleet.public.text + "\n")


def test_a_newer_format_is_named(fleet: FleetPrivateKey) -> None:
    with pytest.raises(UnsupportedFormat, match="format 'v2'; this StoreSafe reads v1"):
        parse_key_file(_replace(fleet, "storesafe-fleet-key", "v2"))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "no 'storesafe-fleet-key:' line"),
        (b"just some words\n", "a line has no 'name:'"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "it is not text"),
        (b"a: b\n" * 20000, "far too large"),
    ],
)
def test_files_that_are_not_key_files(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "x"
    path.write_bytes(content)
    with pytest.raises(BadKeyText, match=words):
        read_key_file(path)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no key file at"):
        read_key_file(tmp_path / "nope")
    with pytest.raises(BadKeyText, match="is a folder"):
        read_key_file(tmp_path)
