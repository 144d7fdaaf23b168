"""`AdminClient`: one method per AdminService call, in the CLI's records and errors.

Each method builds its request, makes the call with the admin token and the
deadline, and hands the answer to `convert`; a failed call leaves as the typed
error `errors.error_from_rpc` reads from it. The channel opens on first use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import TypeVar

import grpc
from storesafe.v1 import admin_pb2, admin_pb2_grpc

from cli.client import convert
from cli.client.channel import open_channel, server_of, token_of
from cli.client.errors import error_from_rpc
from cli.client.settings import Settings
from cli.models import (
    AdminToken,
    AlertDelivery,
    AlertList,
    AuditEntry,
    Command,
    ConfigChange,
    ConfigEntry,
    ConfigRevision,
    DrillReport,
    EnrollmentToken,
    RolloutRow,
    Run,
    SealedSnapshotRecord,
    SiteConfig,
    SiteDataKey,
    SiteDetail,
    SiteSummary,
    SnapshotSummary,
    StoreCheckUpdate,
)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

FETCH_MESSAGE_BYTES = 2 * 1024 * 1024
"""The sealed bytes one FetchChunks message may carry: hundreds of small chunks a message
(the channel takes messages up to MAX_RECEIVE_BYTES; the server caps it at 16 MiB)."""


class AdminClient:
    """A connection to the AdminService, opened on first use and closed by `close()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channel: grpc.Channel | None = None
        self._stub: admin_pb2_grpc.AdminServiceStub | None = None

    @property
    def server(self) -> str:
        """The server address, or a complaint that there is none."""
        return server_of(self.settings)

    def close(self) -> None:
        """Close the channel if one was opened."""
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = None

    # --- calls -------------------------------------------------------------

    def create_token(self, site: str, group: str, ttl: dt.timedelta) -> EnrollmentToken:
        """Make a one-time enrollment token for `site`."""
        request = admin_pb2.CreateEnrollmentTokenRequest(
            site=site, group=group, ttl_seconds=int(ttl.total_seconds())
        )
        answer = self._call(self._connect().CreateEnrollmentToken, request)
        return EnrollmentToken(
            site=site,
            group=group,
            token=answer.token,
            expires_at=convert.time_of(answer, "expires_at"),
        )

    def list_sites(self, status: str | None = None, group: str | None = None) -> list[SiteSummary]:
        """All sites (optionally of one status or group), ordered by name."""
        request = admin_pb2.ListSitesRequest(status=convert.status_value(status), group=group or "")
        answer = self._call(self._connect().ListSites, request)
        return [convert.summary(row) for row in answer.sites]

    def get_site(self, site: str) -> SiteDetail:
        """One site in detail."""
        answer = self._call(self._connect().GetSite, admin_pb2.GetSiteRequest(site=site))
        return convert.site_detail(answer)

    def list_runs(self, site: str, kind: str | None = None, limit: int = 20) -> list[Run]:
        """The newest runs of `site`, at most `limit`, optionally of one kind."""
        request = admin_pb2.ListRunsRequest(site=site, kind=convert.kind_value(kind), limit=limit)
        answer = self._call(self._connect().ListRuns, request)
        return [convert.run(row) for row in answer.runs]

    def revoke_agents(self, site: str) -> int:
        """Revoke every agent credential of `site`; return how many there were."""
        request = admin_pb2.RevokeAgentsRequest(site=site)
        return self._call(self._connect().RevokeAgents, request).revoked

    def accept_change(self, site: str, run_id: str = "") -> tuple[str, str]:
        """Accept a good backup's figures as `site`'s baseline; (run id, cleared problem)."""
        request = admin_pb2.AcceptChangeRequest(site=site, run_id=run_id)
        answer = self._call(self._connect().AcceptChange, request)
        return answer.run_id, answer.cleared

    def list_audit(self, limit: int = 50) -> list[AuditEntry]:
        """The newest admin actions, at most `limit`."""
        answer = self._call(self._connect().ListAudit, admin_pb2.ListAuditRequest(limit=limit))
        return [
            AuditEntry(convert.time_of(e, "at"), e.actor, e.action, e.target, e.details)
            for e in answer.entries
        ]

    def set_config(
        self, scope: str, target: str, values: dict[str, str], unset: list[str]
    ) -> ConfigChange:
        """Set and unset keys on one layer (the server validates every value)."""
        request = admin_pb2.SetConfigRequest(
            scope=convert.scope_value(scope),
            target=target,
            values=values,
            unset=unset,
        )
        answer = self._call(self._connect().SetConfig, request)
        layer = f"{scope}:{target}" if target else scope
        return ConfigChange(layer, answer.revision, tuple(answer.changed), answer.sites)

    def get_config(self, site: str) -> SiteConfig:
        """The effective configuration of `site`, secrets masked, with each key's layer."""
        answer = self._call(self._connect().GetConfig, admin_pb2.GetConfigRequest(site=site))
        entries = tuple(convert.record(ConfigEntry, e) for e in answer.entries)
        return convert.record(SiteConfig, answer, entries=entries)

    def config_history(self, limit: int = 50) -> list[ConfigRevision]:
        """The newest configuration revisions, at most `limit`."""
        request = admin_pb2.ConfigHistoryRequest(limit=limit)
        answer = self._call(self._connect().ConfigHistory, request)
        return [
            convert.record(
                ConfigRevision, r, scope=convert.scope_name(r.scope), changes=dict(r.changes)
            )
            for r in answer.revisions
        ]

    def config_rollout(self, group: str | None = None) -> list[RolloutRow]:
        """Desired vs applied revision of every site (optionally of one group)."""
        request = admin_pb2.ConfigRolloutRequest(group=group or "")
        answer = self._call(self._connect().ConfigRollout, request)
        return [convert.record(RolloutRow, row) for row in answer.sites]

    def send_command(self, site: str, kind: str) -> str:
        """Queue `backup-now` or `sync-now` for the agent of `site`; return the command id."""
        request = admin_pb2.SendCommandRequest(site=site, kind=convert.command_kind_value(kind))
        return self._call(self._connect().SendCommand, request).command_id

    def list_commands(self, site: str, limit: int = 20) -> list[Command]:
        """The newest remote commands of `site`, at most `limit`."""
        request = admin_pb2.ListCommandsRequest(site=site, limit=limit)
        answer = self._call(self._connect().ListCommands, request)
        return [
            convert.record(Command, c, kind=convert.command_kind_name(c.kind))
            for c in answer.commands
        ]

    def list_admin_tokens(self) -> list[AdminToken]:
        """Every admin token, active and revoked, oldest first."""
        request = admin_pb2.ListAdminTokensRequest()
        answer = self._call(self._connect().ListAdminTokens, request)
        return [convert.record(AdminToken, t) for t in answer.tokens]

    def revoke_admin_token(self, name: str) -> AdminToken:
        """Revoke the active admin token `name`; return it as revoked."""
        request = admin_pb2.RevokeAdminTokenRequest(name=name)
        return convert.record(
            AdminToken, self._call(self._connect().RevokeAdminToken, request).token
        )

    def list_alerts(self, site: str = "", limit: int = 50) -> AlertList:
        """The newest alert deliveries (of one site, or all), with totals."""
        request = admin_pb2.ListAlertsRequest(site=site, limit=limit)
        answer = self._call(self._connect().ListAlerts, request)
        return AlertList(
            deliveries=[convert.record(AlertDelivery, d) for d in answer.deliveries],
            pending=answer.pending,
            delivered=answer.delivered,
            failed=answer.failed,
            errors=answer.errors,
        )

    def list_snapshots(
        self, site: str, kind: str | None = None, limit: int = 50
    ) -> list[SnapshotSummary]:
        """The snapshots of `site` in the off-site store (optionally of one kind), newest first."""
        request = admin_pb2.ListSnapshotsRequest(
            site=site, kind=convert.snapshot_kind_value(kind), limit=limit
        )
        answer = self._call(self._connect().ListSnapshots, request)
        return [convert.snapshot(row) for row in answer.snapshots]

    def get_snapshot(
        self, site: str, snapshot_id: str = "", kind: str | None = None, backup_run_id: str = ""
    ) -> SealedSnapshotRecord:
        """One snapshot of `site` with its sealed record; the newest of `kind` when no id
        (with `backup_run_id`: the newest database snapshot copying that backup run)."""
        request = admin_pb2.GetSnapshotRequest(
            site=site,
            snapshot_id=snapshot_id,
            kind=convert.snapshot_kind_value(kind),
            backup_run_id=backup_run_id,
        )
        answer = self._call(self._connect().GetSnapshot, request)
        return SealedSnapshotRecord(convert.snapshot(answer.snapshot), answer.record)

    def list_site_keys(self, site: str) -> list[SiteDataKey]:
        """The sealed data keys of `site`, oldest first."""
        request = admin_pb2.ListSiteKeysRequest(site=site)
        answer = self._call(self._connect().ListSiteKeys, request)
        return [convert.record(SiteDataKey, k) for k in answer.keys]

    def fetch_chunks(self, site: str, ids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        """The sealed chunks `ids` of `site` as (id, blob), in request order (<= 1,000 ids),
        many to a message (a server before that sends one a message); a missing one stops
        the stream with NotFound naming it."""
        request = admin_pb2.FetchChunksRequest(
            site=site, ids=list(ids), max_message_bytes=FETCH_MESSAGE_BYTES
        )
        metadata = (("authorization", f"Bearer {token_of(self.settings)}"),)
        try:
            stream = self._connect().FetchChunks(
                request, timeout=self.settings.timeout, metadata=metadata
            )
            for message in stream:
                if message.chunks:
                    for chunk in message.chunks:
                        yield chunk.id, chunk.data
                else:
                    yield message.id, message.data
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.settings) from None

    def record_drill(self, drill: DrillReport) -> bool:
        """Record a restore drill as a run of its site; True when it was recorded already."""
        request = admin_pb2.RecordDrillRequest(site=drill.site, report=convert.drill_report(drill))
        return self._call(self._connect().RecordDrill, request).duplicate

    def verify_store(
        self, site: str = "", sample_percent: float = 100.0
    ) -> Iterator[StoreCheckUpdate]:
        """Have the server re-read and check stored chunks (of one site, or all), streaming
        progress and each site's result. No deadline: the stream lasts as long as the check."""
        request = admin_pb2.VerifyStoreRequest(site=site, sample_percent=sample_percent)
        metadata = (("authorization", f"Bearer {token_of(self.settings)}"),)
        try:
            for update in self._connect().VerifyStore(request, metadata=metadata):
                yield convert.store_check_update(update)
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.settings) from None

    # --- plumbing ----------------------------------------------------------

    def _connect(self) -> admin_pb2_grpc.AdminServiceStub:
        if self._stub is None:
            self._channel = open_channel(self.settings)
            self._stub = admin_pb2_grpc.AdminServiceStub(self._channel)
        return self._stub

    def _call(self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        metadata = (("authorization", f"Bearer {token_of(self.settings)}"),)
        try:
            return method(request, timeout=self.settings.timeout, metadata=metadata)
        except grpc.RpcError as err:
            raise error_from_rpc(err, self.settings) from None
