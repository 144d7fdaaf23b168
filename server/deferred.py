"""Deferred: a value computed where it is used, not where it was asked for.

The hot agent writes (check-ins and reports) carry their input this way. The servicer
wraps its proto-to-domain conversion, the service wraps its validation around that,
and the database writer calls `get()` just before the write's transaction: in the
writer's own process when it has one, so that decoding and checking a report costs
the event loop nothing. Measured under the RPC benchmark (SQLite, no write): a server
that only answered ran at 0.96x a bare gRPC server; authenticating and converting
each report on the event loop took it to 0.82x, while authenticating and then waiting
for the writer, without converting, ran at 1.2x.

A Deferred pickles when its function is a module-level function and its arguments
pickle (plain values, protobuf messages, other Deferreds).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Deferred(Generic[T]):
    """`fn(*args)`, called on `get()`; an error it raises is the write's error."""

    __slots__ = ("_args", "_fn")

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self._fn = fn
        self._args = args

    def get(self) -> T:
        return self._fn(*self._args)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Deferred, (self._fn, *self._args))

    def __repr__(self) -> str:
        return f"Deferred({getattr(self._fn, '__qualname__', self._fn)})"


def resolve(value: T | Deferred[T]) -> T:
    """The value itself, or what a Deferred computes."""
    return value.get() if isinstance(value, Deferred) else value
