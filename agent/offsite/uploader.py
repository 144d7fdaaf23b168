"""The image-sync Consumer: cut each file, ask which chunks the store lacks, seal, send those.

Files are cut with the IMAGES chunking profile under the site's keyed
chunker and named by keyed ids (common.vault). Chunks wait in a batch of at
most `batch_bytes` or one chunk (and MAX_MISSING_IDS ids); a full batch, and the end of
each file, asks MissingChunks about the batch, seals the missing ones and
sends them on one PutChunks stream, paced by the token bucket. So memory
holds one batch whatever the file sizes, a cut connection loses at most one
batch, and a resumed pass re-sends nothing that arrived. `store` returns
only once every chunk of the file is on the server; its content ids are
`<chunk id>:<length>`, which is what a manifest entry needs.

The consumer runs in the scan's worker thread; the store calls run on the
agent's event loop (`LoopStore` bridges the two).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol, TypeVar

from agent.domain.offsite import (
    MAX_MISSING_IDS,
    ChunkUpload,
    PutChunksResult,
    SnapshotCommit,
    StoreLink,
)
from agent.offsite.bandwidth import TokenBucket
from agent.images.consumer import FileToStore
from agent.images.stream import FileStream
from common.errors import InvalidArgument, Unavailable
from common.vault import IMAGES, PlainChunk, SealedChunk, SiteKeys, cut_stream

T = TypeVar("T")

BATCH_BYTES = 8 << 20
CALL_WAIT = 900.0
"""Longest a worker thread waits for one store call (each call has its own deadline)."""


class SyncStore(Protocol):
    """The store calls as the worker thread makes them (blocking)."""

    def missing(self, ids: Sequence[str]) -> list[str]: ...

    def put(self, chunks: Sequence[ChunkUpload]) -> PutChunksResult: ...

    def commit(self, snapshot: SnapshotCommit) -> bool: ...


class LoopStore:
    """A StoreLink that lives on `loop`, called from another thread."""

    def __init__(
        self, link: StoreLink, loop: asyncio.AbstractEventLoop, *, wait: float = CALL_WAIT
    ) -> None:
        self._link = link
        self._loop = loop
        self._wait = wait

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        except RuntimeError:  # the loop is closed: the agent is stopping
            coro.close()
            raise Unavailable("the agent is stopping; the image sync ends here") from None
        try:
            return future.result(self._wait)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise Unavailable(
                f"the server did not answer a store call in {self._wait:g} s"
            ) from None

    def missing(self, ids: Sequence[str]) -> list[str]:
        return self._run(self._link.missing_chunks(ids))

    def put(self, chunks: Sequence[ChunkUpload]) -> PutChunksResult:
        return self._run(self._link.put_chunks(chunks))

    def commit(self, snapshot: SnapshotCommit) -> bool:
        return self._run(self._link.commit_snapshot(snapshot))


@dataclasses.dataclass
class SendTally:
    """What the uploader sent in one pass."""

    chunks_sent: int = 0
    bytes_sent: int = 0  # sealed bytes on the wire
    chunks_present: int = 0  # asked about and already stored
    files_discarded: int = 0


def content_id(chunk_id: str, length: int) -> str:
    return f"{chunk_id}:{length}"


def chunk_ref(cid: str) -> tuple[str, int]:
    """(chunk id, length) of a content id this uploader returned."""
    chunk_id, sep, length = cid.partition(":")
    if not sep or not length.isdigit():
        raise InvalidArgument(f"content id {cid[:80]!r} is not <chunk id>:<length>")
    return chunk_id, int(length)


class _Readable:
    """A FileStream as pyfastcdc reads it (readinto)."""

    def __init__(self, stream: FileStream) -> None:
        self._stream = stream

    def readinto(self, buffer: memoryview, /) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class Uploader:
    """Stores each file's chunks in the off-site store (a scanner Consumer)."""

    def __init__(
        self,
        keys: SiteKeys,
        store: SyncStore,
        bucket: TokenBucket,
        *,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.keys = keys
        self.remote = store
        self.bucket = bucket
        self.batch_bytes = batch_bytes
        self.tally = SendTally()
        self._pending: list[PlainChunk] = []
        self._pending_bytes = 0
        self._known: set[str] = set()  # stored on the server, as learned in this pass

    def store(self, file: FileToStore, stream: FileStream) -> Sequence[str]:
        ids: list[str] = []
        try:
            for chunk in cut_stream(self.keys, _Readable(stream), IMAGES):
                ids.append(content_id(chunk.chunk_id, len(chunk.data)))
                if chunk.chunk_id in self._known:
                    continue
                if self._pending and (
                    self._pending_bytes + len(chunk.data) > self.batch_bytes
                    or len(self._pending) >= MAX_MISSING_IDS
                ):
                    self._flush()  # a batch is at most batch_bytes, or one chunk
                self._pending.append(chunk)
                self._pending_bytes += len(chunk.data)
        except BaseException:
            self._pending.clear()
            self._pending_bytes = 0
            raise
        self._flush()
        return ids

    def discard(self, file: FileToStore, reason: str) -> None:
        self.tally.files_discarded += 1

    def send_sealed(self, chunks: Sequence[SealedChunk]) -> None:
        """Store chunks sealed elsewhere (a snapshot's manifest parts), only the missing ones."""
        for start in range(0, len(chunks), MAX_MISSING_IDS):
            group = chunks[start : start + MAX_MISSING_IDS]
            missing = set(self.remote.missing([c.chunk_id for c in group]))
            batch: list[ChunkUpload] = []
            size = 0
            for chunk in group:
                if chunk.chunk_id not in missing:
                    continue
                missing.discard(chunk.chunk_id)  # a part twice in the manifest goes once
                batch.append(self._upload(chunk))
                size += len(chunk.blob)
                if size >= self.batch_bytes:
                    self._put(batch)
                    batch, size = [], 0
            self._put(batch)

    def _flush(self) -> None:
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if not pending:
            return
        ids = list(dict.fromkeys(c.chunk_id for c in pending))
        missing = set(self.remote.missing(ids))
        self.tally.chunks_present += len(ids) - len(missing)
        batch: list[ChunkUpload] = []
        for chunk in pending:
            if chunk.chunk_id in missing:
                missing.discard(chunk.chunk_id)  # a chunk twice in one batch goes once
                batch.append(self._upload(chunk.seal(self.keys)))
        self._put(batch)
        self._known.update(ids)

    def _upload(self, sealed: SealedChunk) -> ChunkUpload:
        self.bucket.take(len(sealed.blob))
        return ChunkUpload(sealed.chunk_id, sealed.blob, hashlib.sha256(sealed.blob).digest())

    def _put(self, batch: list[ChunkUpload]) -> None:
        if not batch:
            return
        self.remote.put(batch)
        self.tally.chunks_sent += len(batch)
        self.tally.bytes_sent += sum(len(c.data) for c in batch)
