"""The stable error code on the wire: the server's guard sends it, the agent and the CLI
raise the class the server raised, over real gRPC on loopback.

A small servicer wrapped in the server's own guard (server/rpc/errors.py) raises
each error the server can raise; the real server shows the same for the calls it
refuses in its gate and its servicers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest
from grpc import aio
from storesafe.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc

from agent.domain.messages import CheckIn
from agent.transport.link import ServerLink
from cli.client.admin import AdminClient
from cli.client.settings import Settings
from common import errors
from common.wire_errors import ERROR_CODE_KEY
from server.rpc.errors import STATUS, guarded, guarded_stream
from server.rpc.gate import UndecodableRequest
from tests.support.server import ServerHandle

CHECKIN = CheckIn(
    agent_version="0.1.0",
    hostname="pc1",
    os="Linux",
    agent_time=dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC),
)
GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field number of 0 with a truncated varint


class SiteOnFire(errors.FailedPrecondition):
    """A server error with a code no client knows yet (a newer server)."""

    code = "site_on_fire"


class Raising(agent_pb2_grpc.AgentServiceServicer, admin_pb2_grpc.AdminServiceServicer):
    """Every call raises `self.error` inside the server's guard."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @guarded
    async def CheckIn(self, request: Any, context: Any) -> Any:
        raise self.error

    @guarded_stream
    async def Session(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        raise self.error
        yield agent_pb2.AgentDirective()  # an async generator, like the real Session

    @guarded
    async def GetSite(self, request: Any, context: Any) -> Any:
        raise self.error


@asynccontextmanager
async def raising_server(error: Exception) -> AsyncIterator[str]:
    """A loopback grpc.aio server whose every call raises `error`; yields its address."""
    servicer = Raising(error)
    server = aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def agent_check_in(address: str) -> None:
    async with ServerLink(address, insecure=True, credential="c") as link:
        await link.check_in(CHECKIN)


async def agent_watch(address: str) -> None:
    async with ServerLink(address, insecure=True, credential="c") as link:
        async for _ in link.watch(running_revision=0):
            pass


def cli_get_site(address: str) -> None:
    client = AdminClient(Settings(server=address, token="ssadm_x_y", insecure=True, timeout=5))
    try:
        client.get_site("shop-a")
    finally:
        client.close()


def raw_code(address: str) -> str | None:
    """The stable code in the trailing metadata of a failed CheckIn, read by hand."""
    with grpc.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        try:
            stub.CheckIn(agent_pb2.CheckInRequest(), timeout=5)
        except grpc.RpcError as err:
            assert isinstance(err, grpc.Call)
            return dict(err.trailing_metadata() or ()).get(ERROR_CODE_KEY)
    raise AssertionError("the call succeeded")


SERVER_ERRORS = [*STATUS, UndecodableRequest]
"""Every class server/rpc/errors.py maps, and the gate's own subclass."""


async def raised_by_clients(address: str) -> list[errors.StoreSafeError]:
    """What the agent (a unary call and the Session stream) and the CLI raise."""
    found = []
    calls: list[Callable[[], Awaitable[None]]] = [
        lambda: agent_check_in(address),
        lambda: agent_watch(address),
        lambda: asyncio.to_thread(cli_get_site, address),
    ]
    for call in calls:
        try:
            await call()
        except errors.StoreSafeError as exc:
            found.append(exc)
        else:
            raise AssertionError("the call succeeded")
    return found


def _nearest(cls: type[errors.StoreSafeError]) -> type[errors.StoreSafeError]:
    return next(c for c in cls.__mro__ if c in STATUS)


@pytest.mark.parametrize("cls", SERVER_ERRORS, ids=lambda c: c.__name__)
def test_agent_and_cli_raise_the_class_the_server_raised(cls: type[errors.StoreSafeError]) -> None:
    async def go() -> None:
        async with raising_server(cls("the site 'shop-a' is busy")) as address:
            assert await asyncio.to_thread(raw_code, address) == cls.code
            agent_unary, agent_stream, cli = await raised_by_clients(address)
        for exc in (agent_unary, agent_stream, cli):
            assert (type(exc), exc.code) == (_nearest(cls), cls.code)
        assert agent_unary.message == agent_stream.message == "the site 'shop-a' is busy"
        if cls is errors.Unauthenticated:  # the CLI's own sentence says what to check
            assert cli.message.startswith("the admin token was refused by")
        else:
            assert "the site 'shop-a' is busy" in cli.message

    asyncio.run(go())


def test_an_unexpected_server_error_is_internal_with_its_code() -> None:
    async def go() -> None:
        async with raising_server(RuntimeError("a bug")) as address:
            assert await asyncio.to_thread(raw_code, address) == "internal"
            agent_unary, agent_stream, cli = await raised_by_clients(address)
        for exc in (agent_unary, agent_stream, cli):
            assert type(exc) is errors.Internal
        assert agent_unary.message == "the server hit an unexpected error; see its log"
        assert (
            cli.message
            == "the StoreSafe server failed: the server hit an unexpected error; see its log"
        )

    asyncio.run(go())


def test_an_unknown_code_falls_back_on_the_status() -> None:
    async def go() -> None:
        async with raising_server(SiteOnFire("the site 'shop-a' is on fire")) as address:
            assert await asyncio.to_thread(raw_code, address) == "site_on_fire"
            found = await raised_by_clients(address)
        for exc in found:
            assert type(exc) is errors.FailedPrecondition
            assert exc.message == "the site 'shop-a' is on fire"

    asyncio.run(go())


def test_the_servers_own_unavailable_reason_is_not_taken_for_no_server() -> None:
    # Without the code, "connection refused" in the details reads as gRPC's own words
    # (no server at all); with it, both clients pass on the server's sentence.
    reason = "cannot use the database postgresql://s@db/s: connection refused"

    async def go() -> None:
        async with raising_server(errors.Unavailable(reason)) as address:
            found = await raised_by_clients(address)
        for exc in found:
            assert type(exc) is errors.Unavailable
            assert exc.message == reason

    asyncio.run(go())


# --- the real server --------------------------------------------------------------


def _code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str | None]:
    try:
        call()
    except grpc.RpcError as err:
        assert isinstance(err, grpc.Call)
        return err.code(), dict(err.trailing_metadata() or ()).get(ERROR_CODE_KEY)
    raise AssertionError("the call succeeded")


def test_the_real_server_sends_the_code_from_its_servicers_and_its_gate(
    shared_server: ServerHandle,
) -> None:
    stub = shared_server.admin_stub()
    md = shared_server.admin_metadata
    missing = admin_pb2.GetSiteRequest(site="no-such-site-anywhere")
    assert _code_of(lambda: stub.GetSite(missing, metadata=md, timeout=10)) == (
        grpc.StatusCode.NOT_FOUND,
        "not_found",
    )
    # refused by the gate before decoding: no credential, a malformed one
    assert _code_of(lambda: stub.GetSite(missing, timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "unauthenticated",
    )
    bad = [("authorization", "Bearer not-a-token")]
    assert _code_of(lambda: stub.GetSite(missing, metadata=bad, timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "unauthenticated",
    )
    # refused by the gate: a request that does not decode
    creds = grpc.ssl_channel_credentials(shared_server.ca_path.read_bytes())
    with grpc.secure_channel(shared_server.address, creds) as channel:
        garbage = channel.unary_unary(
            "/storesafe.v1.AdminService/GetSite",
            request_serializer=None,
            response_deserializer=None,
        )
        assert _code_of(lambda: garbage(GARBAGE, metadata=md, timeout=10)) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_argument",
        )

    settings = Settings(
        server=shared_server.address, token=shared_server.admin_token, ca=shared_server.ca_path
    )
    client = AdminClient(settings)
    with pytest.raises(errors.NotFound) as caught:
        client.get_site("no-such-site-anywhere")
    client.close()
    assert type(caught.value) is errors.NotFound


def test_the_real_server_refuses_an_agent_with_the_code(shared_server: ServerHandle) -> None:
    async def go() -> None:
        ca = shared_server.ca_path.read_bytes()
        async with ServerLink(shared_server.address, ca_pem=ca, credential="ssa_x_y") as link:
            with pytest.raises(errors.Unauthenticated) as caught:
                await link.check_in(CHECKIN)
        assert type(caught.value) is errors.Unauthenticated

    asyncio.run(go())
