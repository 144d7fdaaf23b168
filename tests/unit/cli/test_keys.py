"""`storesafe keys create` and `keys show`: offline, through typer, on real files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from common.errors import Unavailable
from common.vault.keyfile import read_key_file
from common.vault.keys import FleetPublicKey
from tests.support.cli import FakeConfigClient, invoke

NO_SERVER = {"STORESAFE_SERVER": None, "STORESAFE_TOKEN": None, "STORESAFE_CA": None}


def test_create_writes_the_key_file_and_prints_the_public_key(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    result = CliRunner().invoke(
        app, ["keys", "create", "--out", str(path), "--no-register"], env=NO_SERVER
    )
    assert result.exit_code == 0, result.output
    key = read_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"Public key:  {key.public.text}\n" in result.stdout
    assert f"Fingerprint: {key.fingerprint}\n" in result.stdout
    assert "Keep the file offline" in result.stdout


def test_create_json(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    result = invoke(FakeConfigClient([]), "keys", "create", "--out", str(path), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["registered"], shown["revision"]) == (True, 6)
    assert shown["file"] == str(path)
    assert shown["created"] == "2026-11-26T22:00:00Z"  # from the injected clock
    assert FleetPublicKey.parse(shown["public_key"]) == read_key_file(path).public
    assert shown["fingerprint"] == read_key_file(path).fingerprint
    assert f"created: {shown['created']}" in path.read_text()


def test_create_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    CliRunner().invoke(app, ["keys", "create", "--out", str(path), "--no-register"], env=NO_SERVER)
    before = path.read_text()
    result = CliRunner().invoke(
        app, ["keys", "create", "--out", str(path), "--no-register"], env=NO_SERVER
    )
    assert result.exit_code == 3
    assert result.stderr == (
        f"error: {path} exists; pass --force to replace it (the key in it is then gone for good)\n"
    )
    assert path.read_text() == before
    result = CliRunner().invoke(
        app, ["keys", "create", "--out", str(path), "--force", "--no-register"], env=NO_SERVER
    )
    assert result.exit_code == 0
    assert path.read_text() != before


def test_create_in_a_missing_folder_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "no" / "fleet.key"
    result = CliRunner().invoke(
        app, ["keys", "create", "--out", str(path), "--no-register"], env=NO_SERVER
    )
    assert result.exit_code == 5
    assert result.stderr == f"error: cannot create {path}: No such file or directory\n"


def test_show_reads_the_key_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    CliRunner().invoke(app, ["keys", "create", "--out", str(path), "--no-register"], env=NO_SERVER)
    key = read_key_file(path)
    result = CliRunner().invoke(app, ["keys", "show", "--key", str(path), "--json"], env=NO_SERVER)
    assert result.exit_code == 0
    assert json.loads(result.stdout)["public_key"] == key.public.text


def test_show_names_a_wrong_file(tmp_path: Path) -> None:
    path = tmp_path / "public.txt"
    CliRunner().invoke(
        app, ["keys", "create", "--out", str(tmp_path / "k"), "--no-register"], env=NO_SERVER
    )
    path.write_text(read_key_file(tmp_path / "k").public.text + "\n")
    result = CliRunner().invoke(app, ["keys", "show", "--key", str(path)], env=NO_SERVER)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: the key file {path} holds a fleet public key;")
    assert result.stderr.count("\n") == 1


def test_create_registers_the_public_key_at_the_fleet_layer(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    client = FakeConfigClient([])
    result = invoke(client, "keys", "create", "--out", str(path))
    assert result.exit_code == 0, result.output
    key = read_key_file(path)
    assert client.calls == [
        ("set_config", ("fleet", "", {"upload.recovery_key": key.public.text}, []))
    ]
    assert f"Fingerprint: {key.fingerprint}\n" in result.stdout
    assert (
        "Registered as the fleet's upload.recovery_key (revision 6): agents seal new data "
        "keys to it.\n"
    ) in result.stdout


def test_create_offline_contacts_no_server(tmp_path: Path) -> None:
    client = FakeConfigClient([])
    result = invoke(client, "keys", "create", "--out", str(tmp_path / "k"), "--no-register")
    assert result.exit_code == 0, result.output
    assert client.calls == []
    assert "Not registered: set it with `storesafe config set --fleet" in result.stdout


def test_a_failed_registration_keeps_the_file_and_says_how_to_register(tmp_path: Path) -> None:
    path = tmp_path / "fleet.key"
    client = FakeConfigClient([], error=Unavailable("cannot reach the StoreSafe server at x:1"))
    result = invoke(client, "keys", "create", "--out", str(path))
    assert result.exit_code == 6
    key = read_key_file(path)
    assert result.stderr == (
        f"error: the key file {path} is written, but its public key is not registered: "
        "cannot reach the StoreSafe server at x:1; register it later with "
        f"`storesafe config set --fleet upload.recovery_key={key.public.text}`\n"
    )
