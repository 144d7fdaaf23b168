"""Protobuf answers of the AdminService -> the CLI's plain records, and back for enums.

Times become aware UTC datetimes (None for unset or zero: "never"); enum values
become the CLI's words (`SITE_STATUS_OK` -> `ok`, `RUN_KIND_IMAGE_SYNC` ->
`image-sync`), `unknown` for a value this CLI does not know (a newer server).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, agent_pb2, types_pb2

from cli.models import (
    COMMAND_KINDS,
    FILE_STATES,
    KINDS,
    SCOPES,
    SNAPSHOT_KINDS,
    STATUSES,
    Disk,
    DrillReport,
    FirebirdHealth,
    Run,
    SiteDetail,
    SiteSummary,
    SnapshotSummary,
    StoreCheckUpdate,
)

R = TypeVar("R")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# --- CLI words -> proto enums ---------------------------------------------


def status_value(status: str | None) -> types_pb2.SiteStatus.ValueType:
    """`failing` -> SITE_STATUS_FAILING; None or "" -> unspecified (every status)."""
    if not status:
        return types_pb2.SITE_STATUS_UNSPECIFIED
    return types_pb2.SiteStatus.Value("SITE_STATUS_" + status.upper())


def kind_value(kind: str | None) -> types_pb2.RunKind.ValueType:
    """`image-sync` -> RUN_KIND_IMAGE_SYNC; None or "" -> unspecified (every kind)."""
    if not kind:
        return types_pb2.RUN_KIND_UNSPECIFIED
    return types_pb2.RunKind.Value("RUN_KIND_" + kind.upper().replace("-", "_"))


def scope_value(scope: str) -> admin_pb2.ConfigScope.ValueType:
    """`site` -> CONFIG_SCOPE_SITE."""
    return admin_pb2.ConfigScope.Value("CONFIG_SCOPE_" + scope.upper())


def command_kind_value(kind: str) -> agent_pb2.CommandKind.ValueType:
    """`backup-now` -> COMMAND_KIND_BACKUP_NOW."""
    return agent_pb2.CommandKind.Value("COMMAND_KIND_" + kind.upper().replace("-", "_"))


def snapshot_kind_value(kind: str | None) -> agent_pb2.SnapshotKind.ValueType:
    """`images` -> SNAPSHOT_KIND_IMAGES; None or "" -> unspecified (every kind)."""
    if not kind:
        return agent_pb2.SNAPSHOT_KIND_UNSPECIFIED
    return agent_pb2.SnapshotKind.Value("SNAPSHOT_KIND_" + kind.upper())


# --- proto -> CLI words and records ---------------------------------------


def _enum_name(enum: Any, value: int, prefix: str, known: tuple[str, ...]) -> str:
    """`SITE_STATUS_OK` -> `ok`, `RUN_KIND_IMAGE_SYNC` -> `image-sync`; `unknown` otherwise."""
    try:
        name = str(enum.Name(value)).removeprefix(prefix).lower().replace("_", "-")
    except ValueError:
        return "unknown"
    return name if name in known else "unknown"


def _status_name(value: int) -> str:
    return _enum_name(types_pb2.SiteStatus, value, "SITE_STATUS_", STATUSES)


def _kind_name(value: int) -> str:
    return _enum_name(types_pb2.RunKind, value, "RUN_KIND_", KINDS)


def _file_state_name(value: int) -> str | None:
    if value == types_pb2.BACKUP_FILE_STATE_UNSPECIFIED:
        return None
    return _enum_name(types_pb2.BackupFileState, value, "BACKUP_FILE_STATE_", FILE_STATES)


def _outcome_name(value: int) -> str:
    return _enum_name(types_pb2.RunOutcome, value, "RUN_OUTCOME_", ("succeeded", "failed"))


def _verification_name(value: int) -> str:
    return _enum_name(
        types_pb2.Verification, value, "VERIFICATION_", ("passed", "failed", "not-run")
    )


def scope_name(value: int) -> str:
    """CONFIG_SCOPE_GROUP -> `group`."""
    return _enum_name(admin_pb2.ConfigScope, value, "CONFIG_SCOPE_", SCOPES)


def command_kind_name(value: int) -> str:
    """COMMAND_KIND_SYNC_NOW -> `sync-now`."""
    return _enum_name(agent_pb2.CommandKind, value, "COMMAND_KIND_", COMMAND_KINDS)


def record(cls: type[R], message: Any, **given: Any) -> R:
    """A record whose fields carry the proto field names: timestamps become datetimes
    (None for never), other fields are copied; `given` fields are taken as they are."""
    found = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in given:
            value = getattr(message, f.name)
            found[f.name] = time_of(message, f.name) if isinstance(value, Timestamp) else value
    return cls(**found, **given)


def time_of(message: Any, field: str) -> dt.datetime | None:
    """The timestamp `field` of `message`, or None when it is unset or zero (never)."""
    ts: Timestamp = getattr(message, field)
    if not message.HasField(field) or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return _EPOCH + dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def summary(row: admin_pb2.SiteSummary) -> SiteSummary:
    """One row of the fleet view."""
    return SiteSummary(
        site=row.site,
        group=row.group,
        status=_status_name(row.status),
        last_good_backup_at=time_of(row, "last_good_backup_at"),
        last_backup_at=time_of(row, "last_backup_at"),
        last_image_sync_at=time_of(row, "last_image_sync_at"),
        last_seen_at=time_of(row, "last_seen_at"),
        config_revision_desired=row.config_revision_desired,
        config_revision_applied=row.config_revision_applied,
        agent_version=row.agent_version,
        problems=tuple(row.problems),
        hostname=row.hostname,
        last_offsite_at=time_of(row, "last_offsite_at"),
        last_offsite_backup_run_id=row.last_offsite_backup_run_id,
        last_offsite_bytes_sent=row.last_offsite_bytes_sent,
        last_offsite_backup_size=row.last_offsite_backup_size,
        last_drill_ok_at=time_of(row, "last_drill_ok_at"),
        last_drill_at=time_of(row, "last_drill_at"),
        last_drill_outcome=(
            _outcome_name(row.last_drill_outcome) if row.last_drill_outcome else ""
        ),
        last_store_check_at=time_of(row, "last_store_check_at"),
        store_damaged_chunks=row.store_damaged_chunks,
    )


def health(h: types_pb2.FirebirdHealth) -> FirebirdHealth:
    """The live database's figures (the record's fields carry the proto field names)."""
    return FirebirdHealth(
        **{f.name: getattr(h, f.name) for f in dataclasses.fields(FirebirdHealth)}
    )


def _details(report: types_pb2.RunReport) -> dict[str, Any]:
    """The kind-specific figures of a report, with proto field names."""
    which = report.WhichOneof("details")
    if which == "backup":
        b = report.backup
        return {
            "method": b.method,
            "level": b.level,
            "file": b.file,
            "size_raw": b.size_raw,
            "size_compressed": b.size_compressed,
            "checksum": b.checksum,
            "verification": _verification_name(b.verification),
            "verification_seconds": b.verification_seconds,
            "verification_message": b.verification_message,
            "backup_seconds": b.backup_seconds,
            "table_counts": dict(b.table_counts),
            "firebird_version": b.firebird_version,
            "database": b.database,
            "health": dataclasses.asdict(health(b.health)) if b.HasField("health") else None,
            "problems": list(b.problems),
            "validation_errors": b.validation_errors,
            "validation_warnings": b.validation_warnings,
            "raw_checksum": b.raw_checksum,
        }
    if which == "image_sync":
        s = report.image_sync
        return {
            "files_scanned": s.files_scanned,
            "files_copied": s.files_copied,
            "bytes_copied": s.bytes_copied,
            "files_failed": s.files_failed,
            "files_new": s.files_new,
            "files_changed": s.files_changed,
            "files_deleted": s.files_deleted,
            "files_unchanged": s.files_unchanged,
            "bytes_read": s.bytes_read,
            "chunks_sent": s.chunks_sent,
            "snapshot_id": s.snapshot_id,
            "folder_missing": s.folder_missing,
            "folder_empty": s.folder_empty,
            "skipped": dict(s.skipped),
            "stable_files": s.stable_files,
            "stable_changed": s.stable_changed,
            "current_snapshot_id": s.current_snapshot_id,
            "incomplete": s.incomplete,
            "summary": s.summary,
        }
    if which == "validation":
        v = report.validation
        return {"errors": v.errors, "warnings": v.warnings, "summary": v.summary}
    if which in ("upload", "drill", "store_check"):
        return _plain(getattr(report, which))
    if which == "file_check":
        f = report.file_check
        return {
            "files_checked": f.files_checked,
            "bytes_checked": f.bytes_checked,
            "files_damaged": f.files_damaged,
            "restored": f.restored,
            "summary": f.summary,
        }
    return {}


def _plain(message: Any) -> dict[str, Any]:
    """Every field of a flat details message by its proto name (lists and maps as such)."""
    out: dict[str, Any] = {}
    for f in message.DESCRIPTOR.fields:
        value = getattr(message, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            value = dict(value)
        elif f.is_repeated:
            value = list(value)
        out[f.name] = value
    return out


def site_detail(answer: admin_pb2.GetSiteResponse) -> SiteDetail:
    """One site in detail, with what its agent last told."""
    return SiteDetail(
        summary=summary(answer.summary),
        os=answer.os,
        disks=tuple(Disk(d.label, d.path, d.total_bytes, d.free_bytes) for d in answer.disks),
        firebird=health(answer.firebird) if answer.HasField("firebird") else None,
        clock_skew_seconds=answer.clock_skew_seconds,
        enrolled_at=time_of(answer, "enrolled_at"),
        outbox_pending=answer.outbox_pending,
        last_backup=run(answer.last_backup) if answer.HasField("last_backup") else None,
        active_agents=answer.active_agents,
    )


def run(row: admin_pb2.Run) -> Run:
    """One reported run, its kind-specific figures in `details`."""
    report = row.report
    return Run(
        id=report.id,
        site=row.site,
        kind=_kind_name(report.kind),
        outcome=_outcome_name(report.outcome),
        started_at=time_of(report, "started_at"),
        finished_at=time_of(report, "finished_at"),
        received_at=time_of(row, "received_at"),
        trigger=report.trigger,
        error_class=report.error_class,
        error_message=report.error_message,
        details=_details(report),
        file_state=_file_state_name(row.file_state),
    )


def snapshot(row: admin_pb2.SnapshotSummary) -> SnapshotSummary:
    """One snapshot of the off-site store, its kind as the CLI's word."""
    kind = _enum_name(agent_pb2.SnapshotKind, row.kind, "SNAPSHOT_KIND_", SNAPSHOT_KINDS)
    return record(SnapshotSummary, row, kind=kind)


# --- CLI records -> proto --------------------------------------------------


def _stamp(when: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when.astimezone(dt.UTC).replace(tzinfo=None))
    return ts


def drill_report(drill: DrillReport) -> types_pb2.RunReport:
    """The run report of a restore drill (kind RUN_KIND_DRILL, DrillDetails)."""
    return types_pb2.RunReport(
        id=drill.id,
        kind=types_pb2.RUN_KIND_DRILL,
        started_at=_stamp(drill.started_at),
        finished_at=_stamp(drill.finished_at),
        outcome=types_pb2.RunOutcome.Value("RUN_OUTCOME_" + drill.outcome.upper()),
        error_class=drill.error_class,
        error_message=drill.error_message,
        trigger=drill.trigger,
        drill=types_pb2.DrillDetails(
            snapshot_id=drill.snapshot_id,
            backup_run_id=drill.backup_run_id,
            bytes_fetched=drill.bytes_fetched,
            backup_bytes=drill.backup_bytes,
            checksum_ok=drill.checksum_ok,
            restored=drill.restored,
            validation_errors=drill.validation_errors,
            table_counts=drill.table_counts,
            host=drill.host,
            fetch_seconds=drill.fetch_seconds,
            restore_seconds=drill.restore_seconds,
        ),
    )


def store_check_update(update: admin_pb2.VerifyStoreUpdate) -> StoreCheckUpdate:
    """One progress message of VerifyStore; the finished site's run in `result`."""
    result = None
    if update.HasField("result"):
        result = run(admin_pb2.Run(site=update.site, report=update.result))
    return StoreCheckUpdate(
        site=update.site,
        chunks_checked=update.chunks_checked,
        chunks_total=update.chunks_total,
        bytes_checked=update.bytes_checked,
        result=result,
    )
