"""Backup names, manifests, listing, marking bad, the job lock and retention on disk."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pytest

from agent.domain.reports import FileState
from agent.firebird.files import (
    NAME_RE,
    UNVERIFIED_SUFFIX,
    Manifest,
    Status,
    backup_name,
    final_file,
    job_lock,
    list_backups,
    mark_bad,
    mark_good,
    prepare_spool,
    recover_names,
    write_manifest,
)
from agent.firebird.jobs import BackupSettings, apply_retention, prune
from agent.firebird.recheck import run_recheck_job
from agent.firebird.retention import RetentionPolicy
from agent.firebird.verify import compare_counts, drop_problems
from common.firebird.connection import FirebirdTarget
from common.firebird.errors import BackupBusy, BackupDirMissing, CountMismatch
from common.firebird.schema import Schema
from tests.support.clock import FakeClock

WHEN = dt.datetime(2026, 11, 26, 21, 30, tzinfo=dt.UTC)


def put_backup(folder: Path, when: dt.datetime, status: Status = Status.GOOD) -> Manifest:
    name = backup_name(r"C:\RTOwin\Data\RTO Data.fdb", "gbak", 0, when)
    m = Manifest(
        name=name,
        file=f"{name}.fbk.zst",
        database="/db/shop.fdb",
        method="gbak",
        level=0,
        started_at=when.isoformat(),
        finished_at=when.isoformat(),
        status=status,
    )
    (folder / m.file).write_bytes(b"data")
    write_manifest(folder, m)
    return m


def test_names_are_unique_and_recognised() -> None:
    a = backup_name(r"C:\RTOwin\Data\RTO Data.fdb", "gbak", 0, WHEN)
    b = backup_name(r"C:\RTOwin\Data\RTO Data.fdb", "gbak", 0, WHEN)
    assert a != b
    assert a.startswith("storesafe-RTO_Data-20261126T213000Z-gbak-")
    assert NAME_RE.match(a + ".json")
    assert NAME_RE.match(backup_name("/db/x.fdb", "nbackup", 2, WHEN) + ".json")
    assert "-L2-" in backup_name("/db/x.fdb", "nbackup", 2, WHEN)


def test_missing_backup_dir(tmp_path: Path) -> None:
    with pytest.raises(BackupDirMissing):
        prepare_spool(tmp_path / "nope")


def test_listing_sees_only_finished_agent_backups(tmp_path: Path) -> None:
    prepare_spool(tmp_path)
    mine = put_backup(tmp_path, WHEN)
    (tmp_path / "shop-manual-copy.fbk").write_bytes(b"x")
    (tmp_path / "storesafe-notes.json").write_text("{}")
    orphan = put_backup(tmp_path, WHEN - dt.timedelta(days=1))
    (tmp_path / orphan.file).unlink()  # manifest without its data file
    assert [m.name for m in list_backups(tmp_path)] == [mine.name]


def test_manifest_round_trip_and_mark_bad(tmp_path: Path) -> None:
    prepare_spool(tmp_path)
    m = put_backup(tmp_path, WHEN)
    mark_bad(tmp_path, m, "checksum mismatch")
    [listed] = list_backups(tmp_path)
    assert listed.status == Status.BAD
    assert listed.file.endswith(".fbk.zst.bad")
    assert listed.bad_reason == "checksum mismatch"
    assert (tmp_path / listed.file).read_bytes() == b"data"  # kept for inspection
    assert not (tmp_path / m.file.removesuffix(".bad")).exists()


def test_a_manifest_written_before_raw_checksums_and_run_ids_still_loads(tmp_path: Path) -> None:
    prepare_spool(tmp_path)
    m = put_backup(tmp_path, WHEN)
    path = tmp_path / f"{m.name}.json"
    old = json.loads(path.read_text())
    del old["raw_sha256"], old["run_id"]
    path.write_text(json.dumps(old))
    [listed] = list_backups(tmp_path)
    assert (listed.name, listed.raw_sha256, listed.run_id) == (m.name, "", "")


def test_only_one_job_per_backup_dir(tmp_path: Path) -> None:
    spool = prepare_spool(tmp_path)
    with job_lock(spool), pytest.raises(BackupBusy), job_lock(spool):
        pass
    with job_lock(spool):  # released again
        pass


def test_retention_on_disk_leaves_foreign_files_alone(tmp_path: Path) -> None:
    prepare_spool(tmp_path)
    backups = [put_backup(tmp_path, WHEN - dt.timedelta(days=i)) for i in range(5)]
    foreign = tmp_path / "storesafe-shop-20200101T000000Z-gbak-deadbeef.fbk.zst"
    foreign.write_bytes(b"not ours: no manifest")
    deleted = apply_retention(tmp_path, RetentionPolicy(2, 0, 0), protect=set())
    assert set(deleted) == {m.name for m in backups[2:]}
    assert foreign.exists()
    assert {m.name for m in list_backups(tmp_path)} == {m.name for m in backups[:2]}


def test_count_comparison() -> None:
    compare_counts({"A": 100, "B": 0}, {"A": 100, "B": 0}, tolerance=0)
    with pytest.raises(CountMismatch, match="A 99 rows, expected 100"):
        compare_counts({"A": 100}, {"A": 99}, tolerance=0)
    compare_counts({"A": 1000}, {"A": 990}, tolerance=0.02)
    with pytest.raises(CountMismatch, match="B missing"):
        compare_counts({"B": 1}, {}, tolerance=0.5)


def test_large_drop_against_previous_good_backup() -> None:
    problems = drop_problems(
        {"ACCOUNTS": 1000, "TINY": 10, "GONE": 500}, {"ACCOUNTS": 12, "TINY": 0}
    )
    assert len(problems) == 2
    assert any("ACCOUNTS dropped from 1000 to 12" in p for p in problems)
    assert any("GONE" in p for p in problems)
    assert drop_problems({"ACCOUNTS": 1000}, {"ACCOUNTS": 900}) == []


def test_schema_differences() -> None:
    live = Schema(("A", "B"), ("A.PK_A",))
    assert live.differences(live) == []
    diffs = live.differences(Schema(("A",), ()))
    assert "table missing: B" in diffs
    assert "index missing: A.PK_A" in diffs


def test_health_problems() -> None:
    from agent.domain.reports import FirebirdHealth
    from agent.firebird.health import health_problems

    assert health_problems(FirebirdHealth(oit=10, oat=20, next_transaction=30)) == []
    problems = health_problems(
        FirebirdHealth(oit=1, oat=200_000, next_transaction=400_001, forced_writes=False)
    )
    assert len(problems) == 3
    assert "Forced writes are off" in problems[0]


def test_low_free_space_is_a_problem_before_the_backup_fails(tmp_path: Path) -> None:
    from agent.firebird.jobs import _space_problems

    prepare_spool(tmp_path)
    m = put_backup(tmp_path, WHEN)
    assert _space_problems(tmp_path, [m]) == []
    m.size_raw = 2**50  # a last backup far bigger than any free space
    [problem] = _space_problems(tmp_path, [m])
    assert "under twice" in problem


def test_backup_settings_refuse_bad_values(tmp_path: Path) -> None:
    from agent.firebird.jobs import BackupSettings
    from common.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        BackupSettings(tmp_path, method="zip")
    with pytest.raises(InvalidArgument):
        BackupSettings(tmp_path, method="nbackup", level=10)
    assert BackupSettings(tmp_path, method="nbackup", level=2).level == 2


def put_unverified(folder: Path, when: dt.datetime) -> Manifest:
    m = put_backup(folder, when, Status.UNVERIFIED)
    os.replace(folder / m.file, folder / (m.file + UNVERIFIED_SUFFIX))
    m.file += UNVERIFIED_SUFFIX
    write_manifest(folder, m)
    return m


def test_an_unverified_backup_never_looks_like_a_finished_one(tmp_path: Path) -> None:
    prepare_spool(tmp_path)
    good = put_backup(tmp_path, WHEN - dt.timedelta(days=1))
    pending = put_unverified(tmp_path, WHEN)
    finished = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".fbk.zst"))
    assert finished == [good.file]  # the newest file that looks like a backup is verified
    [_, listed] = list_backups(tmp_path)
    assert listed.status == Status.UNVERIFIED  # still counted, by retention too
    mark_good(tmp_path, listed)
    assert (tmp_path / final_file(pending.file)).read_bytes() == b"data"
    assert not (tmp_path / pending.file).exists()
    assert [m.status for m in list_backups(tmp_path)] == [Status.GOOD, Status.GOOD]


def test_a_kill_between_manifest_and_rename_is_finished_later(tmp_path: Path) -> None:
    prepare_spool(tmp_path)
    pending = put_unverified(tmp_path, WHEN)
    pending.status, pending.file = Status.GOOD, final_file(pending.file)
    write_manifest(tmp_path, pending)  # the manifest said good, then the kill
    assert list_backups(tmp_path) == []
    assert recover_names(tmp_path) == [pending.file]
    [listed] = list_backups(tmp_path)
    assert listed.status == Status.GOOD and (tmp_path / listed.file).is_file()


def test_a_bad_unverified_backup_is_renamed_bad_without_the_unverified_suffix(
    tmp_path: Path,
) -> None:
    prepare_spool(tmp_path)
    pending = put_unverified(tmp_path, WHEN)
    mark_bad(tmp_path, pending, "restore failed")
    [listed] = list_backups(tmp_path)
    assert listed.file == final_file(pending.file) + ".bad"


def test_retention_logs_each_deletion_with_its_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prepare_spool(tmp_path)
    same_day = [put_backup(tmp_path, WHEN - dt.timedelta(hours=h)) for h in (0, 1, 2)]
    caplog.set_level(logging.INFO, logger="agent.firebird.jobs")
    pruned = prune(tmp_path, RetentionPolicy(7, 4, 6), protect=set())
    assert [p.file for p in pruned] == [same_day[2].file, same_day[1].file]
    assert {p.state for p in pruned} == {FileState.PRUNED}
    assert all("a newer good backup of 2026-11-26 is kept" in p.reason for p in pruned)
    logged = [r.getMessage() for r in caplog.records if "retention deleted" in r.getMessage()]
    assert len(logged) == 2
    assert f"retention deleted {same_day[2].file} (good): a newer good backup" in logged[0]


def test_a_file_check_reports_gone_files_and_forgets_unfinished_manifests(tmp_path: Path) -> None:
    prepare_spool(tmp_path)
    gone = put_backup(tmp_path, WHEN - dt.timedelta(days=1))
    (tmp_path / gone.file).unlink()  # deleted by hand, not by retention
    unfinished = put_backup(tmp_path, WHEN, Status.UNVERIFIED)  # killed before the rename
    (tmp_path / unfinished.file).unlink()
    target = FirebirdTarget("localhost", "/db/shop.fdb", "SYSDBA", "unused")
    settings = BackupSettings(tmp_path, retention=RetentionPolicy(0, 0, 0))
    outcome = run_recheck_job(target, settings, clock=FakeClock(WHEN))  # no good one: no restore
    assert [(c.file, c.state) for c in outcome.file_changes] == [(gone.file, FileState.MISSING)]
    assert outcome.error_class == "backup.corrupt"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".json") == []
