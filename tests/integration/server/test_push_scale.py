"""Push under stress: a server restart with 1,000 open streams, and replicas on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from storesafe.v1 import admin_pb2, agent_pb2

from tests.support.server import (
    BIN,
    PG_ENV,
    ServerHandle,
    free_port,
    fresh_pg_database,
    init_server,
    set_config,
)
from tests.support.simagent import SimAgent, SimSession, close_all, enroll_many, next_config


async def follow(agent: SimAgent, want: int, *, deadline: float) -> int:
    """Hold a stream like a real agent: reconnect with jittered backoff until `want` arrives."""
    running, delay = 0, 0.2
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        call = agent.watch(running_revision=running)
        try:
            async for d in call:
                if d.HasField("config"):
                    running = d.config.revision
                    if running >= want:
                        call.cancel()
                        return running
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise
        await asyncio.sleep(random.uniform(0, delay))
        delay = min(delay * 2, 3.0)
    return running


def test_restart_with_a_thousand_open_streams(tmp_path: Path) -> None:
    h = init_server(tmp_path)
    h.start()

    async def body() -> None:
        agents = await enroll_many(
            h.address,
            h.ca_path.read_bytes(),
            h.admin_token,
            [f"r{i:04d}" for i in range(1000)],
            channels=8,
        )
        rev1 = set_config(h, admin_pb2.CONFIG_SCOPE_FLEET, backup__keep_daily="3").revision
        calls = [a.watch() for a in agents]
        got = await asyncio.gather(*(next_config(c, timeout=60) for c in calls))
        assert {u.revision for u in got} == {rev1}
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(h.restart)  # every stream is told to come back, and ends

        async def rest(c: Any) -> list[str]:
            return [d.WhichOneof("kind") async for d in c]

        ends = await asyncio.gather(*(asyncio.wait_for(rest(c), 10) for c in calls))
        assert ends == [["reconnect"]] * 1000
        rev2 = set_config(h, admin_pb2.CONFIG_SCOPE_FLEET, backup__keep_daily="4").revision
        deadline = loop.time() + 90
        revisions = await asyncio.gather(*(follow(a, rev2, deadline=deadline) for a in agents))
        assert revisions == [rev2] * 1000
        rollout = h.admin_stub().ConfigRollout(
            admin_pb2.ConfigRolloutRequest(), metadata=h.admin_metadata, timeout=30
        )
        assert len(rollout.sites) == 1000
        await close_all([a.channel for a in agents])

    try:
        asyncio.run(body())
        assert "Traceback" not in h.log()
    finally:
        h.stop()


@dataclasses.dataclass
class Replicas:
    a: ServerHandle
    b: ServerHandle


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    if not os.environ.get(PG_ENV):
        pytest.skip(f"replica tests need PostgreSQL ({PG_ENV}, set by .ci/run)")
    with fresh_pg_database() as url:
        a = init_server(tmp_path, db_url=url, extra_args=("--poll-seconds", "30"))
        b = dataclasses.replace(a, address=f"127.0.0.1:{free_port()}", proc=None)
        a.start()
        b.start()
        try:
            yield Replicas(a, b)
        finally:
            a.stop()
            b.stop()


@pytest.mark.postgres
def test_a_change_made_on_one_replica_reaches_agents_on_the_other(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b

    async def body() -> None:
        [agent] = await enroll_many(a.address, a.ca_path.read_bytes(), a.admin_token, ["rep-1"])
        on_b = SimAgent(
            agent.site,
            agent.credential,
            grpc.aio.secure_channel(
                b.address, grpc.ssl_channel_credentials(b.ca_path.read_bytes())
            ),
        )
        call = on_b.watch()  # subscribed before or after the change: the update comes either way
        rev = set_config(a, admin_pb2.CONFIG_SCOPE_FLEET, backup__keep_daily="21").revision
        update = await next_config(call, timeout=5)  # well under the 30 s poll: LISTEN/NOTIFY
        assert update.revision == rev and update.values["backup.keep_daily"].integer == 21
        sent = a.admin_stub().SendCommand(
            admin_pb2.SendCommandRequest(site="rep-1", kind=agent_pb2.COMMAND_KIND_BACKUP_NOW),
            metadata=a.admin_metadata,
        )

        async def command() -> str:
            async for d in call:
                if d.HasField("command"):
                    return d.command.id
            raise EOFError

        assert await asyncio.wait_for(command(), 5) == sent.command_id
        await on_b.ack(rev)
        shown = b.admin_stub().GetConfig(
            admin_pb2.GetConfigRequest(site="rep-1"), metadata=b.admin_metadata
        )
        assert (shown.desired_revision, shown.applied_revision) == (rev, rev)
        call.cancel()
        # B has the credential cached; a revocation made on A reaches it by NOTIFY
        await on_b.check_in()
        a.admin_stub().RevokeAgents(
            admin_pb2.RevokeAgentsRequest(site="rep-1"), metadata=a.admin_metadata
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        refused = None
        while loop.time() < deadline and refused is None:
            try:
                await on_b.check_in()
                await asyncio.sleep(0.2)
            except grpc.aio.AioRpcError as exc:
                refused = exc.code()
        assert refused == grpc.StatusCode.UNAUTHENTICATED
        await close_all([agent.channel, on_b.channel])

    asyncio.run(body())


@pytest.mark.postgres
def test_a_revocation_on_one_replica_ends_the_stream_on_the_other(replicas: Replicas) -> None:
    a, b = replicas.a, replicas.b

    async def body() -> None:
        [agent] = await enroll_many(a.address, a.ca_path.read_bytes(), a.admin_token, ["rep-rv"])
        on_b = SimAgent(
            agent.site,
            agent.credential,
            grpc.aio.secure_channel(
                b.address, grpc.ssl_channel_credentials(b.ca_path.read_bytes())
            ),
        )
        await on_b.check_in()  # B has the credential cached
        stream = SimSession(on_b)
        rev = set_config(a, admin_pb2.CONFIG_SCOPE_FLEET, backup__keep_daily="9").revision
        assert (await next_config(stream)).revision == rev  # the stream on B is live
        a.admin_stub().RevokeAgents(
            admin_pb2.RevokeAgentsRequest(site="rep-rv"), metadata=a.admin_metadata, timeout=10
        )
        set_config(a, admin_pb2.CONFIG_SCOPE_FLEET, firebird__password="after-revoke")
        seen: list[str] = []

        async def rest() -> grpc.StatusCode | None:
            try:
                async for d in stream:
                    seen.append(str(d.WhichOneof("kind")))
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return None

        # well under the 30 s poll: the NOTIFY ends it
        assert await asyncio.wait_for(rest(), 10) == grpc.StatusCode.UNAUTHENTICATED
        assert seen == []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await on_b.check_in()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        shown = b.admin_stub().GetSite(
            admin_pb2.GetSiteRequest(site="rep-rv"), metadata=b.admin_metadata, timeout=10
        )
        assert any(p.startswith("agent revoked") for p in shown.summary.problems)
        await close_all([agent.channel, on_b.channel])

    asyncio.run(body())


@pytest.mark.postgres
def test_an_admin_token_revoked_on_one_replica_is_refused_on_the_other(
    replicas: Replicas,
) -> None:
    a, b = replicas.a, replicas.b
    made = subprocess.run(
        [
            str(BIN / "storesafe-server"),
            "admin-token",
            "create",
            "--data-dir",
            str(a.data_dir),
            "--db",
            a.db_url,
            "--name",
            "temp-tech",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    temp = json.loads(made.stdout)["admin_token"]
    temp_md = [("authorization", f"Bearer {temp}")]
    b.admin_stub().ListAudit(admin_pb2.ListAuditRequest(limit=1), metadata=temp_md, timeout=10)
    a.admin_stub().RevokeAdminToken(
        admin_pb2.RevokeAdminTokenRequest(name="temp-tech"), metadata=a.admin_metadata, timeout=10
    )
    with pytest.raises(grpc.RpcError) as err:
        b.admin_stub().ListAudit(admin_pb2.ListAuditRequest(limit=1), metadata=temp_md, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
