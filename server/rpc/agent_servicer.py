"""AgentService: unpack, call one service function, pack (the gate authenticated the
caller before the request was decoded: server/rpc/gate.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from storesafe.v1 import agent_pb2, agent_pb2_grpc

from server.deferred import Deferred
from server.rpc.convert import agent as convert
from server.rpc.convert import offsite
from server.rpc.convert.stamps import ts
from server.rpc.errors import bearer, guarded, guarded_stream
from server.rpc.gate import agent_caller
from server.services.agents import AgentTraffic
from server.services.auth import Authenticator
from server.services.enrollment import Enrollment
from server.services.offsite import OffsiteUploads
from server.services.push import ConfigDirective, Directive
from server.services.revocation import Revocations

Ctx = grpc.aio.ServicerContext[Any, Any]

_PACKED_KEEP = 64


class _PackedDirectives:
    """Config directives converted once and shared by every stream that sends them.

    The hub hands the same ConfigDirective object to every stream of a fan-out, so the
    protobuf message is built once per distinct directive instead of once per stream
    (messages are only serialized after this, never changed).
    """

    def __init__(self) -> None:
        self._packed: dict[int, tuple[ConfigDirective, agent_pb2.AgentDirective]] = {}

    def pack(self, directive: Directive) -> agent_pb2.AgentDirective:
        if not isinstance(directive, ConfigDirective):
            return convert.directive(directive)
        found = self._packed.get(id(directive))
        if found is not None and found[0] is directive:
            return found[1]
        if len(self._packed) >= _PACKED_KEEP:
            self._packed.clear()
        msg = convert.directive(directive)
        self._packed[id(directive)] = (directive, msg)
        return msg


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        auth: Authenticator,
        enrollment: Enrollment,
        traffic: AgentTraffic,
        revocations: Revocations,
        offsite: OffsiteUploads,
    ) -> None:
        self._auth = auth
        self._offsite = offsite
        self._revocations = revocations
        self._enrollment = enrollment
        self._traffic = traffic
        self._packed = _PackedDirectives()

    @guarded
    async def Enroll(
        self, request: agent_pb2.EnrollRequest, context: Ctx
    ) -> agent_pb2.EnrollResponse:
        done = await self._enrollment.enroll(
            token=request.token,
            site=request.site,
            hostname=request.hostname,
            agent_version=request.agent_version,
            os=request.os,
        )
        await self._revocations.apply(done.site, keep=done.agent_id)  # the earlier agents
        return agent_pb2.EnrollResponse(
            agent_id=done.agent_id, credential=done.credential, site=done.site, group=done.group
        )

    @guarded
    async def CheckIn(
        self, request: agent_pb2.CheckInRequest, context: Ctx
    ) -> agent_pb2.CheckInResponse:
        who = agent_caller()
        # converted and judged by the writer (server/deferred.py), off the event loop
        facts = Deferred(convert.checkin_input, request)
        reply = await self._traffic.check_in(who, facts, claimed_site=request.site)
        return agent_pb2.CheckInResponse(
            server_time=ts(reply.server_time),
            desired_config_revision=reply.desired_config_revision,
            checkin_interval_seconds=reply.checkin_interval_seconds,
        )

    @guarded
    async def ReportRun(
        self, request: agent_pb2.ReportRunRequest, context: Ctx
    ) -> agent_pb2.ReportRunResponse:
        who = agent_caller()
        run = Deferred(convert.run_input, request.report)  # converted by the writer
        duplicate = await self._traffic.report(who, run, claimed_site=request.site)
        return agent_pb2.ReportRunResponse(duplicate=duplicate)

    @guarded_stream
    async def Session(
        self, request_iterator: AsyncIterator[agent_pb2.AgentEvent], context: Ctx
    ) -> AsyncIterator[agent_pb2.AgentDirective]:
        who = agent_caller()  # authenticated by the gate
        credential = bearer(context)  # for the stream's re-checks (no lookup here)
        opened = await convert.session_open(request_iterator)
        directives = self._traffic.session(
            who,
            running_revision=opened.running_revision,
            events=convert.agent_events(request_iterator),
            claimed_site=opened.site,
            recheck=lambda: self._auth.agent(credential),
        )
        async for directive in directives:
            yield self._packed.pack(directive)

    @guarded_stream
    async def WatchConfig(
        self, request: agent_pb2.WatchConfigRequest, context: Ctx
    ) -> AsyncIterator[agent_pb2.AgentDirective]:
        who = agent_caller()  # authenticated by the gate
        credential = bearer(context)  # for the stream's re-checks (no lookup here)
        directives = self._traffic.watch(
            who,
            running_revision=request.running_revision,
            claimed_site=request.site,
            recheck=lambda: self._auth.agent(credential),
        )
        async for directive in directives:
            yield self._packed.pack(directive)

    @guarded
    async def AckConfig(
        self, request: agent_pb2.AckConfigRequest, context: Ctx
    ) -> agent_pb2.AckConfigResponse:
        who = agent_caller()
        await self._traffic.ack_config(
            who,
            revision=request.revision,
            applied=request.applied,
            error=request.error,
            claimed_site=request.site,
        )
        return agent_pb2.AckConfigResponse()

    @guarded
    async def AckCommand(
        self, request: agent_pb2.AckCommandRequest, context: Ctx
    ) -> agent_pb2.AckCommandResponse:
        who = agent_caller()
        await self._traffic.ack_command(
            who,
            command_id=request.command_id,
            outcome=convert.command_outcome(request.outcome),
            message=request.message,
            claimed_site=request.site,
        )
        return agent_pb2.AckCommandResponse()

    @guarded
    async def PutSiteKey(
        self, request: agent_pb2.PutSiteKeyRequest, context: Ctx
    ) -> agent_pb2.PutSiteKeyResponse:
        duplicate = await self._offsite.put_site_key(
            agent_caller(),
            sealed_key=request.sealed_key,
            data_key_id=request.data_key_id,
            recovery_key_fingerprint=request.recovery_key_fingerprint,
            claimed_site=request.site,
        )
        return agent_pb2.PutSiteKeyResponse(duplicate=duplicate)

    @guarded
    async def MissingChunks(
        self, request: agent_pb2.MissingChunksRequest, context: Ctx
    ) -> agent_pb2.MissingChunksResponse:
        missing = await self._offsite.missing_chunks(
            agent_caller(), request.ids, claimed_site=request.site
        )
        return agent_pb2.MissingChunksResponse(missing=missing)

    @guarded
    async def PutChunks(
        self, request_iterator: AsyncIterator[agent_pb2.PutChunkRequest], context: Ctx
    ) -> agent_pb2.PutChunksResponse:
        done = await self._offsite.put_chunks(
            agent_caller(), offsite.chunk_uploads(request_iterator)
        )
        return agent_pb2.PutChunksResponse(
            stored=done.stored, duplicates=done.duplicates, bytes_stored=done.bytes_stored
        )

    @guarded
    async def CommitSnapshot(
        self, request_iterator: AsyncIterator[agent_pb2.CommitSnapshotRequest], context: Ctx
    ) -> agent_pb2.CommitSnapshotResponse:
        who = agent_caller()
        header, references = await offsite.commit_stream(request_iterator)
        duplicate = await self._offsite.commit_snapshot(who, header, references)
        return agent_pb2.CommitSnapshotResponse(duplicate=duplicate)
