"""The one client-side table from a failed call's wire form back to a typed error.

The server ends every failed call with the gRPC status of the error it raised
(server/rpc/errors.py) and the error's stable `code` in the trailing metadata
key `ERROR_CODE_KEY`. A client (agent/transport/errors.py, cli/client/errors.py)
looks that code up in `BY_CODE` and so raises the class the server raised. When
there is no code, or one this client does not know (an older server, a proxy,
a failure of the channel itself such as UNAVAILABLE or DEADLINE_EXCEEDED), it
falls back on `BY_STATUS`, keyed on the name of the gRPC status code.

Each client words its own sentences; the signs of a failure that never reached
the server (a host name that does not resolve, a TLS handshake that failed)
are read here, once. No grpc import: common is the leaf, so both tables are
keyed on strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

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

ERROR_CODE_KEY = "storesafe-error-code"
"""The trailing-metadata key that carries the stable code of the error the server raised."""

BY_CODE: Mapping[str, type[StoreSafeError]] = MappingProxyType(
    {
        cls.code: cls
        for cls in (
            InvalidArgument,
            NotFound,
            AlreadyExists,
            Unauthenticated,
            PermissionDenied,
            FailedPrecondition,
            Unavailable,
            ResourceExhausted,
            Internal,
        )
    }
)
"""Stable code on the wire -> the class the server raised."""

BY_STATUS: Mapping[str, type[StoreSafeError]] = MappingProxyType(
    {
        "CANCELLED": Unavailable,
        "UNKNOWN": Internal,
        "INVALID_ARGUMENT": InvalidArgument,
        "DEADLINE_EXCEEDED": Unavailable,
        "NOT_FOUND": NotFound,
        "ALREADY_EXISTS": AlreadyExists,
        "PERMISSION_DENIED": PermissionDenied,
        "RESOURCE_EXHAUSTED": ResourceExhausted,
        "FAILED_PRECONDITION": FailedPrecondition,
        "ABORTED": Unavailable,
        "OUT_OF_RANGE": InvalidArgument,
        "UNIMPLEMENTED": FailedPrecondition,  # the server is older than the client
        "INTERNAL": Internal,
        "UNAVAILABLE": Unavailable,
        "DATA_LOSS": Internal,
        "UNAUTHENTICATED": Unauthenticated,
    }
)
"""gRPC status code name -> class, for failures that carry no known code (every status but OK)."""

# What gRPC's resolvers (c-ares and the system's) say when the server's host name does not
# resolve; it names the address, unlike a reason the server gives (its database's host).
_DNS = re.compile(r"(?:dns resolution failed for|errors resolving) (?P<target>\S+?):? ", re.I)
_TLS = re.compile(r"handshake|certificate|ssl|tsi_|alpn", re.IGNORECASE)


def code_in(metadata: Iterable[Any] | None) -> str | None:
    """The stable error code in a failed call's trailing metadata (its (key, value) pairs,
    as gRPC's sync and asyncio calls give them), or None when absent."""
    for key, value in metadata or ():
        if key == ERROR_CODE_KEY:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


def error_class(code: str | None, status: str) -> type[StoreSafeError]:
    """The class to raise for a failed call: by its stable `code` when this client knows
    it, else by the name of its gRPC `status` (Internal for a status outside the table)."""
    if code is not None and code in BY_CODE:
        return BY_CODE[code]
    return BY_STATUS.get(status, Internal)


def names_unresolved_host(details: str, address: str) -> bool:
    """Whether gRPC's `details` say the host name of `address` did not resolve."""
    found = _DNS.search(details)
    return found is not None and found["target"].removeprefix("dns:///") == address


def tells_of_tls(details: str) -> bool:
    """Whether gRPC's `details` tell of a failed TLS handshake or certificate check."""
    return _TLS.search(details) is not None


def host_of(address: str) -> str:
    """`HOST` of `HOST:PORT` (without the brackets of `[v6]:PORT`)."""
    return address.rpartition(":")[0].strip("[]")
