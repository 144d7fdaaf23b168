"""The gate every call passes first: credentials checked from metadata before a request
is decoded, and requests that cannot be decoded answered with INVALID_ARGUMENT.

- AgentService calls (all but Enroll) are authenticated here, from the call's
  metadata, before gRPC decodes a byte of the request: a call without a valid
  agent credential ends UNAUTHENTICATED having cost one cached lookup. The
  identity is handed to the servicer through `CALLER` (grpc.aio runs the
  interceptors and the handler in one contextvars.Context), so the hot path
  authenticates once. AdminService calls must carry something shaped like an admin
  token before their request is decoded; the servicer checks it against the state.
  Enroll, health and reflection need no credential.
- Every method's request decoder is wrapped: a message that does not decode
  (random bytes, a flipped bit) ends the call with INVALID_ARGUMENT, in unary and in
  streaming requests alike (a later message of a Session can be the bad one), and
  is logged as one WARNING line per method per minute at most, without a traceback.
- Every request message is held to SMALL_REQUEST_BYTES before it is decoded, except
  PutChunks messages (a sealed chunk of up to 16 MiB), which gRPC's own receive limit
  (server/app.py) bounds: bigger ones end the call with RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from storesafe.v1 import admin_pb2, agent_pb2

from common import errors
from server.domain import credentials
from server.domain.records import AgentIdentity
from server.rpc.errors import UNEXPECTED, abort_with, bearer_from
from server.rpc.ratelog import RateLimitedLog
from server.services.auth import Authenticator

log = logging.getLogger(__name__)

CALLER: contextvars.ContextVar[AgentIdentity | None] = contextvars.ContextVar(
    "storesafe_agent_caller", default=None
)

_AGENT = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
AGENT_CALLS = frozenset(
    f"/{_AGENT.full_name}/{m.name}" for m in _AGENT.methods if m.name != "Enroll"
)
"""The methods that need an agent credential."""
ADMIN_PREFIX = f"/{admin_pb2.DESCRIPTOR.services_by_name['AdminService'].full_name}/"

SMALL_REQUEST_BYTES = 4 * 1024 * 1024
"""The largest request message of any method but the chunk upload."""
LARGE_REQUESTS = frozenset({f"/{_AGENT.full_name}/PutChunks"})
"""Methods whose messages only gRPC's receive limit bounds."""

_UNDECODABLE = object()
_OVERSIZED = object()
Ctx = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:  # generic in the type stubs only
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    Interceptor = grpc.aio.ServerInterceptor
_FACTORIES: dict[tuple[bool, bool], Callable[..., Handler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def agent_caller() -> AgentIdentity:
    """The agent the current call was authenticated as (by the gate)."""
    who = CALLER.get()
    if who is None:
        raise errors.Unauthenticated("the call carries no credential (authorization: Bearer ...)")
    return who


class UndecodableRequest(errors.InvalidArgument):
    """A request message that is not a valid encoding of its type."""


class OversizedRequest(errors.ResourceExhausted):
    """A request message bigger than its method takes."""


class Gate(Interceptor):
    """The server interceptor described at the top of this module."""

    def __init__(
        self,
        auth: Authenticator,
        *,
        log_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._auth = auth
        self._handlers: dict[str, Handler] = {}
        self._log = RateLimitedLog(log, every=log_every, clock=clock)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        method: str = handler_call_details.method
        handler = self._handlers.get(method)
        if handler is None:
            found = await continuation(handler_call_details)
            if found is None:
                return found  # an unknown method: gRPC answers UNIMPLEMENTED
            handler = self._handlers[method] = self._guarded(method, found)
        metadata = handler_call_details.invocation_metadata
        try:
            if method in AGENT_CALLS:
                CALLER.set(await self._auth.agent(bearer_from(metadata)))
            elif method.startswith(ADMIN_PREFIX):
                credentials.parse(bearer_from(metadata), credentials.ADMIN, "admin token")
        except errors.StoreSafeError as exc:
            return _refusal(handler, exc)
        except Exception as exc:  # the server's fault, logged as such
            log.error("checking the credential of a %s call failed", method, exc_info=exc)
            return _refusal(handler, errors.Internal(UNEXPECTED))
        return handler

    # --- wrapping a method's handler -------------------------------------------

    def _guarded(self, method: str, handler: Handler) -> Handler:
        streaming_in, streaming_out = handler.request_streaming, handler.response_streaming
        behavior = _behavior_of(handler)
        if streaming_in:
            wrapped = self._stream_in(method, behavior, streaming_out=streaming_out)
        else:
            wrapped = self._unary_in(method, behavior, streaming_out=streaming_out)
        return _FACTORIES[(streaming_in, streaming_out)](
            wrapped,
            request_deserializer=_decoder(
                handler.request_deserializer,
                None if method in LARGE_REQUESTS else SMALL_REQUEST_BYTES,
            ),
            response_serializer=handler.response_serializer,
        )

    def _unary_in(self, method: str, behavior: Any, *, streaming_out: bool) -> Any:
        if not streaming_out:

            async def unary(request: Any, context: Ctx) -> Any:
                if request is _UNDECODABLE:
                    await self._refuse_undecodable(method, context)
                if request is _OVERSIZED:
                    await abort_with(context, _oversized())
                return await behavior(request, context)

            return unary

        async def unary_stream(request: Any, context: Ctx) -> AsyncIterator[Any]:
            if request is _UNDECODABLE:
                await self._refuse_undecodable(method, context)
            if request is _OVERSIZED:
                await abort_with(context, _oversized())
            if inspect.iscoroutinefunction(behavior):
                await behavior(request, context)
                return
            async for item in behavior(request, context):
                yield item

        return unary_stream

    def _stream_in(self, method: str, behavior: Any, *, streaming_out: bool) -> Any:
        def checked(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
            async def each() -> AsyncIterator[Any]:
                async for request in requests:
                    if request is _UNDECODABLE:
                        self._note_undecodable(method, context)
                        raise UndecodableRequest("a message of this stream could not be decoded")
                    if request is _OVERSIZED:
                        raise _oversized()
                    yield request

            return each()

        if not streaming_out:

            async def stream_unary(requests: AsyncIterator[Any], context: Ctx) -> Any:
                try:
                    return await behavior(checked(requests, context), context)
                except (UndecodableRequest, OversizedRequest) as exc:
                    await abort_with(context, exc)

            return stream_unary

        async def stream_stream(requests: AsyncIterator[Any], context: Ctx) -> AsyncIterator[Any]:
            try:
                if inspect.iscoroutinefunction(behavior):
                    await behavior(checked(requests, context), context)
                    return
                async for item in behavior(checked(requests, context), context):
                    yield item
            except (UndecodableRequest, OversizedRequest) as exc:  # not mapped by the servicer
                await abort_with(context, exc)

        return stream_stream

    async def _refuse_undecodable(self, method: str, context: Ctx) -> None:
        self._note_undecodable(method, context)
        await abort_with(context, UndecodableRequest("the request message could not be decoded"))

    def _note_undecodable(self, method: str, context: Ctx) -> None:
        peer = context.peer()
        self._log.warning(f"undecodable {method}", f"refused an undecodable {method} from {peer}")


def _behavior_of(handler: Handler) -> Any:
    if handler.request_streaming:
        return handler.stream_stream if handler.response_streaming else handler.stream_unary
    return handler.unary_stream if handler.response_streaming else handler.unary_unary


def _oversized() -> OversizedRequest:
    return OversizedRequest(
        f"the request message is larger than the {SMALL_REQUEST_BYTES // (1024 * 1024)} MiB "
        "this method takes"
    )


def _decoder(
    deserialize: Callable[[bytes], Any] | None, limit: int | None
) -> Callable[[bytes], Any] | None:
    """`deserialize`, giving a marker instead of raising on bytes it cannot decode, and
    another for a message longer than `limit` bytes (not decoded at all)."""
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        if limit is not None and len(data) > limit:
            return _OVERSIZED
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - any failure to decode is the sender's
            return _UNDECODABLE

    return decode


def _refusal(handler: Handler, exc: errors.StoreSafeError) -> Handler:
    """A handler of the same shape that ends the call with `exc` without decoding."""

    async def refuse(_request: Any, context: Ctx) -> None:
        await abort_with(context, exc)

    factory = _FACTORIES[(handler.request_streaming, handler.response_streaming)]
    return factory(
        refuse, request_deserializer=None, response_serializer=handler.response_serializer
    )
