"""The one table from StoreSafe's typed errors to HTTP status codes."""

from __future__ import annotations

from common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    StoreSafeError,
    Unauthenticated,
    Unavailable,
)

_HTTP: tuple[tuple[type[StoreSafeError], int], ...] = (
    (InvalidArgument, 400),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (FailedPrecondition, 409),
    (ResourceExhausted, 429),
    (Unavailable, 503),
)


def exc_status(exc: StoreSafeError) -> int:
    for cls, status in _HTTP:
        if isinstance(exc, cls):
            return status
    return 500
