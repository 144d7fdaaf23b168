"""The test restore through a named pipe (Linux): the server restores as the agent decompresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.firebird import decompress, gbak, pipes
from agent.firebird.files import Manifest, list_backups, prepare_spool
from agent.firebird.jobs import BackupSettings, run_backup_job
from agent.firebird.retention import RetentionPolicy
from agent.firebird.verify import VerifyResult, verify
from common.clock import SystemClock
from common.firebird.connection import FirebirdTarget
from common.firebird.errors import BackupCorrupt, RestoreFailed
from tests.integration.firebird.conftest import SHOP_ACCOUNTS
from tests.integration.firebird.helpers import spool_leftovers
from tests.support.damage import damage
from tests.support.shopsim import total_balance

pytestmark = [
    pytest.mark.firebird,
    pytest.mark.skipif(not pipes.SUPPORTED, reason="named pipes are POSIX only"),
]


@pytest.fixture
def backup(shop: FirebirdTarget, backup_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Manifest:
    """A fresh, unverified gbak backup of the shop; from here on nothing decompresses to a file."""
    settings = BackupSettings(backup_dir, verify=False, retention=RetentionPolicy(0, 0, 0))
    assert run_backup_job(shop, settings, clock=SystemClock()).succeeded
    [manifest] = list_backups(backup_dir)

    def no_scratch_copy(*args: object, **kwargs: object) -> int:
        raise AssertionError("the gbak restore wrote a decompressed copy to disk")

    monkeypatch.setattr(decompress, "decompress_checked", no_scratch_copy)
    return manifest


def verify_in(target: FirebirdTarget, backup_dir: Path, manifest: Manifest) -> VerifyResult:
    spool = prepare_spool(backup_dir)
    return verify(target, spool, manifest, backups=[manifest], server_version="")


def test_a_good_backup_verifies_through_the_pipe(
    shop: FirebirdTarget, backup_dir: Path, backup: Manifest
) -> None:
    result = verify_in(shop, backup_dir, backup)
    assert result.restored_counts["ACCOUNTS"] == SHOP_ACCOUNTS
    assert result.restored_counts == backup.table_counts
    assert spool_leftovers(backup_dir) == []


@pytest.mark.parametrize("how", ["flipped byte", "truncated"])
def test_a_damaged_backup_is_corrupt_before_the_server_reads_it_and_leaves_nothing(
    shop: FirebirdTarget, backup_dir: Path, backup: Manifest, how: str
) -> None:
    # Checked whole first: a restore cut short made Firebird 3 drop its service
    # connection, and the next connection was sometimes rejected (the assert below).
    damage(backup_dir / backup.file, how)
    with pytest.raises(BackupCorrupt) as caught:
        verify_in(shop, backup_dir, backup)
    assert caught.value.file == backup.file
    assert spool_leftovers(backup_dir) == []  # neither the pipe nor the scratch database
    assert total_balance(shop)[0] == SHOP_ACCOUNTS  # the server carries on


def test_a_failed_restore_is_the_servers_error_and_leaves_no_pipe(
    shop: FirebirdTarget, backup_dir: Path, backup: Manifest
) -> None:
    spool = prepare_spool(backup_dir)
    database = spool.scratch(".fdb")
    src = backup_dir / backup.file
    try:
        counts = gbak.restore_compressed(shop, spool, src, database, expected_sha256=backup.sha256)
        assert counts["ACCOUNTS"] == SHOP_ACCOUNTS
        with pytest.raises(RestoreFailed, match="already exists"):  # the server stops reading
            gbak.restore_compressed(shop, spool, src, database, expected_sha256=backup.sha256)
        assert spool_leftovers(backup_dir) == [database.name]
    finally:
        database.unlink(missing_ok=True)
