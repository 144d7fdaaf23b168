"""The backup job (backup, verify, retention, health) and the re-verify job, as outcomes.

The scheduler calls `run_backup_job` / `run_validation_job` and turns the
returned outcome into a `RunReport` with `to_report`. Every failure becomes a
stable `error_class` and one sentence for the technician; nothing raises out
of a job except programming errors in the caller's arguments.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import uuid
from pathlib import Path

from agent.domain.reports import (
    BackupDetails,
    FileChange,
    FileState,
    FirebirdHealth,
    RunKind,
    Verification,
)
from agent.firebird import gbak, nbackup
from agent.firebird.files import (
    UNVERIFIED_SUFFIX,
    Manifest,
    Spool,
    Status,
    backup_name,
    clean_spool,
    data_suffix,
    final_file,
    job_lock,
    list_backups,
    mark_bad,
    mark_good,
    prepare_spool,
    publish,
    recover_names,
    remove_quietly,
    write_manifest,
)
from agent.firebird.health import BACKUP_STATE_NORMAL, health_problems, read_live
from agent.firebird.outcome import JobOutcome
from agent.firebird.retention import BackupEntry, RetentionPolicy, plan_deletions
from agent.firebird.stream import Compressed
from agent.firebird.validate import run_validation_job
from agent.firebird.verify import drop_problems, verify
from common.clock import Clock
from common.errors import InvalidArgument
from common.firebird.connection import FirebirdTarget, require_ascii
from common.firebird.errors import (
    BackupCorrupt,
    CountMismatch,
    FirebirdJobError,
    RestoreFailed,
    SchemaMismatch,
    ValidationFailed,
)
from common.firebird.schema import Schema

log = logging.getLogger(__name__)
NBACKUP_COUNT_TOLERANCE = 0.02  # nbackup counts are read beside, not inside, the backup
MAX_PROBLEMS = 10
METHODS = ("gbak", "nbackup")
MAX_LEVEL = 9  # the manifest name pattern holds one digit
VERDICTS = (BackupCorrupt, CountMismatch, RestoreFailed, SchemaMismatch, ValidationFailed)


@dataclasses.dataclass(frozen=True)
class BackupSettings:
    """The `backup.*` settings one job needs."""

    backup_dir: Path
    method: str = "gbak"  # gbak | nbackup
    level: int = 0  # nbackup level
    retention: RetentionPolicy = dataclasses.field(default_factory=RetentionPolicy)
    verify: bool = True
    server_user: str = "firebird"  # OS user of the Firebird server (spool permissions)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgument(f"backup.method must be one of {', '.join(METHODS)}.")
        if not 0 <= self.level <= MAX_LEVEL:
            raise InvalidArgument(f"The nbackup level must be between 0 and {MAX_LEVEL}.")


BackupOutcome = JobOutcome
__all__ = [
    "VERDICTS",
    "BackupOutcome",
    "BackupSettings",
    "JobOutcome",
    "JobRun",
    "Pruned",
    "apply_retention",
    "prune",
    "run_backup_job",
    "run_validation_job",
    "run_verify_job",
    "verify_and_mark",
]


@dataclasses.dataclass
class JobRun:
    """What a backup job has learned so far (turned into BackupDetails at the end)."""

    settings: BackupSettings
    target: FirebirdTarget
    # the id of this run's report, also kept in the backup's manifest (an off-site copy names it)
    run_id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    problems: list[str] = dataclasses.field(default_factory=list)
    health: FirebirdHealth | None = None
    manifest: Manifest | None = None
    verification: Verification = Verification.NOT_RUN
    verification_seconds: float = 0.0
    verification_message: str = ""
    validation_errors: int = 0
    validation_warnings: int = 0
    backup_seconds: float = 0.0
    deleted: tuple[str, ...] = ()
    file_changes: tuple[FileChange, ...] = ()

    def details(self) -> BackupDetails:
        m = self.manifest
        return BackupDetails(
            method=m.method if m else self.settings.method,
            level=m.level
            if m
            else (self.settings.level if self.settings.method == "nbackup" else 0),
            file=m.file if m else "",  # a bare name in backup.dir (the server refuses paths)
            size_raw=m.size_raw if m else 0,
            size_compressed=m.size_compressed if m else 0,
            checksum=f"sha256:{m.sha256}" if m else "",
            raw_checksum=f"sha256:{m.raw_sha256}" if m and m.raw_sha256 else "",
            verification=self.verification,
            verification_seconds=round(self.verification_seconds, 3),
            verification_message=self.verification_message,
            table_counts=dict(m.table_counts) if m else {},
            firebird_version=self.health.server_version if self.health else "",
            database=self.target.database,
            health=self.health,
            problems=tuple(self.problems[:MAX_PROBLEMS]),
            backup_seconds=round(self.backup_seconds, 3),
            validation_errors=self.validation_errors,
            validation_warnings=self.validation_warnings,
        )


def run_backup_job(target: FirebirdTarget, settings: BackupSettings, *, clock: Clock) -> JobOutcome:
    """Back up the live database, verify the backup by restore, apply retention."""
    started = clock.now()
    run = JobRun(settings=settings, target=target)
    error: FirebirdJobError | None = None
    try:
        require_ascii(target.database, what="database")
        require_ascii(str(settings.backup_dir), what="backup.dir")
        spool = prepare_spool(settings.backup_dir, server_user=settings.server_user)
        with job_lock(spool):
            try:
                clean_spool(spool)
                recover_names(settings.backup_dir)
                _backup_verify_retain(run, spool, clock)
            finally:
                clean_spool(spool)
    except FirebirdJobError as exc:
        error = exc
    except Exception as exc:  # unexpected: reported, never lost
        log.exception("backup job failed unexpectedly")
        error = FirebirdJobError(f"The backup job failed unexpectedly: {exc}.")
    return JobOutcome(
        kind=RunKind.BACKUP,
        started_at=started,
        finished_at=clock.now(),
        details=run.details(),
        deleted=run.deleted,
        file_changes=run.file_changes,
        error_class=error.error_class if error else "",
        error_message=error.message if error else "",
        report_id=run.run_id,
    )


@dataclasses.dataclass(frozen=True)
class _Taken:
    """A backup file in the spool and what was read from the live database around it."""

    compressed: Compressed
    health: FirebirdHealth
    schema: Schema
    counts: dict[str, int]
    counts_after: dict[str, int]
    chain: list[str]
    guid: str
    seconds: float


def _live_state(run: JobRun) -> tuple[FirebirdHealth, Schema, dict[str, int]]:
    """Health, schema (and for nbackup row counts); ends a stalled nbackup state first."""
    counts = run.settings.method == "nbackup"
    health, schema, rows = read_live(run.target, counts=counts)
    if health.backup_state != BACKUP_STATE_NORMAL:  # left behind by a crashed nbackup
        if stalled := nbackup.end_stalled(run.target):
            run.problems.append(stalled)
        health, schema, rows = read_live(run.target, counts=counts)
    return health, schema, rows


def _take_gbak(run: JobRun, spool: Spool, partial: Path) -> _Taken:
    # The live figures first (about 20 ms). Read while gbak started, they collided
    # with it in Firebird's lock manager in about half the runs, and one of the two
    # waited a whole second. gbak's own log gives the row counts of the very
    # snapshot it backed up.
    health, schema, _ = _live_state(run)
    gb = gbak.backup(run.target, spool, partial)
    counts = {t: gb.counts.get(t, 0) for t in schema.tables}
    return _Taken(gb.compressed, health, schema, counts, {}, [], "", gb.seconds)


def _take_nbackup(run: JobRun, spool: Spool, partial: Path, before: list[Manifest]) -> _Taken:
    health, schema, counts = _live_state(run)  # preconditions first (CORE-6498)
    nb = nbackup.backup(
        run.target,
        spool,
        partial,
        level=run.settings.level,
        backups=before,
        server_version=health.server_version,
    )
    after = read_live(run.target, counts=True)[2]
    return _Taken(nb.compressed, health, schema, counts, after, nb.chain, nb.guid, nb.seconds)


def _backup_verify_retain(run: JobRun, spool: Spool, clock: Clock) -> None:
    settings, target = run.settings, run.target
    nbackup_job = settings.method == "nbackup"
    before = list_backups(settings.backup_dir)
    run.problems.extend(_space_problems(settings.backup_dir, before))
    started_at = clock.now()
    name = backup_name(target.database, settings.method, settings.level, started_at)
    final_name = name + data_suffix(settings.method)
    unverified = final_name + UNVERIFIED_SUFFIX  # its name until verification passed
    partial = spool.partial(final_name)
    if nbackup_job:
        taken = _take_nbackup(run, spool, partial, before)
    else:
        taken = _take_gbak(run, spool, partial)
    health, compressed = taken.health, taken.compressed
    run.health, run.backup_seconds = health, taken.seconds
    run.problems.extend(health_problems(health))
    manifest = Manifest(
        name=name,
        file=unverified,
        database=target.database,
        method=settings.method,
        level=settings.level if nbackup_job else 0,
        started_at=started_at.isoformat(),
        finished_at=clock.now().isoformat(),
        firebird_version=health.server_version,
        ods=health.ods,
        page_size=health.page_size,
        database_size=health.size_bytes,
        size_raw=compressed.size_raw,
        size_compressed=compressed.size_compressed,
        sha256=compressed.sha256,
        raw_sha256=compressed.raw_sha256,
        run_id=run.run_id,
        table_counts=taken.counts,
        table_counts_after=taken.counts_after,
        tables=list(taken.schema.tables),
        indices=list(taken.schema.indices),
        chain=taken.chain,
        nbackup_guid=taken.guid,
    )
    write_manifest(settings.backup_dir, manifest)
    publish(partial, settings.backup_dir / unverified)
    run.manifest = manifest
    if settings.verify:
        verify_and_mark(run, spool, manifest, before, clock)
    pruned = prune(settings.backup_dir, settings.retention, protect={manifest.name})
    run.file_changes = tuple(pruned)
    run.deleted = tuple(sorted(c.name for c in pruned))


def verify_and_mark(
    run: JobRun, spool: Spool, manifest: Manifest, before: list[Manifest], clock: Clock
) -> None:
    """Verify `manifest`'s backup: good ones get their final name, damaged ones `.bad`.

    Raises the typed error when verification failed (a VERDICTS one when the
    backup itself is wrong, after marking the damaged file bad).
    """
    tolerance = NBACKUP_COUNT_TOLERANCE if manifest.method == "nbackup" else 0.0
    try:
        result = verify(
            run.target,
            spool,
            manifest,
            backups=before,
            server_version=run.health.server_version if run.health else "",
            count_tolerance=tolerance,
        )
    except FirebirdJobError as exc:
        run.verification = Verification.FAILED
        run.verification_message = exc.message
        if isinstance(exc, ValidationFailed):
            run.validation_errors, run.validation_warnings = exc.errors, exc.warnings
        if isinstance(exc, VERDICTS):  # the backup itself is wrong, not the run
            damaged = exc.file if isinstance(exc, BackupCorrupt) and exc.file else manifest.file
            victim = next((m for m in [*before, manifest] if m.file == damaged), manifest)
            mark_bad(run.settings.backup_dir, victim, exc.message)
        raise
    run.verification = Verification.PASSED
    run.verification_seconds = result.seconds
    run.verification_message = result.message
    run.validation_warnings = result.findings.warnings
    previous = next(
        (
            m
            for m in reversed(before)
            if m.status == Status.GOOD and m.database == manifest.database
        ),
        None,
    )
    if previous is not None:
        run.problems.extend(drop_problems(previous.table_counts, manifest.table_counts))
    manifest.verified_at = clock.now().isoformat()
    manifest.verification_seconds = round(result.seconds, 3)
    mark_good(run.settings.backup_dir, manifest)


def run_verify_job(
    target: FirebirdTarget, settings: BackupSettings, name: str, *, clock: Clock
) -> JobOutcome:
    """Verify an existing backup again (e.g. before relying on it); damaged ones are marked bad."""
    started = clock.now()
    run = JobRun(settings=settings, target=target)
    error: FirebirdJobError | None = None
    try:
        spool = prepare_spool(settings.backup_dir, server_user=settings.server_user)
        with job_lock(spool):
            try:
                clean_spool(spool)
                backups = list_backups(settings.backup_dir)
                manifest = next((m for m in backups if m.name == name), None)
                if manifest is None or manifest.status == Status.BAD:
                    raise BackupCorrupt(f"No usable backup named {name} in backup.dir.")
                run.manifest = manifest
                run.health, _, _ = read_live(target)
                verify_and_mark(run, spool, manifest, backups, clock)
            finally:
                clean_spool(spool)
    except FirebirdJobError as exc:
        error = exc
    return JobOutcome(
        kind=RunKind.BACKUP,
        started_at=started,
        finished_at=clock.now(),
        details=run.details(),
        error_class=error.error_class if error else "",
        error_message=error.message if error else "",
    )


def _space_problems(backup_dir: Path, before: list[Manifest]) -> list[str]:
    if not before:
        return []
    last = before[-1].size_compressed + before[-1].size_raw
    free = shutil.disk_usage(backup_dir).free
    if free < 2 * last:
        return [
            f"Free space in backup.dir ({free // 2**20} MiB) is under twice the last "
            f"backup's needs ({last // 2**20} MiB)."
        ]
    return []


@dataclasses.dataclass(frozen=True)
class Pruned(FileChange):
    """A backup retention deleted; `name` is its manifest's base name."""

    name: str = ""


def prune(backup_dir: Path, policy: RetentionPolicy, *, protect: set[str]) -> list[Pruned]:
    """Delete what the retention plan says (data file, then manifest), logging each with
    its reason; return them as file changes for the server."""
    manifests = list_backups(backup_dir)
    entries = [
        BackupEntry(
            name=m.name,
            finished_at=m.finished,
            good=m.status == Status.GOOD,
            chain=tuple(_name_of(manifests, f) for f in m.chain),
        )
        for m in manifests
    ]
    by_name = {m.name: m for m in manifests}
    out: list[Pruned] = []
    for deletion in plan_deletions(entries, policy, protect=protect):
        m = by_name[deletion.name]
        remove_quietly(backup_dir / m.file, backup_dir / f"{m.name}.json")
        log.info("retention deleted %s (%s): %s", m.file, m.status.value, deletion.reason)
        out.append(Pruned(final_file(m.file), FileState.PRUNED, deletion.reason, name=m.name))
    return out


def apply_retention(
    backup_dir: Path, policy: RetentionPolicy, *, protect: set[str]
) -> tuple[str, ...]:
    """Delete what the retention plan says; return the names."""
    return tuple(sorted(p.name for p in prune(backup_dir, policy, protect=protect)))


def _name_of(manifests: list[Manifest], file: str) -> str:
    return next((m.name for m in manifests if m.file == file), file)
