"""`verify-store`, `sites`, `site` and `runs` on off-site copies, against a real server.

A database snapshot (random bytes standing for a gbak stream) is sealed and
uploaded with the agent RPCs, its backup run reported; the store is then
damaged on disk, and the CLI's store check must name what broke.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from common.vault.backupset import stream_refs
from common.vault.keyfile import write_key_file
from common.vault.keys import FleetPrivateKey
from common.vault.snapshot import open_snapshot
from tests.support.dbsnapshot import new_run_id, report_backup, seal_backup, upload_database
from tests.support.sealed import new_site
from tests.support.server import ServerHandle, enroll_agent, start_server

# Over three times the largest chunk (128 KiB): at least four chunks whatever the site's
# random key puts the cut points.
RAW = random.Random(3).randbytes(400_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path_factory.mktemp("offsite-cli"))
    try:
        yield handle
    finally:
        handle.stop()


def cli(server: ServerHandle, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=server.cli_env)


def test_verify_store_names_damage_and_what_it_breaks_and_the_views_show_it(
    server: ServerHandle,
) -> None:
    name = f"shop-{uuid.uuid4().hex[:8]}"
    site = new_site(name, FleetPrivateKey.generate())
    credential = enroll_agent(server, name)
    snap, info = seal_backup(site, [("shop.fbk.zst", RAW)], run_id=new_run_id())
    report_backup(server, credential, info)
    upload_database(server, credential, site, snap, info)

    clean = cli(server, "verify-store", "--site", name, "--json")
    assert clean.exit_code == 0, clean.output
    (row,) = json.loads(clean.stdout)
    assert (row["site"], row["damaged"], row["damaged_count"], row["missing_count"]) == (
        name,
        False,
        0,
        0,
    )
    assert row["chunks_checked"] == len(snap.chunks)

    opened = open_snapshot(site.keys, snap.snapshot_id, snap.record, snap.chunks.get)
    (refs,) = stream_refs(info, opened.entries)
    damaged, lost = refs[0][0], refs[-1][0]
    assert damaged != lost  # random bytes: no chunk repeats
    (stored,) = [p for p in server.data_dir.rglob(damaged) if p.is_file()]
    blob = bytearray(stored.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    os.chmod(stored, 0o600)
    stored.write_bytes(bytes(blob))
    (gone,) = [p for p in server.data_dir.rglob(lost) if p.is_file()]
    gone.unlink()

    found = cli(server, "verify-store", "--site", name)
    assert found.exit_code == 2, found.output
    lines = found.stdout.splitlines()
    assert lines[1].split()[:2] == [name, "DAMAGED"]
    assert f"{name}: damaged chunk {damaged}" in lines
    assert f"{name}: missing chunk {lost}" in lines
    assert (
        f"{name}: it breaks 1 snapshot ({snap.snapshot_id[:12]}) and 1 backup run ({info.run_id})"
        in lines
    )
    assert lines[-1] == "1 site checked: 0 clean, 1 damaged."

    shown = cli(server, "sites", "--json")
    assert shown.exit_code == 0, shown.output
    (mine,) = [r for r in json.loads(shown.stdout) if r["site"] == name]
    assert mine["store_damaged_chunks"] == 2
    assert mine["last_store_check_at"] is not None
    assert mine["last_offsite_at"] is not None
    assert mine["last_offsite_backup_run_id"] == info.run_id
    assert mine["last_drill_ok_at"] is None

    detail = cli(server, "site", name)
    assert detail.exit_code == 0, detail.output
    assert ": 2 chunks damaged or missing" in detail.stdout
    assert "Proven restorable     never" in detail.stdout

    runs = cli(server, "runs", name, "--kind", "store-check")
    assert runs.exit_code == 0, runs.output
    assert "0 clean" not in runs.stdout
    assert "1 damaged, 1 missing; breaks 1 snapshot and 1 backup run" in runs.stdout


def test_verify_store_refuses_bad_input_and_unknown_sites(server: ServerHandle) -> None:
    bad = cli(server, "verify-store", "--sample", "0")
    assert (bad.exit_code, bad.stderr) == (
        2,
        "error: --sample 0 is not a percentage above 0 and up to 100\n",
    )
    unknown = cli(server, "verify-store", "--site", "no-such-shop")
    assert unknown.exit_code == 3, unknown.output
    assert "no-such-shop" in unknown.stderr


def test_restore_takes_the_newest_copy_or_that_of_a_backup_run(
    server: ServerHandle, tmp_path: Path
) -> None:
    name = f"shop-{uuid.uuid4().hex[:8]}"
    fleet = FleetPrivateKey.generate()
    key_file = tmp_path / "fleet.key"
    write_key_file(key_file, fleet, dt.datetime.now(dt.UTC))
    site = new_site(name, fleet)
    credential = enroll_agent(server, name)
    older_raw, newer_raw = RAW[:70_000], RAW[50_000:]
    taken = dt.datetime.now(dt.UTC).replace(microsecond=0)
    older, older_info = seal_backup(
        site,
        [("day1.fbk.zst", older_raw)],
        run_id=new_run_id(),
        created=taken - dt.timedelta(days=1),
    )
    newer, newer_info = seal_backup(
        site, [("day2.fbk.zst", newer_raw)], run_id=new_run_id(), created=taken
    )
    for snap, info in ((older, older_info), (newer, newer_info)):
        report_backup(server, credential, info)
        upload_database(server, credential, site, snap, info)

    newest = cli(
        server, "restore", name, "--key", str(key_file), "--to", str(tmp_path / "a.fbk"), "--json"
    )
    assert newest.exit_code == 0, newest.output
    assert json.loads(newest.stdout)["backup_run_id"] == newer_info.run_id
    assert (tmp_path / "a.fbk").read_bytes() == newer_raw

    by_run = cli(
        server,
        "restore",
        name,
        "--key",
        str(key_file),
        "--to",
        str(tmp_path / "b.fbk"),
        "--run",
        older_info.run_id,
    )
    assert by_run.exit_code == 0, by_run.output
    assert (tmp_path / "b.fbk").read_bytes() == older_raw

    unknown = cli(
        server,
        "restore",
        name,
        "--key",
        str(key_file),
        "--to",
        str(tmp_path / "c"),
        "--run",
        "no-such-run",
    )
    assert unknown.exit_code == 3
    assert unknown.stderr == (
        f"error: site {name} has no database snapshot of backup run no-such-run in the "
        "off-site store\n"
    )
    nothing = cli(
        server,
        "restore",
        "shop-without-copies",
        "--key",
        str(key_file),
        "--to",
        str(tmp_path / "d"),
    )
    assert nothing.exit_code == 3
    assert "shop-without-copies" in nothing.stderr
