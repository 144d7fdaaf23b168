"""Layered config, validation, push, acks, rollout and commands against a real server."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from storesafe.v1 import admin_pb2, agent_pb2

from agent.transport.link import session_messages
from tests.support.server import ServerHandle, rollout, set_config
from tests.support.simagent import (
    SimAgent,
    SimSession,
    aio_channel,
    close_all,
    enroll_many,
    next_config,
)

FLEET, GROUP, SITE = (
    admin_pb2.CONFIG_SCOPE_FLEET,
    admin_pb2.CONFIG_SCOPE_GROUP,
    admin_pb2.CONFIG_SCOPE_SITE,
)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backup.nope": "1"}, "unknown configuration key 'backup.nope'"),
        (
            {"backup.keep_daily": "seven"},
            "backup.keep_daily='seven' is not valid: expected a whole",
        ),
        ({"upload.enabled": "maybe"}, "upload.enabled='maybe' is not valid: expected true or"),
        (
            {"backup.schedule": "0 25 * * *"},
            "backup.schedule='0 25 * * *' is not valid: expected a",
        ),
        (
            {"backup.dir": "C:\\Back<ups"},
            "backup.dir='C:\\\\Back<ups' is not valid: a path may not",
        ),
        ({"backup.dir": "Backups"}, "expected an absolute path"),
        ({"backup.method": "copy"}, "expected one of gbak, nbackup"),
        ({"backup.keep_daily": "-1"}, "must be at least 0"),
        ({"firebird.host": "db/99999"}, "the port must be between 1 and 65535"),
        ({"firebird.user": ""}, "firebird.user='' is not valid: may not be empty"),
        ({"backup.schedule": "0 0 31 2 *"}, "'0 0 31 2 *' is not valid: it never fires"),
        ({"upload.max_run_minutes": "0"}, "upload.max_run_minutes='0' is not valid: must be at"),
    ],
)
def test_bad_values_are_refused_with_the_key_and_reason(
    shared_server: ServerHandle, values: dict[str, str], message: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        shared_server.admin_stub().SetConfig(
            admin_pb2.SetConfigRequest(scope=FLEET, values=values),
            metadata=shared_server.admin_metadata,
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (err.value.details() or "")


def test_a_fleet_change_with_a_target_is_refused_not_applied_fleet_wide(
    shared_server: ServerHandle,
) -> None:
    stub, md = shared_server.admin_stub(), shared_server.admin_metadata
    before = stub.ConfigHistory(admin_pb2.ConfigHistoryRequest(limit=1), metadata=md, timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        stub.SetConfig(
            admin_pb2.SetConfigRequest(
                scope=FLEET, target="shop-1", values={"backup.keep_daily": "3"}
            ),
            metadata=md,
            timeout=10,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "a fleet-wide change takes no target (got 'shop-1')" in (err.value.details() or "")
    after = stub.ConfigHistory(admin_pb2.ConfigHistoryRequest(limit=1), metadata=md, timeout=10)
    assert after == before  # no revision was made


def test_layers_explain_and_secrets_stay_masked(server: ServerHandle) -> None:
    async def body() -> None:
        [agent] = await enroll_many(
            server.address,
            server.ca_path.read_bytes(),
            server.admin_token,
            ["shop-1"],
            group="east",
        )
        set_config(server, FLEET, backup__keep_daily="10", firebird__password="hunter2")
        set_config(server, GROUP, "east", backup__keep_daily="12", backup__method="nbackup")
        rev = set_config(server, SITE, "shop-1", backup__method="gbak").revision
        shown = server.admin_stub().GetConfig(
            admin_pb2.GetConfigRequest(site="shop-1"), metadata=server.admin_metadata
        )
        entries = {e.key: (e.value, e.layer) for e in shown.entries}
        assert entries["backup.keep_daily"] == ("12", "group:east")
        assert entries["backup.method"] == ("gbak", "site:shop-1")
        assert entries["backup.keep_weekly"] == ("4", "default")
        assert entries["firebird.password"] == ("********", "fleet")
        assert shown.desired_revision == rev
        history = server.admin_stub().ConfigHistory(
            admin_pb2.ConfigHistoryRequest(), metadata=server.admin_metadata
        )
        assert [r.revision for r in history.revisions] == [rev, rev - 1, rev - 2]
        assert dict(history.revisions[2].changes)["firebird.password"] == "********"
        # the agent gets the real secret over its own stream
        call = agent.watch()
        update = await next_config(call)
        assert update.revision == rev
        assert update.values["firebird.password"].text == "hunter2"
        assert update.values["backup.keep_daily"].integer == 12
        call.cancel()
        await close_all([agent.channel])
        audit = server.admin_stub().ListAudit(
            admin_pb2.ListAuditRequest(), metadata=server.admin_metadata
        )
        assert all("hunter2" not in e.details for e in audit.entries)
        assert "hunter2" not in server.log()

    asyncio.run(body())


def test_live_push_ack_refusal_and_offline_agent_gets_latest_only(server: ServerHandle) -> None:
    async def body() -> None:
        a, b = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, ["s-a", "s-b"]
        )
        call = a.watch()
        rev1 = set_config(server, FLEET, backup__keep_daily="8").revision
        update = await next_config(call, timeout=5)  # pushed: no check-in interval waited
        assert update.revision == rev1
        await a.ack(rev1)
        # b is away during three revisions
        for n in (9, 10, 11):
            last = set_config(server, FLEET, backup__keep_daily=str(n)).revision
        seen = [(await next_config(call, timeout=5)).revision]
        while seen[-1] != last:  # a connected agent may see each one, in order
            seen.append((await next_config(call, timeout=5)).revision)
        assert seen == sorted(seen) and seen[-1] == last
        b_call = b.watch(running_revision=0)
        b_update = await next_config(b_call, timeout=5)
        assert b_update.revision == last and b_update.values["backup.keep_daily"].integer == 11
        with pytest.raises(asyncio.TimeoutError):
            await next_config(b_call, timeout=0.5)
        await b.ack(last, applied=False, error="backup.dir does not exist on this PC")
        await a.ack(last)
        rollout = {
            r.site: r
            for r in server.admin_stub()
            .ConfigRollout(admin_pb2.ConfigRolloutRequest(), metadata=server.admin_metadata)
            .sites
        }
        assert (rollout["s-a"].state, rollout["s-a"].applied_revision) == ("applied", last)
        assert rollout["s-b"].state == "refused"
        assert rollout["s-b"].refused == "backup.dir does not exist on this PC"
        site = server.admin_stub().GetSite(
            admin_pb2.GetSiteRequest(site="s-b"), metadata=server.admin_metadata
        )
        assert (
            "configuration refused: backup.dir does not exist on this PC" in site.summary.problems
        )
        # a check-in reporting the running revision is the truth even without an ack
        newer = set_config(server, FLEET, backup__keep_daily="5").revision
        reply = await b.check_in(running_revision=newer)
        assert reply.desired_config_revision == newer
        rollout = {
            r.site: r
            for r in server.admin_stub()
            .ConfigRollout(admin_pb2.ConfigRolloutRequest(), metadata=server.admin_metadata)
            .sites
        }
        assert rollout["s-b"].state == "applied" and rollout["s-a"].state == "pending"
        call.cancel()
        b_call.cancel()
        await close_all([a.channel, b.channel])

    asyncio.run(body())


def test_commands_are_delivered_redelivered_until_acked_and_acked_once(
    shared_server: ServerHandle,
) -> None:
    server = shared_server
    (s_cmd,) = _names("s-cmd")

    async def body() -> None:
        [agent] = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, [s_cmd]
        )
        admin = server.admin_stub()
        sent = admin.SendCommand(
            admin_pb2.SendCommandRequest(site=s_cmd, kind=agent_pb2.COMMAND_KIND_BACKUP_NOW),
            metadata=server.admin_metadata,
        )

        async def first_command(call: object) -> agent_pb2.Command:
            async for d in call:  # type: ignore[attr-defined]
                if d.HasField("command"):
                    return d.command
            raise EOFError

        call = agent.watch()
        cmd = await asyncio.wait_for(first_command(call), 5)
        assert cmd.id == sent.command_id and cmd.kind == agent_pb2.COMMAND_KIND_BACKUP_NOW
        call.cancel()
        # not acked: a new stream gets it again (the agent dedupes by id)
        call = agent.watch()
        again = await asyncio.wait_for(first_command(call), 5)
        assert again.id == cmd.id
        for _ in range(2):  # a duplicated ack changes nothing
            await agent.stub.AckCommand(
                agent_pb2.AckCommandRequest(
                    command_id=cmd.id,
                    outcome=agent_pb2.COMMAND_OUTCOME_REJECTED,
                    message="backup is not configured on this agent",
                ),
                metadata=agent.metadata,
            )
        states = admin.ListCommands(
            admin_pb2.ListCommandsRequest(site=s_cmd), metadata=server.admin_metadata
        ).commands
        assert [(c.state, c.message) for c in states] == [
            ("rejected", "backup is not configured on this agent")
        ]
        call.cancel()
        call = agent.watch()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(first_command(call), 0.7)
        call.cancel()
        with pytest.raises(grpc.RpcError) as err:
            admin.SendCommand(
                admin_pb2.SendCommandRequest(site="nope", kind=agent_pb2.COMMAND_KIND_SYNC_NOW),
                metadata=server.admin_metadata,
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        await close_all([agent.channel])

    asyncio.run(body())


def test_an_agent_cannot_watch_or_ack_for_another_site(shared_server: ServerHandle) -> None:
    server = shared_server
    own_a, own_b = _names("own-a", "own-b")

    async def body() -> None:
        a, b = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, [own_a, own_b]
        )
        call = a.stub.WatchConfig(agent_pb2.WatchConfigRequest(site=own_b), metadata=a.metadata)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await next_config(call, timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        sent = server.admin_stub().SendCommand(
            admin_pb2.SendCommandRequest(site=own_b, kind=agent_pb2.COMMAND_KIND_SYNC_NOW),
            metadata=server.admin_metadata,
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await a.stub.AckCommand(
                agent_pb2.AckCommandRequest(
                    command_id=sent.command_id, outcome=agent_pb2.COMMAND_OUTCOME_SUCCEEDED
                ),
                metadata=a.metadata,
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        await close_all([a.channel, b.channel])

    asyncio.run(body())


def _names(*prefixes: str) -> list[str]:
    """Site names of one test's own on the shared server."""
    tag = uuid.uuid4().hex[:6]
    return [f"{p}-{tag}" for p in prefixes]


async def _until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def test_session_pushes_and_takes_acks_on_the_same_stream(shared_server: ServerHandle) -> None:
    server = shared_server
    (sess_a,) = _names("sess-a")

    async def body() -> None:
        [agent] = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, [sess_a]
        )
        session = SimSession(agent)
        rev = set_config(server, SITE, sess_a, backup__keep_daily="6").revision
        update = await next_config(session, timeout=5)
        assert update.revision == rev and update.values["backup.keep_daily"].integer == 6
        session.ack(rev)
        await _until(lambda: rollout(server)[sess_a].state == "applied")
        assert rollout(server)[sess_a].applied_revision == rev
        newer = set_config(server, SITE, sess_a, backup__keep_daily="7").revision
        assert (await next_config(session, timeout=5)).revision == newer
        session.ack(newer, applied=False, error="backup.dir is missing")
        await _until(lambda: rollout(server)[sess_a].state == "refused")
        assert rollout(server)[sess_a].refused == "backup.dir is missing"
        # a command arrives on the stream, and its outcome may go back on it too
        sent = server.admin_stub().SendCommand(
            admin_pb2.SendCommandRequest(site=sess_a, kind=agent_pb2.COMMAND_KIND_SYNC_NOW),
            metadata=server.admin_metadata,
        )

        async def first_command() -> agent_pb2.Command:
            async for d in session:
                if d.HasField("command"):
                    return d.command
            raise EOFError

        cmd = await asyncio.wait_for(first_command(), 5)
        assert cmd.id == sent.command_id
        session.send(
            agent_pb2.AgentEvent(
                command_ack=agent_pb2.AckCommandRequest(
                    command_id=cmd.id, outcome=agent_pb2.COMMAND_OUTCOME_SUCCEEDED, message="ok"
                )
            )
        )

        def finished() -> bool:
            listed = server.admin_stub().ListCommands(
                admin_pb2.ListCommandsRequest(site=sess_a), metadata=server.admin_metadata
            )
            return [c.state for c in listed.commands] == ["succeeded"]

        await _until(finished)
        session.cancel()
        await close_all([agent.channel])

    asyncio.run(body())


@pytest.mark.parametrize(
    ("events", "code"),
    [
        (["ack"], grpc.StatusCode.INVALID_ARGUMENT),  # not opened first
        (["open", "open"], grpc.StatusCode.INVALID_ARGUMENT),  # opened twice
        (["open-other"], grpc.StatusCode.PERMISSION_DENIED),  # another site's stream
        (["open", "ack-other"], grpc.StatusCode.PERMISSION_DENIED),  # an ack for another site
        (["open", "ack-negative"], grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_session_refuses_bad_messages_with_a_precise_status(
    shared_server: ServerHandle, events: list[str], code: grpc.StatusCode
) -> None:
    server = shared_server
    own, other = _names("bad-a", "bad-b")

    async def body() -> None:
        a, _b = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, [own, other]
        )
        queue: asyncio.Queue[agent_pb2.AgentEvent | None] = asyncio.Queue()
        made = {
            "open": agent_pb2.AgentEvent(open=agent_pb2.WatchConfigRequest()),
            "open-other": agent_pb2.AgentEvent(open=agent_pb2.WatchConfigRequest(site=other)),
            "ack": agent_pb2.AgentEvent(config_ack=agent_pb2.AckConfigRequest(revision=1)),
            "ack-other": agent_pb2.AgentEvent(
                config_ack=agent_pb2.AckConfigRequest(revision=1, applied=True, site=other)
            ),
            "ack-negative": agent_pb2.AgentEvent(
                config_ack=agent_pb2.AckConfigRequest(revision=-1, applied=True)
            ),
        }
        for name in events:
            queue.put_nowait(made[name])

        call = a.stub.Session(session_messages(queue), metadata=a.metadata)

        async def until_refused() -> None:  # a directive the server sends first is no answer
            while await call.read() is not grpc.aio.EOF:
                pass
            raise AssertionError("the stream ended without a status")

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(until_refused(), 5)
        assert err.value.code() == code
        queue.put_nowait(None)
        await close_all([a.channel])

    asyncio.run(body())


def test_a_stopping_server_tells_every_stream_when_to_come_back(server: ServerHandle) -> None:
    async def body() -> list[agent_pb2.AgentDirective]:
        agents = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, ["bye-1", "bye-2"]
        )
        sessions = [SimSession(a) for a in agents]
        rev = set_config(server, FLEET, backup__keep_daily="4").revision
        for s in sessions:
            assert (await next_config(s, timeout=5)).revision == rev
        stopping = asyncio.get_running_loop().run_in_executor(None, server.stop)

        async def rest(s: SimSession) -> list[agent_pb2.AgentDirective]:
            # until the stream ends; one the server held until its grace period ran out
            # would be cancelled then, and the CANCELLED status would raise here
            return [d async for d in s]

        last = [d for s in sessions for d in await asyncio.wait_for(rest(s), 10)]
        assert await stopping == 0
        for s in sessions:
            s.cancel()
        await close_all([a.channel for a in agents])
        return last

    last = asyncio.run(body())
    assert [d.WhichOneof("kind") for d in last] == ["reconnect", "reconnect"]
    assert all(d.reconnect.within_seconds == 5 for d in last)  # the floor, for two agents
    assert "told 2 connected agent(s) to reconnect within 5 s" in server.log()


def test_an_open_command_survives_a_restart_and_reaches_the_reconnecting_agent(
    server: ServerHandle,
) -> None:
    async def enroll() -> tuple[str, str]:
        [agent] = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, ["cmd-restart"]
        )
        await close_all([agent.channel])
        return agent.site, agent.credential

    site, credential = asyncio.run(enroll())
    sent = server.admin_stub().SendCommand(
        admin_pb2.SendCommandRequest(site=site, kind=agent_pb2.COMMAND_KIND_BACKUP_NOW),
        metadata=server.admin_metadata,
    )
    server.restart()
    assert "cached the credentials of 1 active agent(s)" in server.log()

    async def reconnect() -> agent_pb2.Command:
        agent = SimAgent(site, credential, aio_channel(server.address, server.ca_path.read_bytes()))
        session = SimSession(agent)

        async def first_command() -> agent_pb2.Command:
            async for d in session:
                if d.HasField("command"):
                    return d.command
            raise EOFError

        try:
            return await asyncio.wait_for(first_command(), 5)
        finally:
            session.cancel()
            await close_all([agent.channel])

    assert asyncio.run(reconnect()).id == sent.command_id
