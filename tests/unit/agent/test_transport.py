"""ServerLink over real gRPC on loopback: auth metadata, TLS, limits, the error table."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from agent.domain.messages import CheckIn, EnrollRequest
from agent.domain.reports import BackupDetails
from agent.transport.channel import MAX_MESSAGE_BYTES, parse_address
from agent.transport.link import ServerLink
from common import errors
from tests.support.agentfakes import T0, make_tls, recording_server, report

CHECKIN = CheckIn(agent_version="0.1.0", hostname="pc1", os="Linux", agent_time=T0)


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(fn())  # type: ignore[arg-type]


def test_calls_carry_the_bearer_credential_except_enroll() -> None:
    async def go() -> None:
        async with (
            recording_server() as (address, servicer),
            ServerLink(address, insecure=True, credential="cred-1") as link,
        ):
            got = await link.enroll(
                EnrollRequest(token="tok", site="s1", hostname="h", agent_version="v", os="o")
            )
            reply = await link.check_in(CHECKIN)
            assert await link.report_run(report(1)) is False
            assert await link.report_run(report(1)) is True
        assert (got.agent_id, got.credential, got.group) == ("a1", "secret-tok", "g")
        assert (reply.checkin_interval_seconds, reply.desired_config_revision) == (42, 3)
        assert reply.server_time == T0
        assert "authorization" not in servicer.metadata[0]
        assert [m["authorization"] for m in servicer.metadata[1:]] == ["Bearer cred-1"] * 3
        assert list(servicer.reports) == ["report-0001"]

    run(go)


def test_without_a_credential_no_call_is_made() -> None:
    async def go() -> None:
        async with recording_server() as (address, servicer):
            async with ServerLink(address, insecure=True) as link:
                with pytest.raises(errors.Unauthenticated):
                    await link.check_in(CHECKIN)
            assert servicer.metadata == []

    run(go)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.INTERNAL, errors.Internal),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
    ],
)
def test_status_codes_become_typed_errors_with_the_servers_sentence(
    code: grpc.StatusCode, expected: type[errors.StoreSafeError]
) -> None:
    async def go() -> None:
        async with recording_server() as (address, servicer):
            servicer.abort_with = (code, "the credential was revoked")
            async with ServerLink(address, insecure=True, credential="c") as link:
                with pytest.raises(expected) as caught:
                    await link.report_run(report(1))
        assert type(caught.value) is expected
        assert "the credential was revoked" in str(caught.value)

    run(go)


def test_a_server_that_is_down_is_unavailable_naming_the_address() -> None:
    async def go() -> None:
        async with recording_server() as (address, _servicer):
            pass  # stopped again: nothing listens on the port now
        async with ServerLink(address, insecure=True, credential="c") as link:
            with pytest.raises(errors.Unavailable, match=address):
                await link.check_in(CHECKIN)

    run(go)


def test_tls_with_the_right_ca_works_and_a_wrong_ca_is_a_clear_error() -> None:
    tls, other = make_tls(), make_tls()

    async def go() -> None:
        async with recording_server(tls.server_credentials()) as (address, _servicer):
            async with ServerLink(address, ca_pem=tls.ca_pem, credential="c") as link:
                await link.check_in(CHECKIN)
            async with ServerLink(address, ca_pem=other.ca_pem, credential="c") as link:
                with pytest.raises(errors.Unavailable, match="TLS handshake"):
                    await link.check_in(CHECKIN)
            async with ServerLink(address, insecure=True, credential="c") as link:
                with pytest.raises(errors.Unavailable):
                    await link.check_in(CHECKIN)

    run(go)


def test_an_oversized_report_is_refused_before_it_is_sent() -> None:
    big = report(1, details=BackupDetails(verification_message="x" * (MAX_MESSAGE_BYTES + 1)))

    async def go() -> None:
        async with recording_server() as (address, servicer):
            async with ServerLink(address, insecure=True, credential="c") as link:
                with pytest.raises(errors.ResourceExhausted):
                    await link.report_run(big)
            assert servicer.reports == {}

    run(go)


def test_plaintext_is_only_for_loopback() -> None:
    with pytest.raises(errors.InvalidArgument, match="loopback"):
        ServerLink("10.1.2.3:7443", insecure=True)
    with pytest.raises(errors.InvalidArgument, match="loopback"):
        ServerLink("backup.example.com:7443", insecure=True)


@pytest.mark.parametrize(
    ("text", "target", "loopback"),
    [
        ("127.0.0.1:7443", "127.0.0.1:7443", True),
        ("localhost:1", "localhost:1", True),
        ("[::1]:7443", "[::1]:7443", True),
        (" backup.example.com:7443 ", "backup.example.com:7443", False),
    ],
)
def test_addresses_parse(text: str, target: str, loopback: bool) -> None:
    addr = parse_address(text)
    assert (addr.target, addr.is_loopback()) == (target, loopback)


@pytest.mark.parametrize(
    "text",
    ["", "host", "host:", ":7443", "host:0", "host:99999", "h st:1", "host:port", "[::1:7443"],
)
def test_bad_addresses_are_invalid_argument(text: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="HOST:PORT"):
        parse_address(text)
