"""`storesafe keys create`, `images snapshots` and `images restore` against a real server.

A snapshot of a real temp folder is sealed with common.vault and uploaded
with the agent RPCs under a real agent credential; the CLI lists it and
restores it over gRPC from the server's filesystem store.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from common.vault.chunks import open_chunk
from common.vault.keyfile import read_key_file
from tests.support.dbsnapshot import new_run_id, report_backup, seal_backup, upload_database
from tests.support.sealed import (
    SealedSite,
    mtime_of,
    new_site,
    seal_files,
    seal_lines,
    upload,
)
from tests.support.server import ServerHandle, enroll_agent, start_server

FILES = {
    "2026/11/scan-001.jpg": random.Random(1).randbytes(30_000),
    "2026/11/scan-002.pdf": random.Random(2).randbytes(5_000_000),  # two chunks or more
    "2026/12/scan-001-copy.jpg": random.Random(1).randbytes(30_000),
    "empty.txt": b"",
    "notes/é ü.txt": "ünïcode\n".encode(),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path_factory.mktemp("restore"))
    try:
        yield handle
    finally:
        handle.stop()


def cli(server: ServerHandle, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=server.cli_env)


def _site(server: ServerHandle, tmp_path: Path) -> tuple[SealedSite, Path, str]:
    """A new site whose data key is sealed to a fleet key made by `keys create`."""
    name = f"shop-{uuid.uuid4().hex[:8]}"
    key_file = tmp_path / "fleet.key"
    result = cli(server, "keys", "create", "--out", str(key_file), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["registered"] is True
    site = new_site(name, read_key_file(key_file))
    return site, key_file, enroll_agent(server, name)


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _stored(server: ServerHandle, chunk_id: str) -> Path:
    (path,) = [p for p in server.data_dir.rglob(chunk_id) if p.is_file()]
    return path


def test_keys_create_sets_the_fleet_recovery_key(server: ServerHandle, tmp_path: Path) -> None:
    site, key_file, _ = _site(server, tmp_path)
    result = cli(server, "config", "show", site.site, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    values = {e["key"]: e["value"] for e in shown["entries"]}
    assert values["upload.recovery_key"] == read_key_file(key_file).public.text


def test_a_snapshot_is_listed_and_restored_byte_for_byte(
    server: ServerHandle, tmp_path: Path
) -> None:
    site, key_file, credential = _site(server, tmp_path)
    taken = dt.datetime.now(dt.UTC).replace(microsecond=0)
    snap = seal_files(site, FILES, taken)
    upload(server, credential, site, snap)

    result = cli(server, "images", "snapshots", site.site, "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["snapshot_id"] == snap.snapshot_id
    assert (row["files"], row["size"], row["chunks"]) == (5, snap.size, len(snap.chunks))

    out = tmp_path / "restored"
    result = cli(server, "images", "restore", site.site, "--to", str(out), "--key", str(key_file))
    assert result.exit_code == 0, result.output
    assert _tree(out) == {p: (data, mtime_of(p)) for p, data in FILES.items()}
    assert "5 files restored" in result.stdout

    again = cli(
        server,
        "images",
        "restore",
        site.site,
        "--to",
        str(out),
        "--key",
        str(key_file),
        "--snapshot",
        snap.snapshot_id[:10],
        "--json",
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["skipped"] == 5


def test_a_tampered_stored_chunk_is_named(server: ServerHandle, tmp_path: Path) -> None:
    site, key_file, credential = _site(server, tmp_path)
    snap = seal_files(site, FILES)
    upload(server, credential, site, snap)
    manifest = b"".join(open_chunk(site.keys, p, snap.chunks[p]) for p in snap.parts)
    entry = next(
        orjson.loads(line)
        for line in manifest.splitlines()
        if orjson.loads(line)["p"] == "2026/11/scan-002.pdf"
    )
    victim = entry["c"][1][0]
    stored = _stored(server, victim)
    blob = bytearray(stored.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    os.chmod(stored, 0o600)
    stored.write_bytes(bytes(blob))

    out = tmp_path / "restored"
    result = cli(server, "images", "restore", site.site, "--to", str(out), "--key", str(key_file))
    assert result.exit_code == 5
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: chunk {victim}")
    assert first.endswith("it breaks 1 file(s), not restored: '2026/11/scan-002.pdf'")
    assert set(_tree(out)) == set(FILES) - {"2026/11/scan-002.pdf"}


def test_a_wrong_key_file_is_refused(server: ServerHandle, tmp_path: Path) -> None:
    site, _, credential = _site(server, tmp_path)
    upload(server, credential, site, seal_files(site, {"a.txt": b"a\n"}))
    other = tmp_path / "other.key"
    assert cli(server, "keys", "create", "--out", str(other), "--no-register").exit_code == 0
    out = tmp_path / "restored"
    result = cli(server, "images", "restore", site.site, "--to", str(out), "--key", str(other))
    assert result.exit_code == 5
    assert result.stderr == (
        f"error: this key file (fingerprint {read_key_file(other).fingerprint}) is not the "
        f"fleet key that site {site.site}'s data key was sealed to "
        f"(fingerprint {site.fleet.fingerprint})\n"
    )
    assert not out.exists()


def test_a_path_attack_in_a_manifest_is_refused(server: ServerHandle, tmp_path: Path) -> None:
    site, key_file, credential = _site(server, tmp_path)
    line = orjson.dumps({"p": "a/../../escaped.txt", "s": 0, "m": 0, "c": []}) + b"\n"
    upload(server, credential, site, seal_lines(site, [line], 0))
    out = tmp_path / "nest" / "restored"
    result = cli(server, "images", "restore", site.site, "--to", str(out), "--key", str(key_file))
    assert result.exit_code == 5
    assert "cannot be opened, nothing was written" in result.stderr
    assert "'a/../../escaped.txt' has a '..' part" in result.stderr
    assert not (tmp_path / "nest" / "escaped.txt").exists()
    assert not out.exists()


def test_a_chunk_gone_from_the_store_is_named(server: ServerHandle, tmp_path: Path) -> None:
    site, key_file, credential = _site(server, tmp_path)
    snap = seal_files(site, FILES)
    upload(server, credential, site, snap)
    manifest = b"".join(open_chunk(site.keys, p, snap.chunks[p]) for p in snap.parts)
    entry = next(
        orjson.loads(line)
        for line in manifest.splitlines()
        if orjson.loads(line)["p"] == "empty.txt"
    )
    assert entry["c"] == []
    lost = next(
        orjson.loads(line)["c"][0][0]
        for line in manifest.splitlines()
        if orjson.loads(line)["p"] == "notes/é ü.txt"
    )
    _stored(server, lost).unlink()

    out = tmp_path / "restored"
    result = cli(server, "images", "restore", site.site, "--to", str(out), "--key", str(key_file))
    assert result.exit_code == 5, result.output
    assert result.stderr.splitlines()[0] == (
        f"error: chunk {lost} is missing from the store; it breaks 1 file(s), not restored: "
        "'notes/é ü.txt'"
    )
    assert set(_tree(out)) == set(FILES) - {"notes/é ü.txt"}


def test_a_restore_of_a_database_backup_loads_no_firebird_client(
    server: ServerHandle, tmp_path: Path
) -> None:
    """The real `storesafe restore` to a file, in its own process (`-X importtime` names every
    module it imported): gRPC and the vault, not Firebird's client (only --database needs it)
    nor cron parsing (cli/main.py's start-up rule)."""
    site, key_file, credential = _site(server, tmp_path)
    backup = random.Random(3).randbytes(300_000)
    snap, info = seal_backup(site, [("shop-1.fbk.zst", backup)], run_id=new_run_id())
    upload_database(server, credential, site, snap, info)
    report_backup(server, credential, info)
    out = tmp_path / "shop.fbk"
    storesafe = str(Path(sys.executable).parent / "storesafe")
    args = ["restore", site.site, "--to", str(out), "--key", str(key_file), "--json"]
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", storesafe, *args],
        env=server.cli_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_bytes() == backup
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"grpc", "cryptography.hazmat.primitives.ciphers.aead", "cli.backup_fetch"} <= modules
    assert {m.split(".")[0] for m in modules} & {"fdb", "croniter"} == set()
