"""Revoking a site's agents against a real server: the open stream ends, nothing more gets
through, every later call is refused, and the site shows it until the agent enrolls again."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, agent_pb2, types_pb2

from tests.support.server import ServerHandle, create_enrollment_token, set_config
from tests.support.simagent import SimAgent, SimSession, close_all, enroll_many, next_config

FLEET = admin_pb2.CONFIG_SCOPE_FLEET


def good_backup(run_id: str) -> types_pb2.RunReport:
    now = dt.datetime.now(dt.UTC)
    started, finished = Timestamp(), Timestamp()
    started.FromDatetime(now - dt.timedelta(minutes=1))
    finished.FromDatetime(now)
    return types_pb2.RunReport(
        id=run_id,
        kind=types_pb2.RUN_KIND_BACKUP,
        started_at=started,
        finished_at=finished,
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        trigger="schedule",
        backup=types_pb2.BackupDetails(
            method="gbak", file="b.fbk.zst", verification=types_pb2.VERIFICATION_PASSED
        ),
    )


async def rest_of(stream: SimSession) -> tuple[list[str], grpc.StatusCode | None, str]:
    """Every directive until the stream ends, and the status it ended with."""
    seen: list[str] = []
    try:
        async for d in stream:
            seen.append(str(d.WhichOneof("kind")))
    except grpc.aio.AioRpcError as exc:
        return seen, exc.code(), exc.details() or ""
    return seen, None, ""


def session_refused(code: grpc.StatusCode | None, details: str) -> bool:
    """Whether a Session the server refused at once ended as refused on the client.

    The server answers UNAUTHENTICATED before reading the opening message; when the
    client's write of that message lands after the answer, grpc's asyncio client
    reports its own failed write instead (INTERNAL "Internal error from Core",
    grpc/grpc#36066). The WatchConfig call, with no client writes, shows the status.
    """
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return "revoked" in details
    return code is grpc.StatusCode.INTERNAL and "Internal error from Core" in details


def site_status(server: ServerHandle, site: str) -> admin_pb2.SiteSummary:
    return (
        server.admin_stub()
        .GetSite(admin_pb2.GetSiteRequest(site=site), metadata=server.admin_metadata, timeout=10)
        .summary
    )


async def refused(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code()


def test_revocation_ends_the_open_stream_and_nothing_later_gets_through(
    server: ServerHandle,
) -> None:
    site = "rv-live"

    async def body() -> None:
        [agent] = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, [site]
        )
        await agent.check_in()
        await agent.stub.ReportRun(
            agent_pb2.ReportRunRequest(report=good_backup("rv-live-1")),
            metadata=agent.metadata,
            timeout=10,
        )
        assert site_status(server, site).status == types_pb2.SITE_STATUS_OK
        stream = SimSession(agent)
        rev = set_config(server, FLEET, backup__keep_daily="5").revision
        assert (await next_config(stream)).revision == rev  # the stream is live

        server.admin_stub().RevokeAgents(
            admin_pb2.RevokeAgentsRequest(site=site), metadata=server.admin_metadata, timeout=10
        )
        # What an attacker holding the stream would want next: a secret and a command.
        set_config(server, FLEET, firebird__password="s3cret-after-revoke")
        server.admin_stub().SendCommand(
            admin_pb2.SendCommandRequest(site=site, kind=agent_pb2.COMMAND_KIND_BACKUP_NOW),
            metadata=server.admin_metadata,
            timeout=10,
        )
        seen, code, details = await asyncio.wait_for(rest_of(stream), 20)
        assert seen == [], "nothing is delivered on a revoked agent's stream"
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in details

        # Every later call is refused, a new stream included.
        assert await refused(agent.check_in()) == grpc.StatusCode.UNAUTHENTICATED
        assert await refused(agent.ack(rev)) == grpc.StatusCode.UNAUTHENTICATED
        report = agent_pb2.ReportRunRequest(report=good_backup("rv-live-2"))
        call = agent.stub.ReportRun(report, metadata=agent.metadata, timeout=10)
        assert await refused(call) == grpc.StatusCode.UNAUTHENTICATED
        again = SimSession(agent)
        seen, code, why = await asyncio.wait_for(rest_of(again), 20)
        assert seen == []
        assert session_refused(code, why), (code, why)
        watch = agent.watch()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in watch:
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # The site shows the revocation (not ok) until an agent enrolls again.
        shown = site_status(server, site)
        assert shown.status == types_pb2.SITE_STATUS_WARNING
        assert any(
            p.startswith("agent revoked at ") and f"storesafe token create --site {site}" in p
            for p in shown.problems
        ), shown.problems
        token = create_enrollment_token(server, site)
        reply = await agent.stub.Enroll(
            agent_pb2.EnrollRequest(token=token, site=site, hostname="sim"), timeout=10
        )
        back = SimAgent(site, reply.credential, agent.channel)
        await back.check_in()
        assert not any("revoked" in p for p in site_status(server, site).problems)
        await close_all([agent.channel])

    asyncio.run(body())
    assert "Traceback" not in server.log()
    assert "s3cret-after-revoke" not in server.log()


def test_a_re_enrollment_ends_the_old_agents_stream_but_not_the_new_ones(
    server: ServerHandle,
) -> None:
    site = "rv-reenroll"

    async def body() -> None:
        [old] = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, [site]
        )
        old_stream = SimSession(old)
        rev = set_config(server, FLEET, backup__keep_daily="6").revision
        assert (await next_config(old_stream)).revision == rev
        token = create_enrollment_token(server, site)
        reply = await old.stub.Enroll(
            agent_pb2.EnrollRequest(token=token, site=site, hostname="sim"), timeout=10
        )
        seen, code, _ = await asyncio.wait_for(rest_of(old_stream), 20)
        assert (seen, code) == ([], grpc.StatusCode.UNAUTHENTICATED)
        new = SimAgent(site, reply.credential, old.channel)
        new_stream = SimSession(new, running_revision=rev)
        rev2 = set_config(server, FLEET, backup__keep_daily="7").revision
        assert (await next_config(new_stream)).revision == rev2
        new_stream.cancel()
        await close_all([old.channel])

    asyncio.run(body())
