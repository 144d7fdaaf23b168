"""The chunks of one PutChunks stream read ahead of the writer, handed over in batches.

A reader task takes messages off the stream while the previous batch is written, up to
`ahead_bytes` (or one chunk) waiting; `take` returns what has arrived, at least one
chunk, at most `max_chunks` and `max_bytes` (or one chunk). A slow stream is thus stored
chunk by chunk as it arrives, a fast one in batches; nothing waits for a full batch. An
error of the stream (a bad message, a cut) comes out of `take` after the chunks that
arrived before it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from common.errors import Unavailable


class _Sized(Protocol):
    @property
    def data(self) -> bytes: ...


T = TypeVar("T", bound=_Sized)


class ChunkInbox(Generic[T]):
    """Read `stream` ahead in a task (use as `async with`); batches come from `take`."""

    def __init__(
        self,
        stream: AsyncIterator[T],
        *,
        max_chunks: int,
        max_bytes: int,
        ahead_bytes: int,
    ) -> None:
        self._stream = stream
        self._max_chunks = max_chunks
        self._max_bytes = max_bytes
        self._ahead = ahead_bytes
        self._items: collections.deque[T] = collections.deque()
        self._bytes = 0
        self._ended = False
        self._error: BaseException | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ChunkInbox[T]:
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def take(self) -> list[T]:
        """The next chunks that arrived (at least one); [] at the end of the stream; the
        stream's error once the chunks before it are taken."""
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._items) or self._ended)
            batch: list[T] = []
            size = 0
            while self._items and len(batch) < self._max_chunks:
                more = len(self._items[0].data)
                if batch and size + more > self._max_bytes:
                    break
                batch.append(self._items.popleft())
                size += more
            self._bytes -= size
            self._changed.notify_all()
        if not batch and self._error is not None:
            raise self._error
        return batch

    async def _read(self) -> None:
        whole = False
        try:
            async for item in self._stream:
                await self._put(item)
            whole = True
        except Exception as exc:  # noqa: BLE001 - handed to `take`, after the chunks before it
            self._error = exc
        finally:
            if not whole and self._error is None:  # never taken for the stream's end
                self._error = Unavailable("the chunk stream stopped before its end")
            async with self._changed:
                self._ended = True
                self._changed.notify_all()

    async def _put(self, item: T) -> None:
        size = len(item.data)
        async with self._changed:
            await self._changed.wait_for(
                lambda: self._bytes == 0 or self._bytes + size <= self._ahead
            )
            self._items.append(item)
            self._bytes += size
            self._changed.notify_all()
