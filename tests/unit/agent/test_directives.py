"""The directive stream and its acknowledgements, over real gRPC on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from storesafe.v1 import agent_pb2

from agent.domain.messages import ConfigPush, RemoteCommand, ServerGoingAway
from agent.transport import convert
from agent.transport.link import ServerLink
from common import errors
from tests.support.agentfakes import T0, recording_server


def config_directive(revision: int, **values: Any) -> agent_pb2.AgentDirective:
    msg = agent_pb2.AgentDirective()
    msg.config.revision = revision
    for key, value in values.items():
        field = {bool: "flag", int: "integer", float: "number", str: "text"}[type(value)]
        setattr(msg.config.values[key.replace("__", ".")], field, value)
    return msg


def command_directive(cid: str, kind: int) -> agent_pb2.AgentDirective:
    msg = agent_pb2.AgentDirective()
    msg.command.id = cid
    msg.command.kind = kind
    msg.command.created_by = "admin"
    msg.command.created_at.CopyFrom(convert.timestamp(T0))
    return msg


def test_pushed_config_and_commands_arrive_as_domain_values() -> None:
    async def go() -> list[Any]:
        async with recording_server() as (address, servicer):
            servicer.directives = [
                config_directive(
                    4,
                    backup__dir="/srv/b",
                    backup__keep_daily=7,
                    upload__enabled=True,
                    upload__bandwidth_kbps=12.5,
                ),
                command_directive("c1", agent_pb2.COMMAND_KIND_BACKUP_NOW),
                command_directive("c2", agent_pb2.COMMAND_KIND_UNSPECIFIED),
                agent_pb2.AgentDirective(reconnect=agent_pb2.Reconnect(within_seconds=25)),
                agent_pb2.AgentDirective(),  # something newer than this agent: skipped
            ]
            async with ServerLink(address, insecure=True, credential="c") as link:
                got = [d async for d in link.watch(running_revision=3, site="shop-1")]
            assert servicer.watch_requests[0].running_revision == 3
            assert servicer.metadata[0]["authorization"] == "Bearer c"
            return got

    got = asyncio.run(go())
    assert got == [
        ConfigPush(
            revision=4,
            values={
                "backup.dir": "/srv/b",
                "backup.keep_daily": 7,
                "upload.enabled": True,
                "upload.bandwidth_kbps": 12.5,
            },
        ),
        RemoteCommand(id="c1", kind="backup-now", created_at=T0, created_by="admin"),
        RemoteCommand(id="c2", kind="", created_at=T0, created_by="admin"),
        ServerGoingAway(within_seconds=25),
    ]


def test_acks_reach_the_server() -> None:
    async def go() -> list[Any]:
        async with recording_server() as (address, servicer):
            async with ServerLink(address, insecure=True, credential="c") as link:
                await link.ack_config(revision=4, applied=False, error="bad path", site="s")
                await link.ack_command(command_id="c1", outcome="rejected", message="no job")
                with pytest.raises(errors.InvalidArgument):
                    await link.ack_command(command_id="c1", outcome="exploded")
            return servicer.acks

    config_ack, command_ack = asyncio.run(go())
    assert (config_ack.revision, config_ack.applied, config_ack.error, config_ack.site) == (
        4,
        False,
        "bad path",
        "s",
    )
    assert (command_ack.command_id, command_ack.outcome, command_ack.message) == (
        "c1",
        agent_pb2.COMMAND_OUTCOME_REJECTED,
        "no job",
    )


def test_a_refused_stream_is_a_typed_error() -> None:
    async def go() -> None:
        async with recording_server() as (address, servicer):
            servicer.abort_with = (grpc.StatusCode.UNAUTHENTICATED, "revoked")
            async with ServerLink(address, insecure=True, credential="c") as link:
                with pytest.raises(errors.Unauthenticated, match="revoked"):
                    async for _ in link.watch(running_revision=0):
                        pass

    asyncio.run(go())


def test_a_server_going_away_mid_stream_is_unavailable() -> None:
    async def go() -> None:
        async with recording_server() as (address, servicer):
            servicer.directives = [command_directive("c1", agent_pb2.COMMAND_KIND_SYNC_NOW)]
            servicer.hold_stream = True
            link = ServerLink(address, insecure=True, credential="c")
            stream = link.watch(running_revision=0)
            first = await anext(stream)
            assert isinstance(first, RemoteCommand)
        # The server stopped with the stream open.
        with pytest.raises(errors.Unavailable):
            await anext(stream)
        await link.close()

    asyncio.run(go())


def test_the_stream_deadline_ends_it_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.transport.link.WATCH_TIMEOUT", 0.3)

    async def go() -> list[Any]:
        async with recording_server() as (address, servicer):
            servicer.hold_stream = True
            async with ServerLink(address, insecure=True, credential="c") as link:
                return [d async for d in link.watch(running_revision=0)]

    assert asyncio.run(go()) == []


def test_config_acks_ride_the_open_stream() -> None:
    async def go() -> list[Any]:
        async with recording_server() as (address, servicer):
            servicer.directives = [config_directive(5, backup__keep_daily=3)]
            servicer.hold_stream = True
            async with ServerLink(address, insecure=True, credential="c") as link:
                stream = link.watch(running_revision=4)
                first = await anext(stream)
                assert isinstance(first, ConfigPush) and first.revision == 5
                await link.ack_config(revision=5, applied=True)
                # the ack is a message on the stream: no reply to wait for, the servicer says
                await asyncio.wait_for(servicer.stream_acked.wait(), 10)
                await stream.aclose()  # type: ignore[attr-defined]
            assert servicer.acks == []  # no AckConfig call
            return servicer.stream_acks

    [ack] = asyncio.run(go())
    assert isinstance(ack, agent_pb2.AckConfigRequest) and (ack.revision, ack.applied) == (5, True)
