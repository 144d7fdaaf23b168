"""Verification of a finished backup: restore from the final file into scratch, validate, compare.

A backup is good only when all of this passed (DESIGN.md, notes must-know 2):
the compressed file still matches its checksum, it restores into a scratch
database (only ever a fresh path inside the spool folder that nothing has
attached), Firebird's full validation of the restored copy is clean, its
tables and indices are those of the live database, and its row counts match
those captured at backup time. The scratch files are always removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from agent.firebird import gbak, nbackup
from agent.firebird.decompress import decompress_niced
from agent.firebird.files import Manifest, Spool, remove_quietly
from common.firebird.connection import FirebirdTarget, attach, services
from common.firebird.errors import (
    BackupCorrupt,
    CountMismatch,
    SchemaMismatch,
    UnsafeRestoreTarget,
    translate,
)
from common.firebird.findings import Findings
from common.firebird.schema import Schema, count_rows, read_schema
from common.firebird.validation import validate_copy

log = logging.getLogger(__name__)

DROP_RATIO = 0.5  # a table at half its rows of the previous good backup is a problem
DROP_MIN_ROWS = 100


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    seconds: float
    restored_counts: dict[str, int]
    message: str
    findings: Findings = dataclasses.field(default_factory=Findings)


def verify(
    target: FirebirdTarget,
    spool: Spool,
    manifest: Manifest,
    *,
    backups: list[Manifest],
    server_version: str,
    count_tolerance: float = 0.0,
) -> VerifyResult:
    """Verify `manifest`'s backup; raise a typed error saying what is wrong with it.

    `backups` are the listed manifests (for an nbackup chain's lower levels).
    `count_tolerance` is the fraction by which counts may differ (0 for gbak,
    whose counts come from the very snapshot it backed up).
    """
    started = time.monotonic()
    chain = [_find(backups, name) for name in manifest.chain] + [manifest]
    scratch: list[Path] = []
    database = spool.scratch(".fdb")
    try:
        restored = _restore(
            target, spool, chain, database, scratch=scratch, server_version=server_version
        )
        findings = validate_copy(target, database)
        with attach(target, str(database), what="reading the restored copy") as con:
            schema = read_schema(con)
            if manifest.method == "nbackup":
                restored = count_rows(con, schema.tables)
        expected = Schema(tuple(manifest.tables), tuple(manifest.indices))
        if diffs := expected.differences(schema):
            raise SchemaMismatch(
                "The restored copy differs from the live database: " + "; ".join(diffs) + "."
            )
        counts = {t: restored.get(t, 0) for t in schema.tables}
        compare_counts(
            manifest.table_counts,
            counts,
            tolerance=count_tolerance,
            after=manifest.table_counts_after,
        )
    finally:
        remove_quietly(*scratch, database)
    rows = sum(counts.values())
    return VerifyResult(
        seconds=time.monotonic() - started,
        restored_counts=counts,
        message=f"Restored {len(counts)} tables with {rows} rows; validation "
        + (f"found {findings.describe()}." if not findings.clean else "clean."),
        findings=findings,
    )


def _restore(
    target: FirebirdTarget,
    spool: Spool,
    chain: list[Manifest],
    database: Path,
    *,
    scratch: list[Path],
    server_version: str,
) -> dict[str, int]:
    """Restore `chain` (lower levels first) into `database`; the restore's counts (gbak only).

    A gbak backup is decompressed while the server restores it (through a pipe
    where the platform has them); an nbackup chain is decompressed into
    `scratch` files first, which are removed once restored.
    """
    top = chain[-1]
    if top.method != "nbackup":
        check_scratch_target(target, spool, database)
        with _reading(top):
            return gbak.restore_compressed(
                target, spool, spool.backup_dir / top.file, database, expected_sha256=top.sha256
            )
    for member in chain:
        raw = spool.scratch(".nbk")
        scratch.append(raw)
        with _reading(member):
            decompress_niced(
                spool.backup_dir / member.file,
                raw,
                expected_sha256=member.sha256,
                mode=spool.file_mode,
            )
    check_scratch_target(target, spool, database)
    nbackup.restore(target, spool, scratch, database, server_version=server_version)
    remove_quietly(*scratch)
    return {}


@contextlib.contextmanager
def _reading(member: Manifest) -> Iterator[None]:
    """Errors reading `member`'s file, told as what they say about the backup."""
    try:
        yield
    except FileNotFoundError as exc:
        raise BackupCorrupt(f"The backup file {member.file} has disappeared.") from exc
    except BackupCorrupt as exc:
        exc.file = member.file
        raise
    except OSError as exc:
        raise translate(exc, what="decompressing the backup") from exc


def _find(backups: list[Manifest], file: str) -> Manifest:
    for m in backups:
        if m.file == file:
            return m
    raise BackupCorrupt(f"The lower-level backup {file} this backup builds on is missing.")


def check_scratch_target(target: FirebirdTarget, spool: Spool, database: Path) -> None:
    """Refuse any restore target outside the spool folder, existing, or attached."""
    real = Path(os.path.realpath(database))
    home = Path(os.path.realpath(spool.path))
    if real.parent != home:
        raise UnsafeRestoreTarget(f"Refusing to restore into {database}: not a scratch path.")
    if real.exists():
        raise UnsafeRestoreTarget(f"Refusing to restore over existing file {database}.")
    live = os.path.normcase(os.path.realpath(target.database))
    with services(target, what="listing attached databases") as svc:
        attached = {os.path.normcase(str(n)) for n in svc.get_attached_database_names()}
    if os.path.normcase(str(real)) in attached or os.path.normcase(str(real)) == live:
        raise UnsafeRestoreTarget(f"Refusing to restore into attached database {database}.")


def compare_counts(
    expected: dict[str, int],
    actual: dict[str, int],
    *,
    tolerance: float,
    after: dict[str, int] | None = None,
) -> None:
    """Raise CountMismatch when a table's restored rows lie outside what the live database had.

    `expected` was read before the backup and `after` (if given) right after it:
    the restored count must lie between the two, give or take `tolerance` of it.
    """
    bad: list[str] = []
    for table, want in sorted(expected.items()):
        got = actual.get(table)
        later = (after or {}).get(table, want)
        low, high = min(want, later), max(want, later)
        slack = tolerance * max(high, 1)
        if got is None:
            bad.append(f"{table} missing")
        elif not low - slack <= got <= high + slack:
            shown = f"{want}" if low == high else f"{low}-{high}"
            bad.append(f"{table} {got} rows, expected {shown}")
    if bad:
        raise CountMismatch(
            "The restored copy's row counts differ from the live database's: "
            + "; ".join(bad[:5])
            + "."
        )


def drop_problems(previous: dict[str, int], current: dict[str, int]) -> list[str]:
    """Tables that lost most of their rows since the previous good backup."""
    out: list[str] = []
    for table, before in sorted(previous.items()):
        if before < DROP_MIN_ROWS:
            continue
        now = current.get(table)
        if now is None:
            out.append(f"Table {table} ({before} rows in the last good backup) is gone.")
        elif now < before * DROP_RATIO:
            out.append(
                f"Table {table} dropped from {before} to {now} rows since the last "
                "good backup; check the configured database."
            )
    return out
