"""Domain records as the admin API's messages."""

from __future__ import annotations

from google.protobuf import json_format
from storesafe.v1 import admin_pb2, agent_pb2, types_pb2

from common import config_schema
from server.alerting.queries import DeliveryList
from server.domain.records import (
    AdminTokenRecord,
    AuditRecord,
    CommandRecord,
    RevisionRecord,
    RunRecord,
    SiteView,
)
from server.rpc.convert.enums import (
    COMMAND_KIND_VALUES,
    FILE_STATE_VALUES,
    KIND_VALUES,
    OUTCOME_VALUES,
    SCOPE_VALUES,
    STATUS_VALUES,
)
from server.rpc.convert.stamps import put_ts, ts
from server.services.config import SiteConfig
from server.services.fleet import RolloutRow, SiteDetail


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
    fill_site_summary(out, view)
    return out


def fill_site_summary(out: admin_pb2.SiteSummary, view: SiteView) -> None:
    r = view.row
    out.site = r.name
    out.group = r.group
    out.status = STATUS_VALUES[view.status.status]
    put_ts(out.last_good_backup_at, r.last_good_backup_at)
    put_ts(out.last_backup_at, r.last_backup_at)
    put_ts(out.last_image_sync_at, r.last_image_sync_at)
    put_ts(out.last_seen_at, r.last_seen_at)
    out.config_revision_desired = view.config_revision_desired
    out.config_revision_applied = r.config_revision_applied
    out.agent_version = r.agent_version
    out.problems.extend(view.status.problems)
    out.hostname = r.hostname
    put_ts(out.last_offsite_at, r.last_offsite_at)
    out.last_offsite_backup_run_id = r.last_offsite_backup_run_id
    out.last_offsite_bytes_sent = r.last_offsite_bytes_sent
    out.last_offsite_backup_size = r.last_offsite_backup_size
    put_ts(out.last_drill_ok_at, r.last_drill_ok_at)
    put_ts(out.last_drill_at, r.last_drill_at)
    out.last_drill_outcome = OUTCOME_VALUES.get(
        r.last_drill_outcome, types_pb2.RUN_OUTCOME_UNSPECIFIED
    )
    put_ts(out.last_store_check_at, r.last_store_check_at)
    out.store_damaged_chunks = r.store_damaged_chunks


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
