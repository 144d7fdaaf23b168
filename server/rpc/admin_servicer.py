"""AdminService: unpack, authenticate the admin, call one service function, pack."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc
from storesafe.v1 import admin_pb2, admin_pb2_grpc

from common.errors import FailedPrecondition
from server.alerting.queries import AlertQueries
from server.rpc.convert import admin as convert
from server.rpc.convert import enums, offsite
from server.rpc.convert.agent import run_input
from server.rpc.convert.sitelist import SummaryEncoder
from server.rpc.convert.stamps import ts
from server.rpc.errors import bearer, guarded, guarded_stream
from server.services.admin_tokens import AdminTokens
from server.services.auth import Authenticator
from server.services.commands import Commands
from server.services.config import ConfigService
from server.services.drills import Drills
from server.services.enrollment import Enrollment
from server.services.fleet import FleetQueries
from server.services.snapshots import SnapshotQueries
from server.services.storecheck import StoreChecks

Ctx = grpc.aio.ServicerContext[Any, Any]


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        auth: Authenticator,
        enrollment: Enrollment,
        fleet: FleetQueries,
        config: ConfigService,
        commands: Commands,
        *,
        admin_tokens: AdminTokens,
        alerts: AlertQueries | None = None,
        snapshots: SnapshotQueries | None = None,
        drills: Drills | None = None,
        store_checks: StoreChecks | None = None,
    ) -> None:
        self._store_checks = store_checks
        self._drills = drills
        self._snapshot_queries = snapshots
        self._admin_tokens = admin_tokens
        self._auth = auth
        self._enrollment = enrollment
        self._fleet = fleet
        self._config = config
        self._commands = commands
        self._alerts = alerts
        self._summaries = SummaryEncoder()

    @guarded
    async def CreateEnrollmentToken(
        self, request: admin_pb2.CreateEnrollmentTokenRequest, context: Ctx
    ) -> admin_pb2.CreateEnrollmentTokenResponse:
        admin = await self._auth.admin(bearer(context))
        ttl = dt.timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else None
        issued = await self._enrollment.create_token(
            admin, site=request.site, group=request.group, ttl=ttl
        )
        return admin_pb2.CreateEnrollmentTokenResponse(
            token=issued.token, expires_at=ts(issued.expires_at)
        )

    @guarded
    async def ListSites(
        self, request: admin_pb2.ListSitesRequest, context: Ctx
    ) -> admin_pb2.ListSitesResponse:
        await self._auth.admin(bearer(context))
        status = enums.enum_name(enums.STATUS_NAMES, request.status)  # unknown: its number
        views = await self._fleet.list_sites(status=status, group=request.group)
        return self._summaries.response(views)

    @guarded
    async def GetSite(
        self, request: admin_pb2.GetSiteRequest, context: Ctx
    ) -> admin_pb2.GetSiteResponse:
        await self._auth.admin(bearer(context))
        return convert.site_detail(await self._fleet.site(request.site))

    @guarded
    async def ListRuns(
        self, request: admin_pb2.ListRunsRequest, context: Ctx
    ) -> admin_pb2.ListRunsResponse:
        await self._auth.admin(bearer(context))
        runs = await self._fleet.runs(
            site=request.site,
            kind=enums.enum_name(enums.KIND_NAMES, request.kind),  # unknown: its number
            limit=request.limit,
        )
        return admin_pb2.ListRunsResponse(runs=[convert.run_msg(r) for r in runs])

    @guarded
    async def RevokeAgents(
        self, request: admin_pb2.RevokeAgentsRequest, context: Ctx
    ) -> admin_pb2.RevokeAgentsResponse:
        admin = await self._auth.admin(bearer(context))
        return admin_pb2.RevokeAgentsResponse(revoked=await self._fleet.revoke(admin, request.site))

    @guarded
    async def ListAudit(
        self, request: admin_pb2.ListAuditRequest, context: Ctx
    ) -> admin_pb2.ListAuditResponse:
        await self._auth.admin(bearer(context))
        records = await self._fleet.audit_log(limit=request.limit)
        return admin_pb2.ListAuditResponse(entries=[convert.audit_entry(r) for r in records])

    @guarded
    async def SetConfig(
        self, request: admin_pb2.SetConfigRequest, context: Ctx
    ) -> admin_pb2.SetConfigResponse:
        admin = await self._auth.admin(bearer(context))
        change = await self._config.set(
            admin,
            scope=enums.SCOPE_NAMES.get(request.scope, ""),
            target=request.target,
            values=dict(request.values),
            unset=list(request.unset),
        )
        return admin_pb2.SetConfigResponse(
            revision=change.revision, changed=change.changed, sites=change.sites
        )

    @guarded
    async def GetConfig(
        self, request: admin_pb2.GetConfigRequest, context: Ctx
    ) -> admin_pb2.GetConfigResponse:
        await self._auth.admin(bearer(context))
        return convert.site_config(await self._config.show(request.site))

    @guarded
    async def ConfigHistory(
        self, request: admin_pb2.ConfigHistoryRequest, context: Ctx
    ) -> admin_pb2.ConfigHistoryResponse:
        await self._auth.admin(bearer(context))
        revisions = await self._config.history(limit=request.limit)
        return admin_pb2.ConfigHistoryResponse(
            revisions=[convert.revision_msg(r) for r in revisions]
        )

    @guarded
    async def ConfigRollout(
        self, request: admin_pb2.ConfigRolloutRequest, context: Ctx
    ) -> admin_pb2.ConfigRolloutResponse:
        await self._auth.admin(bearer(context))
        rows = await self._fleet.rollout(group=request.group)
        return admin_pb2.ConfigRolloutResponse(sites=[convert.rollout_row(r) for r in rows])

    @guarded
    async def SendCommand(
        self, request: admin_pb2.SendCommandRequest, context: Ctx
    ) -> admin_pb2.SendCommandResponse:
        admin = await self._auth.admin(bearer(context))
        cmd = await self._commands.send(
            admin, site=request.site, kind=enums.enum_name(enums.COMMAND_KIND_NAMES, request.kind)
        )
        return admin_pb2.SendCommandResponse(command_id=cmd.id)

    @guarded
    async def ListCommands(
        self, request: admin_pb2.ListCommandsRequest, context: Ctx
    ) -> admin_pb2.ListCommandsResponse:
        await self._auth.admin(bearer(context))
        cmds = await self._commands.list(site=request.site, limit=request.limit)
        return admin_pb2.ListCommandsResponse(commands=[convert.command_state(c) for c in cmds])

    @guarded
    async def AcceptChange(
        self, request: admin_pb2.AcceptChangeRequest, context: Ctx
    ) -> admin_pb2.AcceptChangeResponse:
        admin = await self._auth.admin(bearer(context))
        done = await self._fleet.accept_change(admin, request.site, run_id=request.run_id)
        return admin_pb2.AcceptChangeResponse(run_id=done.run_id, cleared=done.cleared)

    @guarded
    async def ListAdminTokens(
        self, request: admin_pb2.ListAdminTokensRequest, context: Ctx
    ) -> admin_pb2.ListAdminTokensResponse:
        await self._auth.admin(bearer(context))
        found = await self._admin_tokens.list()
        return admin_pb2.ListAdminTokensResponse(tokens=[convert.admin_token(t) for t in found])

    @guarded
    async def RevokeAdminToken(
        self, request: admin_pb2.RevokeAdminTokenRequest, context: Ctx
    ) -> admin_pb2.RevokeAdminTokenResponse:
        admin = await self._auth.admin(bearer(context))
        revoked = await self._admin_tokens.revoke(actor=admin.name, name=request.name)
        return admin_pb2.RevokeAdminTokenResponse(token=convert.admin_token(revoked))

    @guarded
    async def ListAlerts(
        self, request: admin_pb2.ListAlertsRequest, context: Ctx
    ) -> admin_pb2.ListAlertsResponse:
        await self._auth.admin(bearer(context))
        if self._alerts is None:
            raise FailedPrecondition("alerting is not running on this server")
        found = await self._alerts.deliveries(site=request.site, limit=request.limit)
        return convert.alert_list(found)

    @guarded
    async def ListSnapshots(
        self, request: admin_pb2.ListSnapshotsRequest, context: Ctx
    ) -> admin_pb2.ListSnapshotsResponse:
        await self._auth.admin(bearer(context))
        found = await self._snapshots().list_snapshots(
            request.site, kind=offsite.kind_name(request.kind), limit=request.limit
        )
        return admin_pb2.ListSnapshotsResponse(
            snapshots=[offsite.snapshot_summary(s) for s in found]
        )

    @guarded
    async def GetSnapshot(
        self, request: admin_pb2.GetSnapshotRequest, context: Ctx
    ) -> admin_pb2.GetSnapshotResponse:
        await self._auth.admin(bearer(context))
        found = await self._snapshots().get_snapshot(
            request.site,
            snapshot_id=request.snapshot_id,
            kind=offsite.kind_name(request.kind),
            backup_run_id=request.backup_run_id,
        )
        return admin_pb2.GetSnapshotResponse(
            snapshot=offsite.snapshot_summary(found.snapshot), record=found.record
        )

    @guarded
    async def ListSiteKeys(
        self, request: admin_pb2.ListSiteKeysRequest, context: Ctx
    ) -> admin_pb2.ListSiteKeysResponse:
        await self._auth.admin(bearer(context))
        keys = await self._snapshots().site_keys(request.site)
        return admin_pb2.ListSiteKeysResponse(keys=[offsite.site_key(k) for k in keys])

    @guarded_stream
    async def FetchChunks(
        self, request: admin_pb2.FetchChunksRequest, context: Ctx
    ) -> AsyncIterator[admin_pb2.FetchedChunk]:
        await self._auth.admin(bearer(context))
        groups = await self._snapshots().fetch_chunks(request.site, request.ids)
        async for message in offsite.fetched_chunks(groups, request.max_message_bytes):
            yield message

    @guarded
    async def RecordDrill(
        self, request: admin_pb2.RecordDrillRequest, context: Ctx
    ) -> admin_pb2.RecordDrillResponse:
        admin = await self._auth.admin(bearer(context))
        if self._drills is None:
            raise FailedPrecondition("this server does not record restore drills")
        duplicate = await self._drills.record(admin, request.site, run_input(request.report))
        return admin_pb2.RecordDrillResponse(duplicate=duplicate)

    @guarded_stream
    async def VerifyStore(
        self, request: admin_pb2.VerifyStoreRequest, context: Ctx
    ) -> AsyncIterator[admin_pb2.VerifyStoreUpdate]:
        admin = await self._auth.admin(bearer(context))
        if self._store_checks is None:
            raise FailedPrecondition("the off-site store is not running on this server")
        updates = await self._store_checks.verify(admin, request.site, request.sample_percent)
        async for update in updates:
            yield offsite.verify_update(update)

    def _snapshots(self) -> SnapshotQueries:
        if self._snapshot_queries is None:
            raise FailedPrecondition("the off-site store is not running on this server")
        return self._snapshot_queries
