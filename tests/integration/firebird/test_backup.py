"""Hot backups verified by restore against the real server, with a shop writing meanwhile."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent.domain.reports import BackupDetails, Outcome, RunKind, ValidationDetails, Verification
from agent.firebird.files import Status, list_backups, prepare_spool
from agent.firebird.health import backup_state
from agent.firebird.jobs import BackupSettings, run_backup_job, run_validation_job, run_verify_job
from agent.firebird.retention import RetentionPolicy
from agent.firebird.verify import check_scratch_target
from common.clock import SystemClock
from common.firebird.connection import FirebirdTarget, attach
from common.firebird.errors import UnsafeRestoreTarget
from tests.integration.firebird.conftest import SHOP_ACCOUNTS, new_target
from tests.integration.firebird.helpers import restored_balance, spool_leftovers
from tests.support.damage import damage
from tests.support.shopsim import OPENING_BALANCE, ShopWriter

pytestmark = pytest.mark.firebird
KEEP_ALL = RetentionPolicy(0, 0, 0)
EXPECTED = (SHOP_ACCOUNTS, SHOP_ACCOUNTS * OPENING_BALANCE)


def backup_with_writer(target: FirebirdTarget, settings: BackupSettings):
    writer = ShopWriter(target).start()
    try:
        outcome = run_backup_job(target, settings, clock=SystemClock())
    finally:
        stats = writer.stop()
    assert stats.errors == []
    assert stats.transfers > 0
    return outcome


def test_gbak_backup_is_verified_while_the_shop_writes(
    shop: FirebirdTarget, backup_dir: Path
) -> None:
    outcome = backup_with_writer(shop, BackupSettings(backup_dir, retention=KEEP_ALL))
    assert outcome.error_message == ""
    report = outcome.to_report(trigger="manual")
    assert report.kind == RunKind.BACKUP and report.outcome == Outcome.SUCCEEDED
    details = report.details
    assert isinstance(details, BackupDetails)
    assert details.verification == Verification.PASSED
    assert details.checksum.startswith("sha256:")
    assert 0 < details.size_compressed < details.size_raw
    assert details.table_counts["ACCOUNTS"] == SHOP_ACCOUNTS
    assert details.health is not None and details.health.ods.startswith("12")
    assert details.firebird_version.startswith("LI-V3.0")
    [manifest] = list_backups(backup_dir)
    assert manifest.status == Status.GOOD
    assert Path(details.file).name == manifest.file
    assert restored_balance(shop, backup_dir, manifest) == EXPECTED
    assert spool_leftovers(backup_dir) == []


def test_nbackup_levels_0_and_1_are_verified_while_the_shop_writes(
    shop: FirebirdTarget, backup_dir: Path
) -> None:
    base = BackupSettings(backup_dir, method="nbackup", level=0, retention=KEEP_ALL)
    level0 = backup_with_writer(shop, base)
    assert level0.error_message == ""
    level1 = backup_with_writer(shop, dataclasses.replace(base, level=1))
    assert level1.error_message == ""
    assert isinstance(level1.details, BackupDetails)
    assert level1.details.level == 1 and level1.details.method == "nbackup"
    assert level1.details.verification == Verification.PASSED
    m0, m1 = list_backups(backup_dir)
    assert m1.chain == [m0.file]
    assert m1.size_raw < m0.size_raw
    for manifest in (m0, m1):
        assert manifest.status == Status.GOOD
        assert restored_balance(shop, backup_dir, manifest) == EXPECTED


def test_corrupted_backup_is_caught_kept_and_marked_bad(
    shop: FirebirdTarget, backup_dir: Path
) -> None:
    settings = BackupSettings(backup_dir, retention=KEEP_ALL)
    assert run_backup_job(shop, settings, clock=SystemClock()).succeeded
    [manifest] = list_backups(backup_dir)
    path = backup_dir / manifest.file
    damage(path)  # bit rot after the file was written
    data = path.read_bytes()

    outcome = run_verify_job(shop, settings, manifest.name, clock=SystemClock())
    assert outcome.error_class == "backup.corrupt"
    assert isinstance(outcome.details, BackupDetails)
    assert outcome.details.verification == Verification.FAILED
    [bad] = list_backups(backup_dir)
    assert bad.status == Status.BAD and bad.bad_reason
    assert bad.file == manifest.file + ".bad"
    assert (backup_dir / bad.file).read_bytes() == data  # kept for inspection
    assert not path.exists()
    assert spool_leftovers(backup_dir) == []


def test_stalled_database_is_detected_and_ended_safely(
    fb_root: Path, fb_password: str, backup_dir: Path
) -> None:
    target = new_target(fb_root, fb_password, "stalled", accounts=50)
    with attach(target) as con:
        con.execute_immediate("ALTER DATABASE BEGIN BACKUP")  # what a crashed nbackup leaves
        con.commit()
        assert backup_state(con) == 1
    outcome = run_backup_job(
        target, BackupSettings(backup_dir, method="nbackup"), clock=SystemClock()
    )
    assert outcome.error_message == ""
    assert isinstance(outcome.details, BackupDetails)
    assert any("stalled" in p for p in outcome.details.problems)
    with attach(target) as con:
        assert backup_state(con) == 0
    [manifest] = list_backups(backup_dir)
    assert restored_balance(target, backup_dir, manifest) == (50, 50 * OPENING_BALANCE)


def test_online_validation_of_the_live_database(shop: FirebirdTarget) -> None:
    outcome = run_validation_job(shop, clock=SystemClock())
    report = outcome.to_report()
    assert report.kind == RunKind.VALIDATION and report.outcome == Outcome.SUCCEEDED
    assert isinstance(report.details, ValidationDetails)
    assert report.details.errors == 0


def test_restore_targets_outside_scratch_or_attached_are_refused(
    shop: FirebirdTarget, backup_dir: Path
) -> None:
    spool = prepare_spool(backup_dir)
    with pytest.raises(UnsafeRestoreTarget):
        check_scratch_target(shop, spool, Path(shop.database))
    with pytest.raises(UnsafeRestoreTarget):
        check_scratch_target(shop, spool, backup_dir / "elsewhere.fdb")
    with pytest.raises(UnsafeRestoreTarget):
        check_scratch_target(shop, spool, spool.path / ".." / ".." / "db" / "shop.fdb")
    check_scratch_target(shop, spool, spool.scratch(".fdb"))


def test_retention_after_a_good_backup(shop: FirebirdTarget, backup_dir: Path) -> None:
    settings = BackupSettings(backup_dir, retention=RetentionPolicy(1, 0, 0))
    foreign = backup_dir / "shop-copy-by-hand.fbk"
    foreign.write_bytes(b"not the agent's")
    first = run_backup_job(shop, settings, clock=SystemClock())
    second = run_backup_job(shop, settings, clock=SystemClock())
    assert first.succeeded and second.succeeded
    [kept] = list_backups(backup_dir)
    assert isinstance(second.details, BackupDetails)
    assert Path(second.details.file).name == kept.file
    assert len(second.deleted) == 1
    assert foreign.exists()
