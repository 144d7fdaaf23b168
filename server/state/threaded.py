"""Short SQL transactions run in a worker thread, off the event loop.

For the stores whose writes must not wait behind the batch writer (the off-site
store's index, its maintenance, alert bookkeeping): each call opens its own
connection, and a write commits when its function returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine

T = TypeVar("T")


class ThreadedSql:
    """`_read(fn)` and `_write(fn)` on `engine`, each in its own worker-thread transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def _read(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self._engine.connect() as conn:
                return fn(conn)

        return await asyncio.to_thread(run)

    async def _write(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self._engine.begin() as conn:
                return fn(conn)

        return await asyncio.to_thread(run)
