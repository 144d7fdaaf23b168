"""Kept backups checked again against the real server: bit rot, kills during verification,
validation warnings on a restored copy."""

from __future__ import annotations

import datetime as dt
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import fdb
import pytest

from agent.domain.reports import BackupDetails, FileCheckDetails, FileState, Outcome, RunKind
from agent.firebird.files import UNVERIFIED_SUFFIX, Status, list_backups, prepare_spool
from agent.firebird.jobs import BackupSettings, run_backup_job
from agent.firebird.recheck import run_pending_verifications, run_recheck_job
from agent.firebird.retention import RetentionPolicy
from common.clock import SystemClock
from common.firebird.connection import FirebirdTarget
from common.firebird.validation import validate_copy
from tests.integration.firebird.conftest import new_target
from tests.integration.firebird.helpers import spool_leftovers
from tests.support.damage import damage

pytestmark = pytest.mark.firebird
KEEP_ALL = RetentionPolicy(0, 0, 0)
CLOCK = SystemClock()


def looks_finished(backup_dir: Path) -> list[str]:
    """Names a technician restoring by hand would take for finished backups."""
    return sorted(p.name for p in backup_dir.iterdir() if p.name.endswith((".fbk.zst", ".nbk.zst")))


def test_a_flipped_byte_in_the_newest_good_backup_is_found_marked_and_reported(
    shop: FirebirdTarget, backup_dir: Path
) -> None:
    settings = BackupSettings(backup_dir, retention=KEEP_ALL)
    first = run_backup_job(shop, settings, clock=CLOCK)
    second = run_backup_job(shop, settings, clock=CLOCK)
    assert first.succeeded and second.succeeded
    newest = list_backups(backup_dir)[-1]
    damage(backup_dir / newest.file)

    outcome = run_recheck_job(shop, settings, clock=CLOCK, restore_every=dt.timedelta(days=7))
    report = outcome.to_report()
    assert report.kind == RunKind.FILE_CHECK and report.outcome == Outcome.FAILED
    assert isinstance(report.details, FileCheckDetails)
    assert (report.details.files_checked, report.details.files_damaged) == (2, 1)
    [change] = report.file_changes
    assert change.file == newest.file and change.state == FileState.DAMAGED
    assert "no longer matches its checksum" in change.reason
    statuses = [m.status for m in list_backups(backup_dir)]
    assert statuses == [Status.GOOD, Status.BAD]
    assert looks_finished(backup_dir) == [list_backups(backup_dir)[0].file]  # not the rotten one

    # the next check finds nothing new; retention never counts the bad one as newest good
    again = run_recheck_job(shop, settings, clock=CLOCK)
    assert again.succeeded and again.file_changes == ()
    assert spool_leftovers(backup_dir) == []


def test_the_newest_good_backup_is_restored_again_when_due(
    shop: FirebirdTarget, backup_dir: Path
) -> None:
    settings = BackupSettings(backup_dir, retention=KEEP_ALL)
    assert run_backup_job(shop, settings, clock=CLOCK).succeeded
    [manifest] = list_backups(backup_dir)
    outcome = run_recheck_job(shop, settings, clock=CLOCK, restore_every=dt.timedelta(0))
    assert outcome.succeeded, outcome.error_message
    assert isinstance(outcome.details, FileCheckDetails)
    assert outcome.details.restored == manifest.file
    [after] = list_backups(backup_dir)
    assert after.verified_at > manifest.verified_at


CHILD = """
import os, sys
from pathlib import Path
from common.firebird.connection import FirebirdTarget
from agent.firebird.jobs import BackupSettings, run_backup_job
from agent.firebird.retention import RetentionPolicy
from common.clock import SystemClock
target = FirebirdTarget("localhost", sys.argv[1], "SYSDBA", os.environ["STORESAFE_FB_PASSWORD"])
run_backup_job(target, BackupSettings(Path(sys.argv[2]), retention=RetentionPolicy(0, 0, 0)),
               clock=SystemClock())
"""


def kill_during_verification(target: FirebirdTarget, backup_dir: Path, password: str) -> None:
    env = {**os.environ, "STORESAFE_FB_PASSWORD": password}
    before = set(backup_dir.iterdir())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, target.database, str(backup_dir)],
        env=env,
        cwd=Path(__file__).parents[3],
    )
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(UNVERIFIED_SUFFIX) for p in set(backup_dir.iterdir()) - before):
        assert child.poll() is None, "the backup ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()


def test_backups_a_kill_left_unverified_are_verified_at_the_next_start(
    fb_root: Path, fb_password: str, backup_dir: Path
) -> None:
    target = new_target(fb_root, fb_password, "killverify", accounts=100, filler_mb=8)
    settings = BackupSettings(backup_dir, retention=RetentionPolicy(7, 4, 6))
    assert run_backup_job(target, settings, clock=CLOCK).succeeded
    good = list_backups(backup_dir)[-1]
    kill_during_verification(target, backup_dir, fb_password)
    kill_during_verification(target, backup_dir, fb_password)
    pending = [m for m in list_backups(backup_dir) if m.status == Status.UNVERIFIED]
    assert len(pending) == 2
    assert looks_finished(backup_dir) == [good.file]  # never an unverified one

    outcomes = run_pending_verifications(target, settings, clock=CLOCK)
    assert [o.succeeded for o in outcomes] == [True, True]
    reports = [o.to_report(trigger="resume") for o in outcomes]
    for report, manifest in zip(reports, pending, strict=True):
        assert report.kind == RunKind.BACKUP and report.trigger == "resume"
        assert isinstance(report.details, BackupDetails)
        assert Path(report.details.file).name == manifest.file.removesuffix(UNVERIFIED_SUFFIX)
        assert report.finished_at == manifest.finished
    # then retention, with them counted: one good backup per day is kept
    pruned = {c.file for c in reports[-1].file_changes}
    assert {c.state for c in reports[-1].file_changes} == {FileState.PRUNED}
    kept = list_backups(backup_dir)
    assert [m.status for m in kept] == [Status.GOOD]
    assert kept[0].file == pending[-1].file.removesuffix(UNVERIFIED_SUFFIX)
    assert pruned == {good.file, pending[0].file.removesuffix(UNVERIFIED_SUFFIX)}
    assert spool_leftovers(backup_dir) == []


def swept_bits_out_of_step(target: FirebirdTarget, password: str, path: Path) -> None:
    """A database whose pointer pages disagree with the swept bit of its data pages:
    Firebird validation reports warnings for that, no error."""
    con = fdb.create_database(
        f"create database 'localhost:{path}' user 'SYSDBA' password '{password}' page_size 4096"
    )
    con.execute_immediate("create table t (id int, v varchar(100))")
    con.commit()
    cur = con.cursor()
    cur.executemany("insert into t values (?, ?)", [(i, "x" * 50) for i in range(2000)])
    con.commit()
    cur.execute("select rdb$relation_id from rdb$relations where rdb$relation_name = 'T'")
    relation = cur.fetchone()[0]
    con.close()
    data = bytearray(path.read_bytes())
    marked = 0
    for offset in range(0, len(data), 4096):
        is_data_page = data[offset] == 5  # pag_type data page; dpg_relation at +20
        if is_data_page and struct.unpack_from("<H", data, offset + 20)[0] == relation:
            data[offset + 1] |= 0x08  # dpg_swept, while the pointer page says not swept
            marked += 1
            if marked == 2:
                break
    assert marked == 2
    path.write_bytes(bytes(data))


def test_validation_warnings_on_a_restored_copy_are_figures_not_a_failure(
    fb_root: Path, fb_password: str, backup_dir: Path
) -> None:
    spool = prepare_spool(backup_dir)
    copy = spool.scratch(".fdb")
    swept_bits_out_of_step(new_target(fb_root, fb_password, "unused"), fb_password, copy)
    target = FirebirdTarget("localhost", str(copy), "SYSDBA", fb_password)
    try:
        found = validate_copy(target, copy)
    finally:
        copy.unlink()
    assert (found.errors, found.warnings, found.source) == (0, 2, "firebird.log")
    assert found.lines[0].startswith("Warning: Pointer page")
    assert "0 errors and 2 warnings (Warning: Pointer page" in found.describe()
