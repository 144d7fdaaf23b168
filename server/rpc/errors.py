"""The one table that maps typed errors to gRPC status codes, and the servicer guard.

Every failed call ends with the status in `STATUS` and the error's one-sentence
message as the status details, and carries the error's stable code in the
trailing metadata key `common.wire_errors.ERROR_CODE_KEY`: a client maps it back
to the same class (common/wire_errors.py). Trailing metadata rather than
google.rpc.Status details: no extra dependency (grpcio-status, googleapis protos),
both the sync and the asyncio clients read it from `trailing_metadata()`, it shows
as text in any gRPC tool, and the status and details stay exactly what clients
without the table (older agents and CLIs) already read.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, NoReturn, TypeVar

import grpc

from common import errors
from common.wire_errors import ERROR_CODE_KEY

log = logging.getLogger(__name__)

STATUS: dict[type[errors.StoreSafeError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
}


UNEXPECTED = "the server hit an unexpected error; see its log"


def status_of(exc: errors.StoreSafeError) -> grpc.StatusCode:
    """The gRPC status of a typed error: that of its nearest class in `STATUS`."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return grpc.StatusCode.INTERNAL


def trailers_of(exc: errors.StoreSafeError) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that carries the stable code of `exc` to the client."""
    return ((ERROR_CODE_KEY, exc.code),)


async def abort_with(
    context: grpc.aio.ServicerContext[Any, Any], exc: errors.StoreSafeError
) -> NoReturn:
    """End the call with the status, message and stable code of a typed error."""
    await context.abort(status_of(exc), exc.message, trailing_metadata=trailers_of(exc))


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception, name: str) -> None:
    """End the call with the status of a typed error, or INTERNAL (logged) for anything else."""
    if isinstance(exc, errors.StoreSafeError):
        await abort_with(context, exc)
    log.error("unexpected error in %s", name, exc_info=exc)
    await abort_with(context, errors.Internal(UNEXPECTED))


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def guarded(method: F) -> F:
    """Turn typed errors into their gRPC status and unexpected ones into INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(self, request, context)
        except Exception as exc:  # noqa: BLE001 - mapped (and logged when unexpected)
            await _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


G = TypeVar("G", bound=Callable[..., AsyncIterator[Any]])


def guarded_stream(method: G) -> G:
    """`guarded` for server-streaming methods (async generators)."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as exc:  # noqa: BLE001 - mapped (and logged when unexpected)
            await _abort(context, exc, method.__name__)

    return wrapper  # type: ignore[return-value]


def bearer(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The bearer credential from call metadata, or Unauthenticated."""
    return bearer_from(context.invocation_metadata())


def bearer_from(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The bearer credential from call metadata (as a server interceptor sees it too),
    or Unauthenticated."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, cred = text.partition(" ")
            if scheme.lower() == "bearer" and cred:
                return cred
    raise errors.Unauthenticated("the call carries no credential (authorization: Bearer ...)")
