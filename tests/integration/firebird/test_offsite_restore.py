"""`storesafe restore` and `drill` of a real gbak backup from a real server's off-site store.

A tiny shop database is backed up with gbak by the real Firebird server,
the stream sealed as a database snapshot with common.vault + backupset and
uploaded with the agent RPCs under a real agent credential, its backup run
reported with the raw checksum; the CLI then restores it over gRPC into a
file (which stock `gbak -c` restores) and into a database. Faults: a wrong key
file, a tampered and a missing stored chunk, paths that exist, the server
killed mid-restore (the re-run resumes), a raw checksum that disagrees.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli import backup_fetch
from cli.main import app
from common.firebird.connection import FirebirdTarget, attach, services
from common.firebird.schema import count_rows, read_schema
from common.vault.backupset import BackupInfo, stream_refs
from common.vault.keyfile import read_key_file
from common.vault.snapshot import open_snapshot
from tests.integration.firebird.conftest import new_target
from tests.support.dbsnapshot import new_run_id, report_backup, seal_backup, upload_database
from tests.support.sealed import Sealed, SealedSite, new_site
from tests.support.server import ServerHandle, enroll_agent, start_server


@dataclass(frozen=True)
class Shop:
    raw: bytes  # the gbak stream
    counts: dict[str, int]  # rows per table of the live shop database


@dataclass(frozen=True)
class Uploaded:
    site: SealedSite
    key_file: Path
    credential: str
    snap: Sealed
    info: BackupInfo


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path_factory.mktemp("dbrestore"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def backup(fb_root: Path, fb_password: str) -> Shop:
    """One gbak backup of a tiny shop database, written by the server, and its counts."""
    shop = new_target(fb_root, fb_password, f"offsite-{uuid.uuid4().hex[:8]}", accounts=3000)
    fbk = fb_root / "db" / f"offsite-{uuid.uuid4().hex[:8]}.fbk"
    with services(shop) as svc:
        svc.backup(shop.database, str(fbk), collect_garbage=0)
        for _ in svc:
            pass
    raw = fbk.read_bytes()
    fbk.unlink()
    with attach(shop) as con:
        counts = count_rows(con, read_schema(con).tables)
    return Shop(raw, counts)


@pytest.fixture
def work(fb_root: Path) -> Iterator[Path]:
    """A folder the CLI writes in and the Firebird server reads and writes in."""
    path = fb_root / f"restore-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    path.chmod(0o777)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def cli(server: ServerHandle, fb_password: str, *args: str) -> Result:
    env = {**server.cli_env, "STORESAFE_FB_PASSWORD": fb_password}
    return CliRunner().invoke(app, list(args), env=env)


def _upload(
    server: ServerHandle, tmp_path: Path, backup: Shop, *, raw_sha256: str | None = None
) -> Uploaded:
    """A new site with the shop backup in the store, its backup run reported."""
    name = f"shop-{uuid.uuid4().hex[:8]}"
    key_file = tmp_path / "fleet.key"
    created = cli(server, "", "keys", "create", "--out", str(key_file), "--json")
    assert created.exit_code == 0, created.output
    site = new_site(name, read_key_file(key_file))
    credential = enroll_agent(server, name)
    snap, info = seal_backup(site, [("shop-1.fbk.zst", backup.raw)], run_id=new_run_id())
    upload_database(server, credential, site, snap, info)
    report_backup(server, credential, info, raw_sha256=raw_sha256)
    return Uploaded(site, key_file, credential, snap, info)


def _stored(server: ServerHandle, chunk_id: str) -> Path:
    (path,) = [p for p in server.data_dir.rglob(chunk_id) if p.is_file()]
    return path


def _content_chunk(up: Uploaded, at: float = 0.5) -> str:
    """A content chunk of the backup stream, at share `at` of its chunks."""
    snapshot = open_snapshot(up.site.keys, up.snap.snapshot_id, up.snap.record, up.snap.chunks.get)
    (refs,) = stream_refs(up.info, snapshot.entries)
    return refs[int(len(refs) * at)][0]


def _restore(server: ServerHandle, fb_password: str, up: Uploaded, *args: str) -> Result:
    return cli(server, fb_password, "restore", up.site.site, "--key", str(up.key_file), *args)


def test_restored_file_is_the_backup_and_stock_gbak_restores_it(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    up = _upload(server, tmp_path, backup)
    fbk = work / "shop.fbk"
    result = _restore(server, fb_password, up, "--to", str(fbk), "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["ok"] is True
    assert shown["checksum_ok"] is True
    assert shown["checked_against_backup_time_checksum"] is True
    assert shown["backup_run_id"] == up.info.run_id
    assert shown["snapshot_id"] == up.snap.snapshot_id
    assert shown["database"] is None and shown["drill_recorded"] is None
    assert fbk.read_bytes() == backup.raw
    assert not list(work.glob("*.partial*"))

    database = work / "by-gbak.fdb"
    gbak = subprocess.run(
        ["gbak", "-c", str(fbk), f"localhost:{database}", "-user", "SYSDBA", "-pas", fb_password],
        capture_output=True,
        text=True,
        check=False,
    )
    assert gbak.returncode == 0, gbak.stderr
    target = FirebirdTarget("localhost", str(database), "SYSDBA", fb_password)
    with attach(target) as con:
        assert count_rows(con, read_schema(con).tables) == backup.counts

    text = _restore(server, fb_password, up, "--to", str(work / "again.fbk"))
    assert text.exit_code == 0, text.output
    assert "every chunk checked" in text.stdout
    assert "matches the checksum the server recorded at backup time" in text.stdout
    assert f"gbak -c {work / 'again.fbk'} NEW.fdb" in text.stdout


def test_without_a_raw_checksum_on_the_server_it_says_what_was_checked(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    up = _upload(server, tmp_path, backup, raw_sha256="")
    result = _restore(server, fb_password, up, "--to", str(work / "shop.fbk"))
    assert result.exit_code == 0, result.output
    assert "checked against the snapshot's own record only" in result.stdout


def test_a_raw_checksum_that_disagrees_fails_and_keeps_nothing(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    up = _upload(server, tmp_path, backup, raw_sha256="0" * 64)
    result = _restore(server, fb_password, up, "--to", str(work / "shop.fbk"))
    assert result.exit_code == 5
    assert result.stderr.startswith("error: the reassembled 'shop-1.fbk.zst' of backup run ")
    assert "where the server recorded 0000000000000000... for the backup at backup time" in (
        result.stderr
    )
    assert list(work.iterdir()) == []


def test_a_wrong_key_file_is_refused(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    up = _upload(server, tmp_path, backup)
    other = tmp_path / "other.key"
    assert cli(server, "", "keys", "create", "--out", str(other), "--no-register").exit_code == 0
    result = cli(
        server, fb_password, "restore", up.site.site, "--key", str(other), "--to", str(work / "x")
    )
    assert result.exit_code == 5
    assert result.stderr == (
        f"error: this key file (fingerprint {read_key_file(other).fingerprint}) is not the "
        f"fleet key that site {up.site.site}'s data key was sealed to "
        f"(fingerprint {up.site.fleet.fingerprint})\n"
    )
    assert list(work.iterdir()) == []


def test_a_tampered_and_a_missing_chunk_are_named(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    up = _upload(server, tmp_path, backup)
    victim = _content_chunk(up, 0.5)
    stored = _stored(server, victim)
    blob = bytearray(stored.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    os.chmod(stored, 0o600)
    stored.write_bytes(bytes(blob))
    fbk = work / "shop.fbk"
    result = _restore(server, fb_password, up, "--to", str(fbk))
    assert result.exit_code == 5
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: chunk {victim} ")
    assert first.endswith(
        f"; backup run {up.info.run_id} of site {up.site.site} cannot be restored from this "
        "snapshot (shop-1.fbk.zst)"
    )
    assert not fbk.exists()

    stored.write_bytes(up.snap.chunks[victim])  # mended
    lost = _content_chunk(up, 0.8)
    _stored(server, lost).unlink()
    result = _restore(server, fb_password, up, "--to", str(fbk))
    assert result.exit_code == 5
    assert result.stderr.splitlines()[0] == (
        f"error: chunk {lost} is missing from the store; backup run {up.info.run_id} of site "
        f"{up.site.site} cannot be restored from this snapshot (shop-1.fbk.zst)"
    )
    assert not fbk.exists()


def test_a_path_that_exists_is_refused_without_force(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    up = _upload(server, tmp_path, backup)
    fbk = work / "shop.fbk"
    fbk.write_bytes(b"keep me")
    result = _restore(server, fb_password, up, "--to", str(fbk))
    assert (result.exit_code, result.stderr) == (5, f"error: {fbk} exists; --force replaces it\n")
    assert fbk.read_bytes() == b"keep me"
    database = work / "there.fdb"
    database.write_bytes(b"keep me too")
    result = _restore(
        server, fb_password, up, "--to", str(work / "new.fbk"), "--database", str(database)
    )
    assert result.exit_code == 5
    assert result.stderr == f"error: {database} exists; --force replaces it\n"
    assert database.read_bytes() == b"keep me too"
    assert not (work / "new.fbk").exists()

    refused = _restore(server, fb_password, up, "--to", str(fbk), "--database", str(work / "n.fdb"))
    assert (refused.exit_code, refused.stderr) == (5, f"error: {fbk} exists; --force replaces it\n")
    assert _runs(server, up.site.site, "drill") == []  # refused before anything: not a drill
    forced = _restore(server, fb_password, up, "--to", str(fbk), "--force")
    assert forced.exit_code == 0, forced.output
    assert fbk.read_bytes() == backup.raw


def test_a_restore_cut_by_the_server_going_away_resumes(
    server: ServerHandle,
    backup: Shop,
    work: Path,
    fb_password: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    up = _upload(server, tmp_path, backup)
    monkeypatch.setattr("cli.restore_fetch.BATCH_BYTES", 32 * 1024)  # several batches
    saved = backup_fetch._save
    batches: list[int] = []

    def cut_after_two(f: backup_fetch.StreamFile, handle: object, snapshot: str, n: int) -> None:
        saved(f, handle, snapshot, n)  # type: ignore[arg-type]
        batches.append(n)
        if len(batches) == 2:
            server.stop(signal.SIGKILL)

    monkeypatch.setattr(backup_fetch, "_save", cut_after_two)
    fbk = work / "shop.fbk"
    try:
        cut = _restore(server, fb_password, up, "--to", str(fbk), "--json")
    finally:
        if server.proc is None:
            server.start()
    assert cut.exit_code == 6, cut.output
    assert "unreachable" in cut.stderr or "server" in cut.stderr
    assert not fbk.exists()
    partial = work / "shop.fbk.partial"
    state = json.loads((work / "shop.fbk.partial.json").read_text())
    # The batch fetched ahead while the second was saved may have arrived before the
    # kill: then it is saved too. The state names the last batch saved, whichever.
    assert len(batches) in (2, 3)
    assert state["chunks"] == batches[-1] and partial.stat().st_size == state["bytes"] > 0

    monkeypatch.setattr(backup_fetch, "_save", saved)
    again = _restore(server, fb_password, up, "--to", str(fbk), "--json")
    assert again.exit_code == 0, again.output
    shown = json.loads(again.stdout)
    assert shown["bytes_resumed"] == state["bytes"]
    assert shown["bytes_written"] == len(backup.raw) - state["bytes"]
    assert fbk.read_bytes() == backup.raw
    assert not partial.exists()


def _runs(server: ServerHandle, site: str, kind: str) -> list[dict[str, object]]:
    shown = cli(server, "", "runs", site, "--kind", kind, "--json")
    assert shown.exit_code == 0, shown.output
    rows: list[dict[str, object]] = json.loads(shown.stdout)
    return rows


def test_a_restore_into_a_database_is_validated_counted_and_recorded_as_a_drill(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    up = _upload(server, tmp_path, backup)
    database = work / "restored.fdb"
    result = _restore(
        server,
        fb_password,
        up,
        "--to",
        str(work / "shop.fbk"),
        "--database",
        str(database),
        "--json",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["database"]["restored"] is True
    assert shown["database"]["validation_errors"] == 0
    assert shown["database"]["table_counts"] == backup.counts
    assert shown["drill_recorded"] is True
    target = FirebirdTarget("localhost", str(database), "SYSDBA", fb_password)
    with attach(target) as con:
        assert count_rows(con, read_schema(con).tables) == backup.counts

    (drill,) = _runs(server, up.site.site, "drill")
    assert (drill["outcome"], drill["trigger"]) == ("succeeded", "restore")
    details = drill["details"]
    assert isinstance(details, dict)
    assert details["backup_run_id"] == up.info.run_id
    assert details["snapshot_id"] == up.snap.snapshot_id
    assert (details["checksum_ok"], details["restored"]) == (True, True)
    assert details["table_counts"] == backup.counts
    assert details["backup_bytes"] == len(backup.raw)

    again = _restore(
        server, fb_password, up, "--to", str(work / "shop.fbk"), "--database", str(database)
    )
    assert again.exit_code == 5
    assert again.stderr == f"error: {work / 'shop.fbk'} exists; --force replaces it\n" or (
        again.stderr == f"error: {database} exists; --force replaces it\n"
    )
    forced = _restore(
        server,
        fb_password,
        up,
        "--to",
        str(work / "shop.fbk"),
        "--database",
        str(database),
        "--force",
    )
    assert forced.exit_code == 0, forced.output
    assert "validation clean" in forced.stdout
    assert "Drill recorded on the server (passed)." in forced.stdout
    assert len(_runs(server, up.site.site, "drill")) == 2


def test_a_failed_restore_into_a_database_is_recorded_as_a_failed_drill(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    up = _upload(server, tmp_path, backup)
    lost = _content_chunk(up, 0.3)
    _stored(server, lost).unlink()
    result = _restore(
        server, fb_password, up, "--to", str(work / "shop.fbk"), "--database", str(work / "x.fdb")
    )
    assert result.exit_code == 5
    assert f"chunk {lost} is missing from the store" in result.stderr
    assert "Drill recorded on the server (failed)." in result.stdout
    assert not (work / "x.fdb").exists()
    (drill,) = _runs(server, up.site.site, "drill")
    assert drill["outcome"] == "failed"
    assert drill["error_class"] == "restore.chunk"
    details = drill["details"]
    assert isinstance(details, dict)
    assert (details["checksum_ok"], details["restored"]) == (False, False)


def test_drill_restores_each_site_into_scratch_and_removes_it(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    good = _upload(server, tmp_path / "a", backup)
    bad = _upload(server, tmp_path / "b", backup)
    _stored(server, _content_chunk(bad, 0.5)).unlink()
    result = cli(
        server,
        fb_password,
        "drill",
        good.site.site,
        "--key",
        str(good.key_file),
        "--scratch",
        str(work),
    )
    assert result.exit_code == 0, result.output
    assert "1 drill: 1 passed, 0 failed." in result.stdout
    assert list(work.iterdir()) == []
    failed = cli(
        server,
        fb_password,
        "drill",
        bad.site.site,
        "--key",
        str(bad.key_file),
        "--scratch",
        str(work),
        "--json",
    )
    assert failed.exit_code == 2, failed.output
    (row,) = json.loads(failed.stdout)
    assert row["ok"] is False and "is missing from the store" in row["error"]
    assert list(work.iterdir()) == []
    assert [r["trigger"] for r in _runs(server, good.site.site, "drill")] == ["drill"]
    assert [r["outcome"] for r in _runs(server, bad.site.site, "drill")] == ["failed"]


def test_an_nbackup_chain_is_written_level_by_level_and_restored_in_order(
    server: ServerHandle, fb_root: Path, work: Path, fb_password: str, tmp_path: Path
) -> None:
    shop = new_target(fb_root, fb_password, f"nbk-{uuid.uuid4().hex[:8]}", accounts=200)
    env = {**os.environ, "ISC_USER": "SYSDBA", "ISC_PASSWORD": fb_password}
    levels = []
    for level in (0, 1):
        if level:
            with attach(shop) as con:
                con.cursor().execute("UPDATE ACCOUNTS SET BALANCE = BALANCE + 1 WHERE ID <= 20")
                con.commit()
        out = fb_root / "db" / f"nbk-{uuid.uuid4().hex[:8]}.nbk"
        subprocess.run(["nbackup", "-B", str(level), shop.dsn, str(out)], env=env, check=True)
        levels.append((f"shop-l{level}.nbk.zst", out.read_bytes()))
        out.unlink()
    with attach(shop) as con:
        counts = count_rows(con, read_schema(con).tables)
        balance = con.cursor().execute("SELECT SUM(BALANCE) FROM ACCOUNTS").fetchone()[0]

    name = f"shop-{uuid.uuid4().hex[:8]}"
    key_file = tmp_path / "fleet.key"
    assert cli(server, "", "keys", "create", "--out", str(key_file)).exit_code == 0
    site = new_site(name, read_key_file(key_file))
    credential = enroll_agent(server, name)
    snap, info = seal_backup(site, levels, run_id=new_run_id(), method="nbackup")
    upload_database(server, credential, site, snap, info)
    report_backup(server, credential, info)

    chain, database = work / "chain", work / "nbk.fdb"
    result = cli(
        server,
        fb_password,
        "restore",
        name,
        "--key",
        str(key_file),
        "--to",
        str(chain),
        "--database",
        str(database),
        "--json",
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["method"] == "nbackup"
    assert shown["files"] == [str(chain / "shop-l0.nbk"), str(chain / "shop-l1.nbk")]
    assert [(chain / n).read_bytes() for n in ("shop-l0.nbk", "shop-l1.nbk")] == [
        data for _, data in levels
    ]
    assert shown["database"]["table_counts"] == counts
    target = FirebirdTarget("localhost", str(database), "SYSDBA", fb_password)
    with attach(target) as con:
        assert con.cursor().execute("SELECT SUM(BALANCE) FROM ACCOUNTS").fetchone()[0] == balance


def test_drill_all_covers_every_site_with_a_copy_and_names_each_failure(
    server: ServerHandle, backup: Shop, work: Path, fb_password: str, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    other = _upload(server, tmp_path / "other", backup)  # sealed to another fleet key
    up = _upload(server, tmp_path, backup)
    without_copy = f"shop-{uuid.uuid4().hex[:8]}"
    enroll_agent(server, without_copy)
    result = cli(
        server,
        fb_password,
        "drill",
        "--all",
        "--key",
        str(up.key_file),
        "--scratch",
        str(work),
        "--json",
    )
    rows = {row["site"]: row for row in json.loads(result.stdout)}
    assert rows[up.site.site]["ok"] is True
    assert without_copy not in rows
    others = [row for name, row in rows.items() if name != up.site.site]
    assert other.site.site in rows  # with the sites of the tests before, other fleet keys
    assert all(row["ok"] is False and "is not the fleet key" in row["error"] for row in others)
    assert result.exit_code == 2
    assert list(work.iterdir()) == []


def test_a_backup_firebird_cannot_restore_fails_the_drill_and_leaves_no_database(
    server: ServerHandle, work: Path, fb_password: str, tmp_path: Path
) -> None:
    not_gbak = Shop(raw=b"this is no gbak backup\n" * 2000, counts={})
    up = _upload(server, tmp_path, not_gbak)
    database = work / "never.fdb"
    result = _restore(
        server, fb_password, up, "--to", str(work / "x.fbk"), "--database", str(database), "--json"
    )
    assert result.exit_code != 0
    shown = json.loads(result.stdout)
    assert shown["checksum_ok"] is True
    assert shown["database"]["restored"] is False
    assert shown["drill_recorded"] is True
    assert "not a valid gbak backup" in shown["error"]
    assert result.stderr.startswith("error: ")
    assert not database.exists()
    (drill,) = _runs(server, up.site.site, "drill")
    assert (drill["outcome"], drill["error_class"]) == ("failed", "backup.corrupt")
