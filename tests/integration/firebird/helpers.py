"""Helpers for the Firebird integration tests: restore a finished backup and read its balance."""

from __future__ import annotations

from pathlib import Path

from agent.firebird import nbackup
from agent.firebird.decompress import decompress_checked
from agent.firebird.files import Manifest, list_backups, prepare_spool, remove_quietly
from common.firebird.connection import FirebirdTarget, services
from common.firebird.restore import restore_fbk
from tests.support.shopsim import total_balance


def restored_balance(
    target: FirebirdTarget, backup_dir: Path, manifest: Manifest
) -> tuple[int, int]:
    """Restore `manifest`'s backup (from its final file) into scratch; return (accounts, total)."""
    spool = prepare_spool(backup_dir)
    by_file = {m.file: m for m in list_backups(backup_dir)}
    members = [by_file[f] for f in manifest.chain] + [manifest]
    raws: list[Path] = []
    database = spool.scratch(".fdb")
    try:
        for member in members:
            raw = spool.scratch(".raw")
            raws.append(raw)
            decompress_checked(
                backup_dir / member.file, raw, expected_sha256=member.sha256, mode=spool.file_mode
            )
        if manifest.method == "nbackup":
            with services(target) as svc:
                version = svc.get_server_version()
            nbackup.restore(target, spool, raws, database, server_version=version)
        else:
            restore_fbk(target, raws[0], database)
        return total_balance(target, str(database))
    finally:
        remove_quietly(*raws, database)


def final_files(backup_dir: Path) -> list[str]:
    """Names in backup.dir that look like finished backups (data or manifest)."""
    return sorted(
        p.name
        for p in backup_dir.iterdir()
        if p.name.startswith("storesafe-") and not p.name.endswith(".partial")
    )


def spool_leftovers(backup_dir: Path) -> list[str]:
    spool = backup_dir / ".storesafe-spool"
    return sorted(p.name for p in spool.iterdir() if p.name != "lock") if spool.exists() else []
