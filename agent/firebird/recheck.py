"""Kept backups checked again: checksums on a schedule, a restore now and then, kills resumed.

A backup verified once can rot on disk (one flipped byte), and a kill during
verification leaves a complete backup that nothing verified. So:

- `run_recheck_job` (on `backup.recheck_schedule`, daily by default) reads
  every kept good backup again at idle CPU priority and compares it with the
  checksum in its manifest; once a week (`RESTORE_EVERY`) it also verifies
  the newest good backup by a full restore. A damaged one is marked bad
  (renamed `.bad`: retention never counts it as good, and it is never the
  newest good one); a data file gone without retention deleting it is
  missing. Each is reported to the server as a file change of its backup run.
- `run_pending_verifications` (at the agent's start) verifies the backups a
  kill left `.unverified`, oldest first, and reports each as the backup run
  that never got reported; then retention runs with them counted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
from pathlib import Path

from agent.domain.reports import FileChange, FileCheckDetails, FileState, RunKind
from agent.firebird.decompress import sha256_file
from agent.firebird.files import (
    NAME_RE,
    UNVERIFIED_SUFFIX,
    Manifest,
    Spool,
    Status,
    clean_spool,
    final_file,
    job_lock,
    list_backups,
    mark_bad,
    prepare_spool,
    read_manifest,
    recover_names,
    remove_quietly,
)
from agent.firebird.health import read_live
from agent.firebird.jobs import VERDICTS, BackupSettings, JobRun, prune, verify_and_mark
from agent.firebird.outcome import JobOutcome
from agent.priority import run_niced
from common.clock import Clock
from common.firebird.connection import FirebirdTarget
from common.firebird.errors import BackupCorrupt, FirebirdJobError

log = logging.getLogger(__name__)

RESTORE_EVERY = dt.timedelta(days=7)


@dataclasses.dataclass
class _Check:
    """What one re-check found so far."""

    changes: list[FileChange] = dataclasses.field(default_factory=list)
    checked: int = 0
    bytes_checked: int = 0
    restored: str = ""

    def damaged(self, manifest: Manifest, reason: str, backup_dir: Path) -> None:
        name = final_file(manifest.file)
        if manifest.status != Status.BAD:
            mark_bad(backup_dir, manifest, reason)
        log.error("backup %s is damaged: %s", name, reason)
        self.changes.append(FileChange(name, FileState.DAMAGED, reason))

    def details(self) -> FileCheckDetails:
        bad = [c for c in self.changes if c.state in (FileState.DAMAGED, FileState.MISSING)]
        summary = (
            f"{self.checked} kept backups match their checksums"
            if not bad
            else "; ".join(c.reason for c in bad[:3])
        )
        if self.restored and not bad:
            summary += f"; {self.restored} restored and validated"
        return FileCheckDetails(
            files_checked=self.checked,
            bytes_checked=self.bytes_checked,
            files_damaged=len(bad),
            restored=self.restored,
            summary=summary,
        )


def run_recheck_job(
    target: FirebirdTarget,
    settings: BackupSettings,
    *,
    clock: Clock,
    restore_every: dt.timedelta = RESTORE_EVERY,
) -> JobOutcome:
    """Check every kept good backup's checksum, and restore the newest good one if due."""
    started = clock.now()
    check = _Check()
    error: FirebirdJobError | None = None
    try:
        spool = prepare_spool(settings.backup_dir, server_user=settings.server_user)
        with job_lock(spool):
            try:
                clean_spool(spool)
                recover_names(settings.backup_dir)
                _checksums(settings.backup_dir, check)
                _missing(settings.backup_dir, check)
                _restore_if_due(target, settings, spool, check, clock, restore_every)
            finally:
                clean_spool(spool)
    except FirebirdJobError as exc:
        error = exc
    except Exception as exc:  # unexpected: reported, never lost
        log.exception("backup file check failed unexpectedly")
        error = FirebirdJobError(f"The backup file check failed unexpectedly: {exc}.")
    details = check.details()
    if error is None and details.files_damaged:
        error = BackupCorrupt(f"{details.files_damaged} kept backup(s) damaged: {details.summary}.")
    return JobOutcome(
        kind=RunKind.FILE_CHECK,
        started_at=started,
        finished_at=clock.now(),
        details=details,
        file_changes=tuple(check.changes),
        error_class=error.error_class if error else "",
        error_message=error.message if error else "",
    )


def _checksums(backup_dir: Path, check: _Check) -> None:
    for manifest in list_backups(backup_dir):
        if manifest.status != Status.GOOD:
            continue
        path = backup_dir / manifest.file
        try:
            digest = run_niced(functools.partial(sha256_file, path), idle=True)
            size = path.stat().st_size
        except FileNotFoundError:
            continue  # deleted meanwhile: the missing check sees it
        except OSError as exc:
            check.damaged(manifest, f"{manifest.file} cannot be read ({exc.strerror})", backup_dir)
            continue
        check.checked += 1
        check.bytes_checked += size
        if digest != manifest.sha256:
            check.damaged(
                manifest,
                f"{manifest.file} no longer matches its checksum "
                f"(sha256 {digest[:12]}, recorded {manifest.sha256[:12]})",
                backup_dir,
            )


def _missing(backup_dir: Path, check: _Check) -> None:
    """Manifests whose data file is gone: reported missing, the manifest removed."""
    for entry in sorted(backup_dir.iterdir()):
        if not NAME_RE.match(entry.name):
            continue
        manifest = read_manifest(entry)
        if manifest is None or (backup_dir / manifest.file).exists():
            continue
        if (backup_dir / (manifest.file + UNVERIFIED_SUFFIX)).exists():
            continue
        if manifest.status == Status.UNVERIFIED:  # a kill before its file left the spool
            remove_quietly(entry)
            continue
        name = final_file(manifest.file)
        reason = f"{name} is gone from backup.dir (not deleted by retention)"
        log.error("backup %s is missing: %s", name, reason)
        check.changes.append(FileChange(name, FileState.MISSING, reason))
        remove_quietly(entry)


def _restore_if_due(  # noqa: PLR0917
    target: FirebirdTarget,
    settings: BackupSettings,
    spool: Spool,
    check: _Check,
    clock: Clock,
    every: dt.timedelta,
) -> None:
    backups = list_backups(settings.backup_dir)
    newest = next((m for m in reversed(backups) if m.status == Status.GOOD), None)
    if newest is None or not _restore_due(newest, clock.now(), every):
        return
    run = JobRun(settings=settings, target=target, manifest=newest)
    run.health = read_live(target)[0]
    try:
        verify_and_mark(run, spool, newest, backups, clock)
    except VERDICTS as exc:
        damaged = exc.file if isinstance(exc, BackupCorrupt) and exc.file else newest.file
        victim = next((m for m in backups if m.file == damaged), newest)
        check.damaged(victim, exc.message, settings.backup_dir)
        return
    check.restored = newest.file


def _restore_due(manifest: Manifest, now: dt.datetime, every: dt.timedelta) -> bool:
    try:
        verified = dt.datetime.fromisoformat(manifest.verified_at or manifest.finished_at)
    except ValueError:
        return True
    return now - verified >= every


def run_pending_verifications(
    target: FirebirdTarget, settings: BackupSettings, *, clock: Clock
) -> list[JobOutcome]:
    """Verify the backups a kill left unverified (oldest first), then apply retention.

    Each becomes the backup run it would have been, dated as the backup was
    taken, with trigger "resume". A failure that says nothing about a backup
    (Firebird down) stops here: the rest wait for the next start or backup.
    """
    outcomes: list[JobOutcome] = []
    spool = prepare_spool(settings.backup_dir, server_user=settings.server_user)
    with job_lock(spool):
        try:
            clean_spool(spool)
            recover_names(settings.backup_dir)
            pending = [m for m in list_backups(settings.backup_dir) if _pending(m)]
            for manifest in pending:
                outcome = _verify_pending(target, settings, spool, manifest, clock)
                if outcome is None:
                    break
                outcomes.append(outcome)
            if outcomes:
                pruned = prune(settings.backup_dir, settings.retention, protect=set())
                outcomes[-1] = dataclasses.replace(outcomes[-1], file_changes=tuple(pruned))
        finally:
            clean_spool(spool)
    return outcomes


def _pending(manifest: Manifest) -> bool:
    return manifest.status == Status.UNVERIFIED and manifest.file.endswith(UNVERIFIED_SUFFIX)


def _verify_pending(
    target: FirebirdTarget, settings: BackupSettings, spool: Spool, manifest: Manifest, clock: Clock
) -> JobOutcome | None:
    run = JobRun(settings=settings, target=target, manifest=manifest)
    error: FirebirdJobError | None = None
    try:
        run.health = read_live(target)[0]
        verify_and_mark(run, spool, manifest, list_backups(settings.backup_dir), clock)
    except VERDICTS as exc:
        error = exc
    except FirebirdJobError as exc:
        log.warning("backup %s stays unverified for now: %s", manifest.file, exc.message)
        return None
    log.info(
        "backup %s left unverified by an interrupted job: %s",
        manifest.name,
        "verified" if error is None else f"damaged ({error.message})",
    )
    return JobOutcome(
        kind=RunKind.BACKUP,
        started_at=dt.datetime.fromisoformat(manifest.started_at),
        finished_at=manifest.finished,
        details=run.details(),
        error_class=error.error_class if error else "",
        error_message=error.message if error else "",
        report_id=manifest.run_id,  # the backup run this verification finishes
    )
