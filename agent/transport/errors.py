"""The agent's reading of a failed gRPC call: the typed error and its sentence.

The class comes from the shared client-side table (common/wire_errors.py): the
stable code the server sent, else the status code. Callers above the transport
catch `common.errors` classes, never grpc.RpcError.
"""

from __future__ import annotations

import grpc
from grpc import aio

from common.errors import StoreSafeError, Unavailable
from common.wire_errors import code_in, error_class, host_of, names_unresolved_host, tells_of_tls


def error_from_rpc(exc: grpc.RpcError, *, address: str) -> StoreSafeError:
    """The StoreSafe error for a failed call to the server at `address`.

    With a stable code the server answered, and its sentence is the message; without
    one, a failure to reach it is told as what went wrong on the way (name, TLS, time).
    """
    code, details, sent = _read(exc)
    cls = error_class(sent, code.name)
    if sent is None and cls is Unavailable:
        return Unavailable(_unavailable_message(code, details, address))
    if details.strip():
        return cls(details.strip())
    return cls(f"the server at {address} answered {code.name}")


def status_code(exc: grpc.RpcError) -> grpc.StatusCode:
    """The status code of a failed call (UNKNOWN when it carries none)."""
    return _read(exc)[0]


def _read(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str, str | None]:
    """Status code, details and the server's stable error code (None: not sent)."""
    if isinstance(exc, aio.AioRpcError | grpc.Call):
        return exc.code(), exc.details() or "", code_in(exc.trailing_metadata())
    return grpc.StatusCode.UNKNOWN, str(exc), None


def _unavailable_message(code: grpc.StatusCode, details: str, address: str) -> str:
    if names_unresolved_host(details, address):
        return (
            f"cannot resolve the host name '{host_of(address)}' of the server {address}: "
            "check --server"
        )
    if tells_of_tls(details):
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
