"""`storesafe keys create` and `keys show`: offline, through typer, on real files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from common.vault.keyfile import read_key_file
from common.vault.keys import FleetPublicKey
from tests.support.cli import FakeAdminClient, invoke

NO_SERVER = {"STORESAFE_SERVER": None, "STORESAFE_TOKEN": None, "STORESAFE_CA": None}


def test_create_writes_the_key_file_and_prints_the_public_key(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    result = CliRunner().invoke(app, ["keys", "create", "--out", str(path)], env=NO_SERVER)
    assert result.exit_code == 0, result.output
    key = read_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"Public key:  {key.public.text}\n" in result.stdout
    assert f"Fingerprint: {key.fingerprint}\n" in result.stdout
    assert "Keep the file offline" in result.stdout


def test_create_json(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    result = invoke(FakeAdminClient([]), "keys", "create", "--out", str(path), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["file"] == str(path)
    assert shown["created"] == "2026-11-26T22:00:00Z"  # from the injected clock
    assert FleetPublicKey.parse(shown["public_key"]) == read_key_file(path).public
    assert shown["fingerprint"] == read_key_file(path).fingerprint
    assert f"created: {shown['created']}" in path.read_text()


def test_create_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    CliRunner().invoke(app, ["keys", "create", "--out", str(path)], env=NO_SERVER)
    before = path.read_text()
    result = CliRunner().invoke(app, ["keys", "create", "--out", str(path)], env=NO_SERVER)
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: {path} exists; pass --force to replace it (the key in it is then gone for good)\n"
    )
    assert path.read_text() == before
    result = CliRunner().invoke(
        app, ["keys", "create", "--out", str(path), "--force"], env=NO_SERVER
    )
    assert result.exit_code == 0
    assert path.read_text() != before


def test_create_in_a_missing_folder_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "no" / "fleet.key"
    result = CliRunner().invoke(app, ["keys", "create", "--out", str(path)], env=NO_SERVER)
    assert result.exit_code == 5
    assert result.stderr == f"error: cannot create {path}: No such file or directory\n"


def test_show_reads_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    CliRunner().invoke(app, ["keys", "create", "--out", str(path)], env=NO_SERVER)
    key = read_key_file(path)
    result = CliRunner().invoke(app, ["keys", "show", "--key", str(path), "--json"], env=NO_SERVER)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["public_key"] == key.public.text


def test_show_names_a_wrong_file(tmp_path: Path) -> None:
    path = tmp_path / "public.txt"
    CliRunner().invoke(app, ["keys", "create", "--out", str(tmp_path / "k")], env=NO_SERVER)
    path.write_text(read_key_file(tmp_path / "k").public.text + "\n")
    result = CliRunner().invoke(app, ["keys", "show", "--key", str(path)], env=NO_SERVER)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: the key file {path} holds a fleet public key;")
    assert result.stderr.count("\n") == 1
