"""Proto <-> domain conversion for the server: the only place both kinds meet."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, agent_pb2, types_pb2

from common import config_schema
from common.config_schema import Value
from common.errors import InvalidArgument
from server.alerting.queries import DeliveryList
from server.domain import ingest, rules
from server.domain.records import (
    AdminTokenRecord,
    AuditRecord,
    CommandRecord,
    FileChange,
    RevisionRecord,
    RunRecord,
    SiteView,
)
from server.domain.status import Disk, Status
from server.services.agents import AgentEvent, CommandAck, ConfigAck
from server.services.config import SiteConfig
from server.services.fleet import RolloutRow, SiteDetail
from server.services.push import ConfigDirective, Directive, ReconnectDirective

KIND_NAMES = {
    types_pb2.RUN_KIND_BACKUP: "backup",
    types_pb2.RUN_KIND_IMAGE_SYNC: "image-sync",
    types_pb2.RUN_KIND_UPLOAD: "upload",
    types_pb2.RUN_KIND_VALIDATION: "validation",
    types_pb2.RUN_KIND_FILE_CHECK: "file-check",
}
KIND_VALUES = {v: k for k, v in KIND_NAMES.items()}
OUTCOME_NAMES = {
    types_pb2.RUN_OUTCOME_SUCCEEDED: "succeeded",
    types_pb2.RUN_OUTCOME_FAILED: "failed",
}
OUTCOME_VALUES = {v: k for k, v in OUTCOME_NAMES.items()}
VERIFICATION_NAMES = {
    types_pb2.VERIFICATION_PASSED: "passed",
    types_pb2.VERIFICATION_FAILED: "failed",
    types_pb2.VERIFICATION_NOT_RUN: "not-run",
}
STATUS_VALUES = {
    Status.OK: types_pb2.SITE_STATUS_OK,
    Status.WARNING: types_pb2.SITE_STATUS_WARNING,
    Status.STALE: types_pb2.SITE_STATUS_STALE,
    Status.FAILING: types_pb2.SITE_STATUS_FAILING,
    Status.NEVER: types_pb2.SITE_STATUS_NEVER,
    Status.OFFLINE: types_pb2.SITE_STATUS_OFFLINE,
}
STATUS_NAMES = {v: k for k, v in STATUS_VALUES.items()}


_EPOCH = dt.datetime(1970, 1, 1)  # naive: compared with naive UTC values only


def ts(when: dt.datetime | None) -> Timestamp | None:
    if when is None:
        return None
    out = Timestamp()
    if when.tzinfo is dt.UTC or when.tzinfo is None:
        # what FromDatetime computes, without its time tuple (ListSites makes 40,000)
        since = when.replace(tzinfo=None) - _EPOCH
        out.seconds = since.days * 86_400 + since.seconds
        out.nanos = when.microsecond * 1000
    else:
        out.FromDatetime(when)
    return out


def from_ts(msg: Any, field: str) -> dt.datetime | None:
    """The timestamp field as an aware UTC datetime, None when unset; one outside the
    Timestamp range is an InvalidArgument (rules.timestamp)."""
    stamp = _stamp(msg, field)
    return None if stamp is None else rules.timestamp(field, *stamp)


def scalar_dict_converter(descriptor: Any) -> Any:
    """A fast stand-in for MessageToDict(msg, preserving_proto_field_name=True,
    always_print_fields_with_no_presence=True), for messages of plain scalar fields.

    Gives the same dict, keys in the same order: set fields by field number, then
    the unset ones in declaration order; 64-bit integers as strings. For any other
    kind of message it is MessageToDict itself.
    """
    fd = FieldDescriptor
    as_str = {fd.TYPE_INT64, fd.TYPE_UINT64, fd.TYPE_SINT64, fd.TYPE_FIXED64, fd.TYPE_SFIXED64}
    plain = {fd.TYPE_INT32, fd.TYPE_UINT32, fd.TYPE_SINT32, fd.TYPE_FIXED32, fd.TYPE_SFIXED32}
    plain |= {fd.TYPE_BOOL, fd.TYPE_STRING}
    fields = list(descriptor.fields)
    simple = bool(fields) and all(
        (f.type in as_str or f.type in plain) and not f.has_presence and not f.is_repeated
        for f in fields
    )
    if not simple:

        def slow(msg: Any) -> dict[str, Any]:
            out: dict[str, Any] = json_format.MessageToDict(
                msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            return out

        return slow
    by_number = sorted(fields, key=lambda f: f.number)
    spec = [(f.name, f.type in as_str) for f in by_number]
    declared = [f.name for f in fields]

    def fast(msg: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, stringify in spec:
            value = getattr(msg, name)
            if value:
                out[name] = str(value) if stringify else value
        if len(out) < len(declared):
            for name in declared:
                if name not in out:
                    value = getattr(msg, name)
                    out[name] = str(value) if name in stringified else value
        return out

    stringified = {name for name, s in spec if s}
    return fast


_FIREBIRD_TO_DICT = scalar_dict_converter(types_pb2.FirebirdHealth.DESCRIPTOR)

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}
_FLOATS = {FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT}


def message_dict(msg: Any) -> dict[str, Any]:
    """MessageToDict(msg, preserving_proto_field_name=True) for the run details messages,
    at a fraction of its cost (it walks descriptors in Python for every call).

    Handles scalars, enums, nested messages, repeated fields and maps with scalar
    values, through converters made once per message type; a message with anything
    else set (bytes, floats, doubles that are not finite, well-known types) goes to
    MessageToDict itself, so the result is always the same dict.
    """
    plan = _PLANS.get(msg.DESCRIPTOR.full_name)
    if plan is None:
        plan = _PLANS[msg.DESCRIPTOR.full_name] = {
            f.number: _field_converter(f) for f in msg.DESCRIPTOR.fields
        }
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        converted = plan[field.number](value)
        if converted is _SLOW:
            return _slow_dict(msg)
        out[field.name] = converted
    return out


_SLOW = object()
Convert = Callable[[Any], Any]
_PLANS: dict[str, dict[int, Convert]] = {}


def _slow_dict(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out


def _field_converter(field: Any) -> Convert:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        if value_field.message_type is not None:
            return _to_slow
        one = _single_converter(value_field)
        return lambda m: _or_slow({str(k): one(v) for k, v in m.items()})
    one = _single_converter(field)
    if field.is_repeated:
        return lambda items: _or_slow([one(v) for v in items])
    return one


def _or_slow(converted: Any) -> Any:
    values = converted.values() if isinstance(converted, dict) else converted
    return _SLOW if any(v is _SLOW for v in values) else converted


def _single_converter(field: Any) -> Convert:
    t = field.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name.startswith("google.protobuf."):
            return _to_slow
        return message_dict
    if t in _INT64:
        return str
    if t == FieldDescriptor.TYPE_ENUM:
        names = {v.number: v.name for v in field.enum_type.values}
        return lambda v: names.get(v, v)
    if t == FieldDescriptor.TYPE_DOUBLE:
        return lambda v: float(v) if math.isfinite(v) else _SLOW
    if t in {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_GROUP}:
        return _to_slow
    return _same


def _same(value: Any) -> Any:
    return value


def _to_slow(_value: Any) -> Any:
    return _SLOW


def _stamp(msg: Any, field: str) -> ingest.Stamp:
    """A timestamp field as sent (seconds, nanos), None when unset; judged by ingest."""
    if not msg.HasField(field):
        return None
    stamp = getattr(msg, field)
    return (stamp.seconds, stamp.nanos)


def _enum_name(names: Mapping[Any, str], value: int) -> str:
    """The domain name of an enum value: "" when unset, the number as text when unknown
    (ingest refuses it, saying which)."""
    found = names.get(value)
    if found is not None:
        return found
    return "" if value == 0 else str(value)


def checkin_input(req: agent_pb2.CheckInRequest) -> ingest.CheckInInput:
    """A check-in's fields as sent (ingest.checkin_facts judges them)."""
    disks = tuple(Disk(d.label, d.path, int(d.total_bytes), int(d.free_bytes)) for d in req.disks)
    firebird = _FIREBIRD_TO_DICT(req.firebird) if req.HasField("firebird") else None
    return ingest.CheckInInput(
        agent_version=req.agent_version,
        hostname=req.hostname,
        os=req.os,
        agent_time=_stamp(req, "agent_time"),
        config_revision=req.config_revision,
        disks=disks,
        firebird=firebird,
        outbox_pending=req.outbox_pending,
    )


async def session_open(events: AsyncIterator[agent_pb2.AgentEvent]) -> agent_pb2.WatchConfigRequest:
    """The first message of a Session stream, which must open it."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise InvalidArgument("a session starts with an open message") from None
    if first.WhichOneof("kind") != "open":
        raise InvalidArgument("a session starts with an open message")
    return first.open


async def agent_events(events: AsyncIterator[agent_pb2.AgentEvent]) -> AsyncIterator[AgentEvent]:
    """The acks that follow a Session's open message, as domain events (judged by the
    service, as the same acks sent by AckConfig and AckCommand are)."""
    async for event in events:
        kind = event.WhichOneof("kind")
        if kind == "config_ack":
            ack = event.config_ack
            yield ConfigAck(ack.revision, ack.applied, ack.error, ack.site)
        elif kind == "command_ack":
            cmd = event.command_ack
            yield CommandAck(cmd.command_id, command_outcome(cmd.outcome), cmd.message, cmd.site)
        else:
            raise InvalidArgument("a session is opened once; later messages must be acks")


def command_outcome(value: int) -> str:
    return _enum_name(COMMAND_OUTCOME_NAMES, value)


def run_input(report: types_pb2.RunReport) -> ingest.RunInput:
    """A run report's fields as sent (ingest.run_record judges them)."""
    which = report.WhichOneof("details")
    details: dict[str, Any] = {}
    verification = ""
    if which is not None:
        details = message_dict(getattr(report, which))
        if which == "backup":
            verification = _enum_name(VERIFICATION_NAMES, report.backup.verification)
    return ingest.RunInput(
        id=report.id,
        kind=_enum_name(KIND_NAMES, report.kind),
        started_at=_stamp(report, "started_at"),
        finished_at=_stamp(report, "finished_at"),
        outcome=_enum_name(OUTCOME_NAMES, report.outcome),
        error_class=report.error_class,
        error_message=report.error_message,
        trigger=report.trigger,
        details_kind=which,
        details=details,
        verification=verification,
        file_changes=file_changes(report),
    )


FILE_STATE_NAMES = {
    types_pb2.BACKUP_FILE_STATE_KEPT: "kept",
    types_pb2.BACKUP_FILE_STATE_PRUNED: "pruned",
    types_pb2.BACKUP_FILE_STATE_DAMAGED: "damaged",
    types_pb2.BACKUP_FILE_STATE_MISSING: "missing",
}
FILE_STATE_VALUES = {v: k for k, v in FILE_STATE_NAMES.items()}


def file_changes(report: types_pb2.RunReport) -> tuple[FileChange, ...]:
    """The earlier backups whose file changed state, as sent (an unknown state as its
    number: ingest refuses it, naming the field)."""
    return tuple(
        FileChange(c.file, _enum_name(FILE_STATE_NAMES, c.state), c.reason)
        for c in report.file_changes
    )


def run_report(run: RunRecord) -> types_pb2.RunReport:
    msg = types_pb2.RunReport(
        id=run.id,
        kind=KIND_VALUES.get(run.kind, types_pb2.RUN_KIND_UNSPECIFIED),
        started_at=ts(run.started_at),
        finished_at=ts(run.finished_at),
        outcome=OUTCOME_VALUES.get(run.outcome, types_pb2.RUN_OUTCOME_UNSPECIFIED),
        error_class=run.error_class,
        error_message=run.error_message,
        trigger=run.trigger,
    )
    for name, body in run.details.items():
        json_format.ParseDict(body, getattr(msg, name), ignore_unknown_fields=True)
    return msg


def run_msg(run: RunRecord) -> admin_pb2.Run:
    return admin_pb2.Run(
        site=run.site,
        report=run_report(run),
        received_at=ts(run.received_at),
        file_state=FILE_STATE_VALUES.get(run.file_state, types_pb2.BACKUP_FILE_STATE_UNSPECIFIED),
    )


def site_summary(view: SiteView) -> admin_pb2.SiteSummary:
    out = admin_pb2.SiteSummary()
    _fill_site_summary(out, view)
    return out


def _fill_site_summary(out: admin_pb2.SiteSummary, view: SiteView) -> None:
    r = view.row
    out.site = r.name
    out.group = r.group
    out.status = STATUS_VALUES[view.status.status]
    _put_ts(out.last_good_backup_at, r.last_good_backup_at)
    _put_ts(out.last_backup_at, r.last_backup_at)
    _put_ts(out.last_image_sync_at, r.last_image_sync_at)
    _put_ts(out.last_seen_at, r.last_seen_at)
    out.config_revision_desired = view.config_revision_desired
    out.config_revision_applied = r.config_revision_applied
    out.agent_version = r.agent_version
    out.problems.extend(view.status.problems)
    out.hostname = r.hostname


def _put_ts(field: Timestamp, when: dt.datetime | None) -> None:
    """Set a Timestamp field in place to `when` (as ts() would); None leaves it unset."""
    if when is None:
        return
    if when.tzinfo is dt.UTC or when.tzinfo is None:
        since = when.replace(tzinfo=None) - _EPOCH
        field.seconds = since.days * 86_400 + since.seconds  # sets the field even when 0
        field.nanos = when.microsecond * 1000
    else:
        field.FromDatetime(when)


def site_detail(detail: SiteDetail) -> admin_pb2.GetSiteResponse:
    r = detail.view.row
    msg = admin_pb2.GetSiteResponse(
        summary=site_summary(detail.view),
        os=r.os,
        disks=[
            types_pb2.DiskUsage(
                label=d.label, path=d.path, total_bytes=d.total_bytes, free_bytes=d.free_bytes
            )
            for d in r.disks
        ],
        clock_skew_seconds=r.clock_skew_seconds,
        enrolled_at=ts(r.enrolled_at),
        outbox_pending=r.outbox_pending,
        active_agents=detail.active_agents,
    )
    if r.firebird:
        json_format.ParseDict(r.firebird, msg.firebird, ignore_unknown_fields=True)
    if detail.last_backup is not None:
        msg.last_backup.CopyFrom(run_msg(detail.last_backup))
    return msg


def audit_entry(rec: AuditRecord) -> admin_pb2.AuditEntry:
    return admin_pb2.AuditEntry(
        at=ts(rec.at), actor=rec.actor, action=rec.action, target=rec.target, details=rec.details
    )


def admin_token(rec: AdminTokenRecord) -> admin_pb2.AdminToken:
    return admin_pb2.AdminToken(
        name=rec.name,
        id=rec.id,
        created_at=ts(rec.created_at),
        created_by=rec.created_by,
        revoked_at=ts(rec.revoked_at),
        revoked_by=rec.revoked_by,
    )


COMMAND_KIND_NAMES = {
    agent_pb2.COMMAND_KIND_BACKUP_NOW: "backup-now",
    agent_pb2.COMMAND_KIND_SYNC_NOW: "sync-now",
}
COMMAND_KIND_VALUES = {v: k for k, v in COMMAND_KIND_NAMES.items()}
COMMAND_OUTCOME_NAMES = {
    agent_pb2.COMMAND_OUTCOME_SUCCEEDED: "succeeded",
    agent_pb2.COMMAND_OUTCOME_FAILED: "failed",
    agent_pb2.COMMAND_OUTCOME_REJECTED: "rejected",
}
SCOPE_NAMES = {
    admin_pb2.CONFIG_SCOPE_FLEET: "fleet",
    admin_pb2.CONFIG_SCOPE_GROUP: "group",
    admin_pb2.CONFIG_SCOPE_SITE: "site",
}
SCOPE_VALUES = {v: k for k, v in SCOPE_NAMES.items()}


def config_value(value: Value) -> agent_pb2.ConfigValue:
    if isinstance(value, bool):
        return agent_pb2.ConfigValue(flag=value)
    if isinstance(value, int):
        return agent_pb2.ConfigValue(integer=value)
    if isinstance(value, float):
        return agent_pb2.ConfigValue(number=value)
    return agent_pb2.ConfigValue(text=value)


def command_msg(cmd: CommandRecord) -> agent_pb2.Command:
    return agent_pb2.Command(
        id=cmd.id,
        kind=COMMAND_KIND_VALUES.get(cmd.kind, agent_pb2.COMMAND_KIND_UNSPECIFIED),
        created_at=ts(cmd.created_at),
        created_by=cmd.created_by,
    )


def directive(d: Directive) -> agent_pb2.AgentDirective:
    if isinstance(d, ConfigDirective):
        update = agent_pb2.ConfigUpdate(revision=d.revision)
        for k, v in d.values.items():
            update.values[k].CopyFrom(config_value(v))
        return agent_pb2.AgentDirective(config=update)
    if isinstance(d, ReconnectDirective):
        reconnect = agent_pb2.Reconnect(within_seconds=d.within_seconds)
        return agent_pb2.AgentDirective(reconnect=reconnect)
    return agent_pb2.AgentDirective(command=command_msg(d.command))


def site_config(cfg: SiteConfig) -> admin_pb2.GetConfigResponse:
    return admin_pb2.GetConfigResponse(
        site=cfg.site,
        desired_revision=cfg.desired_revision,
        applied_revision=cfg.applied_revision,
        refused=cfg.refused,
        entries=[
            admin_pb2.ConfigEntry(
                key=k,
                value=config_schema.text(e.value),
                layer=e.layer,
                secret=config_schema.KEYS[k].secret,
            )
            for k, e in sorted(cfg.entries.items())
        ],
    )


def revision_msg(rev: RevisionRecord) -> admin_pb2.ConfigRevision:
    return admin_pb2.ConfigRevision(
        revision=rev.revision,
        scope=SCOPE_VALUES.get(rev.scope, admin_pb2.CONFIG_SCOPE_UNSPECIFIED),
        target=rev.target,
        author=rev.author,
        at=ts(rev.at),
        changes=rev.changes,
    )


def rollout_row(row: RolloutRow) -> admin_pb2.RolloutRow:
    return admin_pb2.RolloutRow(
        site=row.site,
        group=row.group,
        desired_revision=row.desired_revision,
        applied_revision=row.applied_revision,
        state=row.state,
        refused=row.refused,
        last_seen_at=ts(row.last_seen_at),
    )


def command_state(cmd: CommandRecord) -> admin_pb2.CommandState:
    return admin_pb2.CommandState(
        id=cmd.id,
        site=cmd.site,
        kind=COMMAND_KIND_VALUES.get(cmd.kind, agent_pb2.COMMAND_KIND_UNSPECIFIED),
        created_at=ts(cmd.created_at),
        created_by=cmd.created_by,
        delivered_at=ts(cmd.delivered_at),
        finished_at=ts(cmd.finished_at),
        state=cmd.state,
        message=cmd.message,
    )


class SummaryEncoder:
    """Builds ListSites answers from per-site serialized summaries, reused while a view is
    unchanged (the site cache hands back the same SiteView object until it recomputes)."""

    def __init__(self) -> None:
        self._done: dict[int, tuple[SiteView, bytes]] = {}

    def response(self, views: list[SiteView]) -> admin_pb2.ListSitesResponse:
        parts = []
        for view in views:
            cached = self._done.get(view.row.id)
            if cached is not None and cached[0] is view:
                body = cached[1]
            else:
                msg = admin_pb2.SiteSummary()
                _fill_site_summary(msg, view)
                body = msg.SerializeToString()
                self._done[view.row.id] = (view, body)
            parts.append(_SITES_TAG + _varint(len(body)) + body)
        return admin_pb2.ListSitesResponse.FromString(b"".join(parts))


_SITES_TAG = b"\x0a"  # field 1 (sites), wire type 2 (length-delimited)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def alert_list(found: DeliveryList) -> admin_pb2.ListAlertsResponse:
    totals = found.totals
    return admin_pb2.ListAlertsResponse(
        deliveries=[
            admin_pb2.AlertDelivery(
                id=d.id,
                created_at=ts(d.created_at),
                site=d.site,
                kind=d.kind,
                status_from=d.status_from,
                status_to=d.status_to,
                channel=d.channel,
                destination=d.destination,
                attempts=d.attempts,
                state=d.state,
                last_error=d.last_error,
                next_attempt_at=ts(d.next_attempt_at),
                delivered_at=ts(d.delivered_at),
            )
            for d in found.deliveries
        ],
        pending=totals.get("pending", 0),
        delivered=totals.get("delivered", 0),
        failed=totals.get("failed", 0),
        errors=totals.get("errors", 0),
    )
