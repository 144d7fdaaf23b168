"""Simulated agents speaking the real AgentService over real gRPC (tests and benches)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import grpc
from storesafe.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc

from agent.transport.link import session_messages


@dataclasses.dataclass
class SimAgent:
    site: str
    credential: str
    channel: grpc.aio.Channel

    @property
    def stub(self) -> agent_pb2_grpc.AgentServiceStub:
        return agent_pb2_grpc.AgentServiceStub(self.channel)

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.credential}")]

    async def check_in(self, running_revision: int = 0) -> agent_pb2.CheckInResponse:
        return await self.stub.CheckIn(
            agent_pb2.CheckInRequest(
                agent_version="sim", hostname="sim", os="sim", config_revision=running_revision
            ),
            metadata=self.metadata,
            timeout=10,
        )

    def watch(self, running_revision: int = 0) -> grpc.aio.UnaryStreamCall:  # type: ignore[type-arg]
        return self.stub.WatchConfig(
            agent_pb2.WatchConfigRequest(running_revision=running_revision),
            metadata=self.metadata,
        )

    async def ack(self, revision: int, applied: bool = True, error: str = "") -> None:
        await self.stub.AckConfig(
            agent_pb2.AckConfigRequest(revision=revision, applied=applied, error=error),
            metadata=self.metadata,
            timeout=10,
        )


class SimSession:
    """A two-way Session stream of one SimAgent: iterate it for directives, ack on it."""

    def __init__(self, agent: SimAgent, running_revision: int = 0, site: str = "") -> None:
        self._queue: asyncio.Queue[agent_pb2.AgentEvent | None] = asyncio.Queue()
        opening = agent_pb2.WatchConfigRequest(running_revision=running_revision, site=site)
        self._queue.put_nowait(agent_pb2.AgentEvent(open=opening))
        self.call = agent.stub.Session(session_messages(self._queue), metadata=agent.metadata)

    def __aiter__(self) -> AsyncIterator[agent_pb2.AgentDirective]:
        return self.call.__aiter__()

    def send(self, event: agent_pb2.AgentEvent) -> None:
        self._queue.put_nowait(event)

    def ack(self, revision: int, applied: bool = True, error: str = "", site: str = "") -> None:
        request = agent_pb2.AckConfigRequest(
            revision=revision, applied=applied, error=error, site=site
        )
        self.send(agent_pb2.AgentEvent(config_ack=request))

    def cancel(self) -> None:
        self._queue.put_nowait(None)
        self.call.cancel()


def aio_channel(address: str, ca: bytes) -> grpc.aio.Channel:
    return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca))


async def enroll_many(
    address: str,
    ca: bytes,
    admin_token: str,
    sites: list[str],
    *,
    group: str = "default",
    channels: int = 4,
) -> list[SimAgent]:
    """Create a token and enroll one simulated agent per site, spread over a few channels."""
    chans = [aio_channel(address, ca) for _ in range(channels)]
    admin = admin_pb2_grpc.AdminServiceStub(chans[0])
    md = [("authorization", f"Bearer {admin_token}")]
    sem = asyncio.Semaphore(64)

    async def one(i: int, site: str) -> SimAgent:
        async with sem:
            tok = await admin.CreateEnrollmentToken(
                admin_pb2.CreateEnrollmentTokenRequest(site=site, group=group),
                metadata=md,
                timeout=30,
            )
            ch = chans[i % channels]
            resp = await agent_pb2_grpc.AgentServiceStub(ch).Enroll(
                agent_pb2.EnrollRequest(token=tok.token, site=site, hostname="sim"), timeout=30
            )
            return SimAgent(site, resp.credential, ch)

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(sites))))


async def next_config(
    call: AsyncIterator[agent_pb2.AgentDirective], timeout: float = 10.0
) -> agent_pb2.ConfigUpdate:
    """The next config directive on a stream (commands are skipped)."""

    async def read() -> agent_pb2.ConfigUpdate:
        async for d in call:
            if d.HasField("config"):
                return d.config
        raise EOFError("stream ended")

    return await asyncio.wait_for(read(), timeout)


async def close_all(channels: list[grpc.aio.Channel]) -> None:
    for ch in {id(c): c for c in channels}.values():
        with contextlib.suppress(Exception):
            await ch.close()
