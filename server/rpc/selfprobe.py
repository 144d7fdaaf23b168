"""A gRPC health check of this server against its own port, for `/healthz`."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.errors import Unavailable


class SelfProbe:
    """Asks the server's own gRPC health service over one reused loopback channel."""

    def __init__(self, host: str, port: int, ca_pem: bytes | None) -> None:
        self._target = f"{_reachable(host)}:{port}"
        self._ca = ca_pem
        self._channel: grpc.aio.Channel | None = None

    async def __call__(self) -> None:
        if self._channel is None:
            if self._ca is None:
                self._channel = grpc.aio.insecure_channel(self._target)
            else:
                creds = grpc.ssl_channel_credentials(self._ca)
                self._channel = grpc.aio.secure_channel(self._target, creds)
        stub = health_pb2_grpc.HealthStub(self._channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise Unavailable("the gRPC server is not serving")

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None


def _reachable(host: str) -> str:
    """Where to reach a server listening on `host` from this machine."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard bind is reached on loopback
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
