"""Conversion between the agent's domain dataclasses and `storesafe.v1` messages.

Run reports, check-ins and enrollment requests go out; replies, configuration
pushes and commands come back. (The test of the report round trip decodes with
its own oracle in tests/support/agentwire.py.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import agent_pb2, types_pb2

from agent.domain.messages import (
    CheckIn,
    CheckInReply,
    ConfigPush,
    Directive,
    Enrollment,
    EnrollRequest,
    RemoteCommand,
    ServerGoingAway,
)
from agent.domain.reports import (
    BackupDetails,
    Details,
    DiskUsage,
    FileCheckDetails,
    FileState,
    FirebirdHealth,
    ImageSyncDetails,
    Outcome,
    RunKind,
    RunReport,
    UploadDetails,
    ValidationDetails,
    Verification,
)
from common.clock import utc
from common.config_schema import Value
from common.errors import InvalidArgument

_KIND = {
    RunKind.BACKUP: types_pb2.RUN_KIND_BACKUP,
    RunKind.IMAGE_SYNC: types_pb2.RUN_KIND_IMAGE_SYNC,
    RunKind.UPLOAD: types_pb2.RUN_KIND_UPLOAD,
    RunKind.VALIDATION: types_pb2.RUN_KIND_VALIDATION,
    RunKind.FILE_CHECK: types_pb2.RUN_KIND_FILE_CHECK,
}
_FILE_STATE = {
    FileState.KEPT: types_pb2.BACKUP_FILE_STATE_KEPT,
    FileState.PRUNED: types_pb2.BACKUP_FILE_STATE_PRUNED,
    FileState.DAMAGED: types_pb2.BACKUP_FILE_STATE_DAMAGED,
    FileState.MISSING: types_pb2.BACKUP_FILE_STATE_MISSING,
}
_OUTCOME = {
    Outcome.SUCCEEDED: types_pb2.RUN_OUTCOME_SUCCEEDED,
    Outcome.FAILED: types_pb2.RUN_OUTCOME_FAILED,
}
_VERIFICATION = {
    Verification.PASSED: types_pb2.VERIFICATION_PASSED,
    Verification.FAILED: types_pb2.VERIFICATION_FAILED,
    Verification.NOT_RUN: types_pb2.VERIFICATION_NOT_RUN,
}


def timestamp(when: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(utc(when))
    return ts


def from_timestamp(ts: Timestamp) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.UTC)


# -- run reports -------------------------------------------------------------


def report_to_proto(report: RunReport) -> types_pb2.RunReport:
    """The wire form of `report`; InvalidArgument when a figure does not fit."""
    try:
        msg = types_pb2.RunReport(
            id=report.id,
            kind=_KIND[report.kind],
            started_at=timestamp(report.started_at),
            finished_at=timestamp(report.finished_at),
            outcome=_OUTCOME[report.outcome],
            error_class=report.error_class,
            error_message=report.error_message,
            trigger=report.trigger,
            file_changes=[
                types_pb2.BackupFileChange(file=c.file, state=_FILE_STATE[c.state], reason=c.reason)
                for c in report.file_changes
            ],
        )
        _details_to_proto(report.details, msg)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument(f"run report {report.id} cannot be encoded: {exc}") from exc
    return msg


def _details_to_proto(details: Details | None, msg: types_pb2.RunReport) -> None:
    if isinstance(details, BackupDetails):
        msg.backup.CopyFrom(backup_to_proto(details))
    elif isinstance(details, ImageSyncDetails):
        msg.image_sync.CopyFrom(types_pb2.ImageSyncDetails(**dataclasses.asdict(details)))
    elif isinstance(details, ValidationDetails):
        msg.validation.CopyFrom(
            types_pb2.ValidationDetails(
                errors=details.errors, warnings=details.warnings, summary=details.summary
            )
        )
    elif isinstance(details, UploadDetails):
        msg.upload.CopyFrom(types_pb2.UploadDetails(**dataclasses.asdict(details)))
    elif isinstance(details, FileCheckDetails):
        msg.file_check.CopyFrom(
            types_pb2.FileCheckDetails(
                files_checked=details.files_checked,
                bytes_checked=details.bytes_checked,
                files_damaged=details.files_damaged,
                restored=details.restored,
                summary=details.summary,
            )
        )


def backup_to_proto(d: BackupDetails) -> types_pb2.BackupDetails:
    msg = types_pb2.BackupDetails(
        method=d.method,
        level=d.level,
        file=d.file,
        size_raw=d.size_raw,
        size_compressed=d.size_compressed,
        checksum=d.checksum,
        raw_checksum=d.raw_checksum,
        verification=_VERIFICATION[d.verification],
        verification_seconds=d.verification_seconds,
        verification_message=d.verification_message,
        table_counts=d.table_counts,
        firebird_version=d.firebird_version,
        database=d.database,
        problems=list(d.problems),
        backup_seconds=d.backup_seconds,
        validation_errors=d.validation_errors,
        validation_warnings=d.validation_warnings,
    )
    if d.health is not None:
        msg.health.CopyFrom(health_to_proto(d.health))
    return msg


def health_to_proto(h: FirebirdHealth) -> types_pb2.FirebirdHealth:
    return types_pb2.FirebirdHealth(
        oit=h.oit,
        oat=h.oat,
        ost=h.ost,
        next_transaction=h.next_transaction,
        sweep_interval=h.sweep_interval,
        forced_writes=h.forced_writes,
        page_size=h.page_size,
        ods=h.ods,
        size_bytes=h.size_bytes,
        backup_state=h.backup_state,
        server_version=h.server_version,
    )


# -- enrollment and check-in ------------------------------------------------


def enroll_to_proto(req: EnrollRequest) -> agent_pb2.EnrollRequest:
    return agent_pb2.EnrollRequest(
        token=req.token,
        site=req.site,
        hostname=req.hostname,
        agent_version=req.agent_version,
        os=req.os,
    )


def enrollment_from_proto(msg: agent_pb2.EnrollResponse) -> Enrollment:
    if not msg.agent_id or not msg.credential:
        raise InvalidArgument("the server's enrollment answer has no agent id or credential")
    return Enrollment(
        agent_id=msg.agent_id, credential=msg.credential, site=msg.site, group=msg.group
    )


def disk_to_proto(d: DiskUsage) -> types_pb2.DiskUsage:
    return types_pb2.DiskUsage(
        label=d.label, path=d.path, total_bytes=d.total_bytes, free_bytes=d.free_bytes
    )


def checkin_to_proto(c: CheckIn) -> agent_pb2.CheckInRequest:
    msg = agent_pb2.CheckInRequest(
        agent_version=c.agent_version,
        hostname=c.hostname,
        os=c.os,
        agent_time=timestamp(c.agent_time),
        config_revision=c.config_revision,
        disks=[disk_to_proto(d) for d in c.disks],
        outbox_pending=min(c.outbox_pending, 2**32 - 1),
    )
    if c.firebird is not None:
        msg.firebird.CopyFrom(health_to_proto(c.firebird))
    return msg


def checkin_reply_from_proto(msg: agent_pb2.CheckInResponse) -> CheckInReply:
    return CheckInReply(
        server_time=from_timestamp(msg.server_time) if msg.HasField("server_time") else None,
        desired_config_revision=msg.desired_config_revision,
        checkin_interval_seconds=msg.checkin_interval_seconds,
    )


# -- configuration push and remote commands ------------------------------------

_COMMAND_KIND = {
    agent_pb2.COMMAND_KIND_BACKUP_NOW: "backup-now",
    agent_pb2.COMMAND_KIND_SYNC_NOW: "sync-now",
}
COMMAND_OUTCOME = {
    "succeeded": agent_pb2.COMMAND_OUTCOME_SUCCEEDED,
    "failed": agent_pb2.COMMAND_OUTCOME_FAILED,
    "rejected": agent_pb2.COMMAND_OUTCOME_REJECTED,
}


def directive_from_proto(msg: agent_pb2.AgentDirective) -> Directive | None:
    """A config push, a command or a goodbye; None for a directive this agent does not know."""
    which = msg.WhichOneof("kind")
    if which == "config":
        values = {key: _config_value(v) for key, v in msg.config.values.items()}
        return ConfigPush(revision=msg.config.revision, values=values)
    if which == "command":
        cmd = msg.command
        return RemoteCommand(
            id=cmd.id,
            kind=_COMMAND_KIND.get(cmd.kind, ""),
            created_at=from_timestamp(cmd.created_at) if cmd.HasField("created_at") else None,
            created_by=cmd.created_by,
        )
    if which == "reconnect":
        return ServerGoingAway(within_seconds=msg.reconnect.within_seconds)
    return None


def _config_value(v: agent_pb2.ConfigValue) -> Value:
    which = v.WhichOneof("value")
    if which == "integer":
        return v.integer
    if which == "number":
        return v.number
    if which == "flag":
        return v.flag
    return v.text


def ack_command_to_proto(
    command_id: str, outcome: str, message: str, site: str
) -> agent_pb2.AckCommandRequest:
    if outcome not in COMMAND_OUTCOME:
        raise InvalidArgument(f"unknown command outcome {outcome!r}")
    return agent_pb2.AckCommandRequest(
        command_id=command_id, outcome=COMMAND_OUTCOME[outcome], message=message[:500], site=site
    )
