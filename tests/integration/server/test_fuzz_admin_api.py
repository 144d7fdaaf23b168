"""Fuzz every AdminService RPC of the real server (hypothesis), with the admin token and
without: whatever a client sends, no call ends UNKNOWN or INTERNAL, the log gets no
traceback, and the server answers health afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from storesafe.v1 import admin_pb2

from tests.support.protofuzz import NASTY_TEXT, hostile_bytes
from tests.support.server import ServerHandle, start_server

SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
FUZZ = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NEVER = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED,
}


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, Any]]:
    server = start_server(tmp_path_factory.mktemp("fuzz-admin"))
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    try:
        with grpc.secure_channel(server.address, creds) as ch:
            yield server, ch
    finally:
        server.stop()


def send(ch: grpc.Channel, method: str, data: bytes, metadata: Any) -> grpc.StatusCode:
    try:
        if method.endswith("/FetchChunks"):  # the one server stream
            stream = ch.unary_stream(method, request_serializer=None, response_deserializer=None)
            for _ in stream(data, metadata=metadata, timeout=10):
                pass
        else:
            call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
            call(data, metadata=metadata, timeout=10)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("name", [m.name for m in SERVICE.methods])
def test_fuzz_admin_rpcs(admin_server: tuple[ServerHandle, Any], name: str) -> None:
    server, ch = admin_server
    rpc = SERVICE.methods_by_name[name]
    method = f"/{SERVICE.full_name}/{name}"
    seed = message_factory.GetMessageClass(rpc.input_type)().SerializeToString()

    @FUZZ
    @given(data=hostile_bytes(rpc.input_type, [seed], NASTY_TEXT))
    def one(data: bytes) -> None:
        code = send(ch, method, data, server.admin_metadata)
        assert code not in NEVER, (name, code, data)
        assert send(ch, method, data, []) == grpc.StatusCode.UNAUTHENTICATED

    one()
    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert server.log_path is not None
    log = Path(server.log_path).read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]
