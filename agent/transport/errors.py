"""The one table that turns gRPC status codes into StoreSafe errors on the agent.

Callers above the transport catch `common.errors` classes, never grpc.RpcError.
"""

from __future__ import annotations

import re

import grpc
from grpc import aio

from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    StoreSafeError,
    Unauthenticated,
    Unavailable,
)

STATUS_TO_ERROR: dict[grpc.StatusCode, type[StoreSafeError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.CANCELLED: Unavailable,
    grpc.StatusCode.ABORTED: Unavailable,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNIMPLEMENTED: Internal,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}

_TLS_HINTS = ("handshake", "CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "SSL")
# What gRPC's resolvers (c-ares and the system's) say when the server's host name does not
# resolve; it names the address, unlike a reason the server gives (its database's host).
_DNS = re.compile(r"(?:dns resolution failed for|errors resolving) (?P<target>\S+?):? ", re.I)


def error_from_rpc(exc: grpc.RpcError, *, address: str) -> StoreSafeError:
    """The StoreSafe error for a failed call to the server at `address`."""
    code, details = _code_and_details(exc)
    cls = STATUS_TO_ERROR.get(code, Internal)
    if cls is Unavailable:
        return Unavailable(_unavailable_message(code, details, address))
    if details:
        return cls(details.strip())
    return cls(f"the server at {address} answered {code.name}")


def status_code(exc: grpc.RpcError) -> grpc.StatusCode:
    """The status code of a failed call (UNKNOWN when it carries none)."""
    return _code_and_details(exc)[0]


def _code_and_details(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, aio.AioRpcError):
        return exc.code(), exc.details() or ""
    if isinstance(exc, grpc.Call):
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.UNKNOWN, str(exc)


def _unavailable_message(code: grpc.StatusCode, details: str, address: str) -> str:
    found = _DNS.search(details)
    if found is not None and found["target"].removeprefix("dns:///") == address:
        host = address.rpartition(":")[0].strip("[]")
        return f"cannot resolve the host name '{host}' of the server {address}: check --server"
    if any(hint in details for hint in _TLS_HINTS):
        return (
            f"the TLS handshake with the server at {address} failed: its certificate is not "
            "signed by the trusted CA or does not name this address"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the server at {address} did not answer in time"
    return f"cannot reach the StoreSafe server at {address} ({_reason(details) or code.name})"


def _reason(details: str) -> str:
    """The innermost cause in gRPC's chained details, e.g. "Connection refused"."""
    lines = details.strip().splitlines()
    return lines[0].rsplit(": ", 1)[-1].strip(" []") if lines else ""
