"""ServerLink: the agent's calls to the server, in domain types, with deadlines and auth.

Every call has a deadline; every call but Enroll sends the credential as
"authorization: Bearer <credential>"; every gRPC failure comes out as a
`common.errors` class (see `errors.error_from_rpc`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import grpc
from storesafe.v1 import agent_pb2, agent_pb2_grpc

from agent.domain.messages import CheckIn, CheckInReply, Directive, Enrollment, EnrollRequest
from agent.domain.reports import RunReport
from agent.settings import Credentials, StateDir
from agent.transport import convert
from agent.transport.channel import MAX_MESSAGE_BYTES, open_channel
from agent.transport.errors import error_from_rpc, status_code
from common.errors import ResourceExhausted, Unauthenticated

T = TypeVar("T")
R = TypeVar("R")

ENROLL_TIMEOUT = 20.0
CHECKIN_TIMEOUT = 15.0
REPORT_TIMEOUT = 30.0
ACK_TIMEOUT = 15.0
WATCH_TIMEOUT = 3600.0
"""A directive stream is reopened at least hourly, so a half-dead connection cannot hide."""


class ServerLink:
    """One channel to the server; create inside the event loop that uses it."""

    def __init__(
        self,
        address: str,
        *,
        ca_pem: bytes | None = None,
        insecure: bool = False,
        credential: str | None = None,
        max_reconnect_seconds: float = 30.0,
    ) -> None:
        self.address = address
        self._credential = credential
        self._channel = open_channel(
            address, ca_pem=ca_pem, insecure=insecure, max_reconnect_seconds=max_reconnect_seconds
        )
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._session: asyncio.Queue[agent_pb2.AgentEvent | None] | None = None

    @classmethod
    def for_agent(
        cls, state: StateDir, creds: Credentials, *, max_reconnect_seconds: float = 30.0
    ) -> ServerLink:
        """A link that acts as the enrolled agent described by `creds`."""
        return cls(
            creds.server,
            ca_pem=state.read_ca(creds),
            insecure=creds.insecure,
            credential=creds.credential,
            max_reconnect_seconds=max_reconnect_seconds,
        )

    async def enroll(self, request: EnrollRequest) -> Enrollment:
        """Trade a one-time token for this agent's credential."""
        reply = await self._call(
            self._stub.Enroll(convert.enroll_to_proto(request), timeout=ENROLL_TIMEOUT)
        )
        return convert.enrollment_from_proto(reply)

    async def check_in(self, checkin: CheckIn) -> CheckInReply:
        """Tell the server this agent is alive; learn the interval and desired config."""
        reply = await self._call(
            self._stub.CheckIn(
                convert.checkin_to_proto(checkin),
                timeout=CHECKIN_TIMEOUT,
                metadata=self._auth(),
            )
        )
        return convert.checkin_reply_from_proto(reply)

    async def report_run(self, report: RunReport) -> bool:
        """Deliver one report; True when the server already had it (a replay)."""
        request = agent_pb2.ReportRunRequest(report=convert.report_to_proto(report))
        size = request.ByteSize()
        if size > MAX_MESSAGE_BYTES:  # the channel would send it (PutChunks may be larger)
            raise ResourceExhausted(
                f"the run report is {size} bytes; the server takes at most "
                f"{MAX_MESSAGE_BYTES} bytes a report"
            )
        reply = await self._call(
            self._stub.ReportRun(request, timeout=REPORT_TIMEOUT, metadata=self._auth())
        )
        return reply.duplicate

    async def watch(
        self, *, running_revision: int, site: str = ""
    ) -> AsyncGenerator[Directive, None]:
        """Hold the directive stream (a two-way Session) open and yield what the server pushes.

        While it is open, config acks travel on it (see ack_config). Ends quietly when
        the server closes the stream or after WATCH_TIMEOUT (call again to reopen); a
        lost connection raises Unavailable.
        """
        outgoing: asyncio.Queue[agent_pb2.AgentEvent | None] = asyncio.Queue()
        opening = agent_pb2.WatchConfigRequest(running_revision=running_revision, site=site)
        outgoing.put_nowait(agent_pb2.AgentEvent(open=opening))
        call = self._stub.Session(
            session_messages(outgoing), timeout=WATCH_TIMEOUT, metadata=self._auth()
        )
        self._session = outgoing
        try:
            async for msg in call:
                directive = convert.directive_from_proto(msg)
                if directive is not None:
                    yield directive
        except grpc.RpcError as exc:
            if status_code(exc) is grpc.StatusCode.DEADLINE_EXCEEDED:
                return
            raise error_from_rpc(exc, address=self.address) from exc
        finally:
            if self._session is outgoing:
                self._session = None
            outgoing.put_nowait(None)
            call.cancel()

    async def ack_config(
        self, *, revision: int, applied: bool, error: str = "", site: str = ""
    ) -> None:
        """Tell the server whether a pushed revision was applied, or why not.

        On the open Session stream when there is one (no call of its own: a fan-out to
        thousands of agents costs the server one message each, not one call each; an
        ack lost with the stream is repaired by the next check-in, which carries the
        running revision); otherwise as an AckConfig call.
        """
        request = agent_pb2.AckConfigRequest(
            revision=revision, applied=applied, error=error[:500], site=site
        )
        if self._session is not None:
            self._session.put_nowait(agent_pb2.AgentEvent(config_ack=request))
            return
        await self._call(self._stub.AckConfig(request, timeout=ACK_TIMEOUT, metadata=self._auth()))

    async def ack_command(
        self, *, command_id: str, outcome: str, message: str = "", site: str = ""
    ) -> None:
        """Report how a remote command ended: "succeeded", "failed" or "rejected".

        Always its own call: a command's outcome is worth an answer, and a long
        command may end after the stream it came on has broken.
        """
        request = convert.ack_command_to_proto(command_id, outcome, message, site)
        await self._call(self._stub.AckCommand(request, timeout=ACK_TIMEOUT, metadata=self._auth()))

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def __aenter__(self) -> ServerLink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def stub(self) -> agent_pb2_grpc.AgentServiceAsyncStub:
        """The generated stub, for the call modules of this package (agent.transport.store)."""
        return self._stub

    def raw_stream_unary(
        self, method: str, response_deserializer: Callable[[bytes], R]
    ) -> grpc.aio.StreamUnaryMultiCallable[bytes, R]:
        """The AgentService call `method` sending requests already serialized (bytes, as
        agent.transport.wire encodes them), for the call modules of this package."""
        service = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
        return self._channel.stream_unary(
            f"/{service}/{method}",
            request_serializer=None,
            response_deserializer=response_deserializer,
        )

    def auth(self) -> tuple[tuple[str, str], ...]:
        """The call metadata that carries this agent's credential."""
        return self._auth()

    async def call(self, call: Awaitable[T]) -> T:
        """Await `call`; a gRPC failure comes out as its `common.errors` class."""
        return await self._call(call)

    def _auth(self) -> tuple[tuple[str, str], ...]:
        if not self._credential:
            raise Unauthenticated("this agent has no credential; enroll it first")
        return (("authorization", f"Bearer {self._credential}"),)

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.RpcError as exc:
            raise error_from_rpc(exc, address=self.address) from exc


async def session_messages(
    queue: asyncio.Queue[agent_pb2.AgentEvent | None],
) -> AsyncIterator[agent_pb2.AgentEvent]:
    """The messages of a Session call: whatever is put on `queue`, until None."""
    while (event := await queue.get()) is not None:
        yield event
