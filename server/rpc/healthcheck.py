"""The gRPC health probe of `storesafe-server health`: ask a server whether it is serving.

Used by the container's HEALTHCHECK, compose and systemd: one Check call of
grpc.health.v1 over TLS (the data dir's CA) or plaintext on loopback, answered
as a `HealthAnswer`, never a traceback.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # one sentence, not gRPC core's log

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = "SERVING"


@dataclasses.dataclass(frozen=True)
class HealthAnswer:
    """`status` is SERVING, NOT_SERVING, UNKNOWN, or UNREACHABLE / NOT_FOUND; `detail` says why."""

    status: str
    detail: str = ""

    @property
    def serving(self) -> bool:
        return self.status == SERVING


def check(
    address: str,
    *,
    ca_pem: bytes | None,
    service: str = "",
    timeout: float = 5.0,
    server_name: str | None = None,
) -> HealthAnswer:
    """Ask `address` for the health of `service` ("" = the whole server); plaintext when
    `ca_pem` is None. `server_name` overrides the name the certificate must carry."""
    if ca_pem is None:
        channel = grpc.insecure_channel(address)
    else:
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        channel = grpc.secure_channel(address, creds, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            if code == grpc.StatusCode.NOT_FOUND:
                return HealthAnswer(
                    "NOT_FOUND", f"the server does not know the service {service!r}"
                )
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return HealthAnswer("UNREACHABLE", f"no answer from {address} within {timeout:g} s")
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            first = (details or "").splitlines()[0] if details else ""
            return HealthAnswer("UNREACHABLE", f"cannot reach {address}: {first[:200]}")
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return HealthAnswer(name)
