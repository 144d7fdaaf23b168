"""Bad input and faults against the real server: each ends as one typed, reported failure."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.domain.reports import BackupDetails, Outcome
from agent.firebird.files import list_backups
from agent.firebird.jobs import BackupSettings, JobOutcome, run_backup_job, run_validation_job
from agent.firebird.retention import RetentionPolicy
from common.clock import SystemClock
from common.firebird.connection import FirebirdTarget
from tests.integration.firebird.conftest import SHOP_ACCOUNTS, new_target
from tests.integration.firebird.helpers import final_files, spool_leftovers
from tests.support.shopsim import ShopWriter, total_balance

pytestmark = pytest.mark.firebird
KEEP_ALL = RetentionPolicy(0, 0, 0)


def backup(target: FirebirdTarget, backup_dir: Path, **settings: object) -> JobOutcome:
    return run_backup_job(
        target, BackupSettings(backup_dir, retention=KEEP_ALL, **settings), clock=SystemClock()
    )


def assert_failed(outcome: JobOutcome, error_class: str, password: str) -> None:
    assert outcome.error_class == error_class, outcome.error_message
    report = outcome.to_report()
    assert report.outcome == Outcome.FAILED
    assert report.error_message and "\n" not in report.error_message
    assert password not in repr(report.to_json())


def test_wrong_password(shop: FirebirdTarget, backup_dir: Path, fb_password: str) -> None:
    bad = dataclasses.replace(shop, password="wrong-" + fb_password)
    assert_failed(backup(bad, backup_dir), "firebird.auth", bad.password)
    assert final_files(backup_dir) == []


def test_missing_database(shop: FirebirdTarget, backup_dir: Path, fb_password: str) -> None:
    gone = dataclasses.replace(shop, database=str(Path(shop.database).with_name("gone.fdb")))
    assert_failed(backup(gone, backup_dir), "firebird.database_missing", fb_password)
    assert_failed(
        run_validation_job(gone, clock=SystemClock()), "firebird.database_missing", fb_password
    )


def test_non_ascii_database_path(shop: FirebirdTarget, backup_dir: Path, fb_password: str) -> None:
    odd = dataclasses.replace(shop, database=str(Path(shop.database).with_name("läden.fdb")))
    assert_failed(backup(odd, backup_dir), "firebird.non_ascii_path", fb_password)
    assert_failed(
        run_validation_job(odd, clock=SystemClock()), "firebird.non_ascii_path", fb_password
    )


def test_non_ascii_backup_dir(shop: FirebirdTarget, backup_dir: Path, fb_password: str) -> None:
    odd = backup_dir / "Sicherung-März"
    odd.mkdir()
    assert_failed(backup(shop, odd), "firebird.non_ascii_path", fb_password)


def test_firebird_not_reachable(shop: FirebirdTarget, backup_dir: Path, fb_password: str) -> None:
    nowhere = dataclasses.replace(shop, host="localhost/3059")
    assert_failed(backup(nowhere, backup_dir), "firebird.unreachable", fb_password)
    assert final_files(backup_dir) == []


def test_backup_dir_missing(shop: FirebirdTarget, backup_dir: Path, fb_password: str) -> None:
    assert_failed(backup(shop, backup_dir / "nope"), "backup.dir_missing", fb_password)


def test_backup_dir_read_only(shop: FirebirdTarget, fb_root: Path, fb_password: str) -> None:
    mount = fb_root / "readonly"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True)
    try:
        assert_failed(backup(shop, mount), "backup.dir_not_writable", fb_password)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_backup_dir_the_server_cannot_reach(
    shop: FirebirdTarget, backup_dir: Path, fb_password: str
) -> None:
    backup_dir.chmod(0o700)  # the agent (root) writes; the firebird user cannot enter
    outcome = backup(shop, backup_dir)
    assert_failed(outcome, "backup.dir_not_writable", fb_password)
    assert "server" in outcome.error_message
    assert final_files(backup_dir) == []
    assert spool_leftovers(backup_dir) == []


def test_disk_full_during_backup(shop: FirebirdTarget, tiny_fs: Path, fb_password: str) -> None:
    writer = ShopWriter(shop).start()
    try:
        outcome = backup(shop, tiny_fs)
    finally:
        stats = writer.stop()
    assert_failed(outcome, "disk.full", fb_password)
    assert final_files(tiny_fs) == []
    assert spool_leftovers(tiny_fs) == []  # partial files removed
    assert stats.errors == []  # the shop did not notice
    assert total_balance(shop)[0] == SHOP_ACCOUNTS


CHILD = """
import os, sys
from pathlib import Path
from common.firebird.connection import FirebirdTarget
from agent.firebird.jobs import BackupSettings, run_backup_job
from common.clock import SystemClock
target = FirebirdTarget("localhost", sys.argv[1], "SYSDBA", os.environ["STORESAFE_FB_PASSWORD"])
run_backup_job(target, BackupSettings(Path(sys.argv[2])), clock=SystemClock())
"""


def test_agent_killed_mid_backup(fb_root: Path, fb_password: str, backup_dir: Path) -> None:
    target = new_target(fb_root, fb_password, "big", accounts=100, filler_mb=25)
    env = {**os.environ, "STORESAFE_FB_PASSWORD": fb_password}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, target.database, str(backup_dir)],
        env=env,
        cwd=Path(__file__).parents[3],
    )
    spool = backup_dir / ".storesafe-spool"
    deadline = time.monotonic() + 60
    while not (spool.exists() and any(p.suffix == ".partial" for p in spool.iterdir())):
        assert child.poll() is None, "the backup ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert final_files(backup_dir) == []  # nothing unfinished carries a final name
    assert list_backups(backup_dir) == []

    outcome = backup(target, backup_dir)
    assert outcome.succeeded, outcome.error_message
    assert len(list_backups(backup_dir)) == 1
    assert isinstance(outcome.details, BackupDetails)
    assert outcome.details.table_counts["ITEMS"] == 25 * 1024  # > gbak's 10,000-row steps
    assert spool_leftovers(backup_dir) == []


def test_nbackup_level_without_its_base_is_refused_and_the_server_lives(
    shop: FirebirdTarget, backup_dir: Path, fb_password: str
) -> None:
    outcome = backup(shop, backup_dir, method="nbackup", level=1)
    assert_failed(outcome, "nbackup.precondition", fb_password)
    assert final_files(backup_dir) == []
    assert total_balance(shop)[0] == SHOP_ACCOUNTS  # CORE-6498 would have killed the server


def test_damaged_nbackup_base_fails_its_increment_and_is_marked_bad(
    shop: FirebirdTarget, backup_dir: Path, fb_password: str
) -> None:
    assert backup(shop, backup_dir, method="nbackup", level=0).succeeded
    [base] = list_backups(backup_dir)
    path = backup_dir / base.file
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))
    outcome = backup(shop, backup_dir, method="nbackup", level=1)
    assert_failed(outcome, "backup.corrupt", fb_password)
    statuses = {m.level: m.status.value for m in list_backups(backup_dir)}
    assert statuses == {0: "bad", 1: "unverified"}
    assert spool_leftovers(backup_dir) == []
