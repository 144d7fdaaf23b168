"""The off-site uploader: name chunks, ask which the store lacks, seal and send only those.

Chunks (cut and named under the site's keys, common.vault) wait in a batch
of at most `batch_bytes` or one chunk (and MAX_MISSING_IDS ids). A full
batch, and `send`, is taken from the queue and asked about (MissingChunks, in
the background), and the batch taken before it, whose answer came while this
one was read, is sealed where the store lacks it (paced by the token bucket)
and handed to the send window (agent.offsite.inflight), which sends it while
the caller reads and seals the next ones. `flush` hands over the last batch
too and waits until every batch handed over is stored. So memory holds a few
batches whatever the data size, a cut connection loses at most the batches in
flight, and a resumed upload re-sends nothing that arrived. Before each batch
is taken, `should_stop` is asked: a reason ("the upload window closed") ends
the upload there with `UploadStopped`, once the batches in flight have landed
(a failure among them is raised instead, as it was sent first); the batch
taken and asked about goes first, the queue (at most one partly filled batch)
is dropped.

Callers: the image sync's consumer (agent.images.uploader) and the database
backup upload (agent.firebird.upload). The uploader runs in a worker thread;
the store calls run on the agent's event loop (`LoopStore` bridges the two).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

import blake3

from agent.domain.offsite import (
    MAX_MISSING_IDS,
    ChunkUpload,
    PutChunksResult,
    SnapshotCommit,
    StoreLink,
)
from agent.offsite.bandwidth import TokenBucket
from agent.offsite.inflight import SendWindow
from common.errors import InvalidArgument, StoreSafeError, Unavailable
from common.vault import PlainChunk, SealedChunk, SiteKeys

T = TypeVar("T")

BATCH_BYTES = 6 << 20
"""A batch: two on the wire and one being prepared stay inside the agent's memory budget.
Each batch costs both sides a MissingChunks call, a PutChunks stream and the server's
syncs and index transaction, so larger batches cost less CPU: against 4 MiB, 8 MiB took
10-20 % off the agent's and the server's CPU in a first sync of 4,000 files, but peaked
at 139-149 MiB in one of 20,000 files (bench/README.md, session 12); 6 MiB peaked at 132
MiB there, 0.81x restic's time."""
KNOWN_IDS = 50_000
"""Ids learned stored that an uploader remembers (a few MB); beyond, it asks again."""
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
            raise Unavailable("the agent is stopping; the upload ends here") from None
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
    files_discarded: int = 0  # image sync: files stored but not committed


def content_id(chunk_id: str, length: int) -> str:
    return f"{chunk_id}:{length}"


def chunk_ref(cid: str) -> tuple[str, int]:
    """(chunk id, length) of a content id this uploader returned."""
    chunk_id, sep, length = cid.partition(":")
    if not sep or not length.isdigit():
        raise InvalidArgument(f"content id {cid[:80]!r} is not <chunk id>:<length>")
    return chunk_id, int(length)


class UploadStopped(StoreSafeError):
    """The upload stopped early at a batch boundary, for `reason` (window, time budget)."""

    code = "agent.upload_stopped"

    def __init__(self, reason: str) -> None:
        super().__init__(f"the upload stopped early: {reason}")
        self.reason = reason


def never() -> str:
    return ""


def batch_bytes(bucket: TokenBucket) -> int:
    """Batches of 6 MiB, or of about 4 s of sending under a bandwidth limit: the wait for
    tokens comes before each batch, so a small batch keeps the line from bursts."""
    if bucket.rate <= 0:
        return BATCH_BYTES
    return max(1, min(BATCH_BYTES, int(bucket.rate * 4)))


@dataclasses.dataclass
class _Asked:
    """A batch taken from the queue: its plain chunks, and which of them the store lacks
    (MissingChunks, answered in the background while the next batch is read)."""

    chunks: list[PlainChunk]
    ids: int  # distinct chunk ids asked about
    missing: concurrent.futures.Future[list[str]]


class Uploader:
    """Sends chunks the store lacks, batch by batch; `tally` counts what it did."""

    def __init__(
        self,
        keys: SiteKeys,
        store: SyncStore,
        bucket: TokenBucket,
        *,
        batch_bytes: int = BATCH_BYTES,
        should_stop: Callable[[], str] = never,
    ) -> None:
        self.keys = keys
        self.remote = store
        self.bucket = bucket
        self.batch_bytes = batch_bytes
        self.should_stop = should_stop
        self.tally = SendTally()
        self._pending: list[PlainChunk] = []
        self._pending_bytes = 0
        self._known: set[str] = set()  # on the server or on their way, as learned in this pass
        self._asked: _Asked | None = None  # the batch taken last, its MissingChunks on its way
        self._taken = 0  # batches taken from the queue, numbered as the send window numbers them
        self._asker: concurrent.futures.ThreadPoolExecutor | None = None
        self._window = SendWindow(store.put, landed=self._landed)

    def __enter__(self) -> Uploader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pending_bytes(self) -> int:
        """Bytes of the chunks queued and not sent yet."""
        return self._pending_bytes

    @property
    def pending_chunks(self) -> int:
        """How many chunks are queued and not sent yet."""
        return len(self._pending)

    @property
    def batches(self) -> int:
        """Batches taken from the queue so far (the queue emptied that many times)."""
        return self._taken

    def ticket(self) -> int:
        """The number of the batch that holds the last chunk added: once `stored()`
        reaches it, every chunk added so far is on the server."""
        return self._taken + (1 if self._pending else 0)

    def stored(self) -> int:
        """Every batch numbered up to this is confirmed stored (does not wait)."""
        return self._window.poll()

    def add(self, chunk: PlainChunk) -> None:
        """Queue `chunk`; a full batch is sent first (a batch is at most batch_bytes, or one
        chunk)."""
        if chunk.chunk_id in self._known:
            return
        if self._pending and (
            self._pending_bytes + len(chunk.data) > self.batch_bytes
            or len(self._pending) >= MAX_MISSING_IDS
        ):
            self.send()
        self._pending.append(chunk)
        self._pending_bytes += len(chunk.data)

    def drop_pending(self, keep: int = 0) -> None:
        """Forget the queued chunks after the first `keep` (their stream failed)."""
        del self._pending[keep:]
        self._pending_bytes = sum(len(c.data) for c in self._pending)

    def send(self) -> None:
        """Take the queued chunks as a batch and ask the store which it lacks; the batch
        taken before is sealed and handed to the send window meanwhile (a failed earlier
        batch, or a stop, raises here). `flush` hands over the last one."""
        if not self._pending:
            return
        self._window.check()
        self.check_stop()
        before, self._asked = self._asked, self._ask(self._take())
        if before is not None:
            self._hand_over(before)

    def flush(self) -> None:
        """Send the queued chunks the store lacks and wait: on return every chunk added is
        stored."""
        self.send()
        last, self._asked = self._asked, None
        if last is not None:
            self._hand_over(last)
        self._window.wait()

    def settle(self) -> Exception | None:
        """Drop the queue and the batch asked about, and wait for the batches in flight (the
        upload ends); the first failure among them, not raised."""
        self.drop_pending()
        if self._asked is not None:
            self._asked.missing.cancel()
            self._asked = None
        if self._asker is not None:
            self._asker.shutdown(wait=True)
            self._asker = None
        return self._window.settle()

    def close(self) -> None:
        """End the upload: nothing stays in flight (what was not confirmed is not counted)."""
        self.settle()

    def check_stop(self) -> None:
        """Raise UploadStopped when `should_stop` gives a reason, once the batch asked about
        is handed over and the batches in flight landed (a failure among them is raised
        instead: it came first)."""
        reason = self.should_stop()
        if reason:
            asked, self._asked = self._asked, None
            if asked is not None:  # taken whole already: it goes, as it would have
                self._hand_over(asked)
            self._window.wait()
            raise UploadStopped(reason)

    def send_sealed(self, chunks: Sequence[SealedChunk]) -> None:
        """Store chunks sealed elsewhere (a snapshot's manifest parts), only the missing ones;
        on return they are all stored."""
        self.flush()
        for start in range(0, len(chunks), MAX_MISSING_IDS):
            group = chunks[start : start + MAX_MISSING_IDS]
            self._window.check()
            self.check_stop()
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
                    self._window.send(batch)
                    batch, size = [], 0
            if batch:
                self._window.send(batch)
        self._window.wait()

    def _take(self) -> list[PlainChunk]:
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        return pending

    def _ask(self, pending: list[PlainChunk]) -> _Asked:
        """Ask the store, in the background, which chunks of the batch `pending` it lacks."""
        ids = list(dict.fromkeys(c.chunk_id for c in pending))
        if self._asker is None:
            self._asker = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="upload-ask"
            )
        self._taken += 1
        if len(self._known) + len(ids) > KNOWN_IDS:
            self._known.clear()
        self._known.update(ids)  # a later batch leaves them out: their batch goes first
        return _Asked(pending, len(ids), self._asker.submit(self.remote.missing, ids))

    def _hand_over(self, asked: _Asked) -> None:
        """Seal the chunks of `asked` the store lacks (the plain ones are let go) and hand
        them to the send window."""
        missing = set(asked.missing.result())  # the store call has its own deadline
        self.tally.chunks_present += asked.ids - len(missing)
        batch: list[ChunkUpload] = []
        pending = asked.chunks
        pending.reverse()
        while pending:  # each plain chunk let go as it is sealed: one batch's worth in all
            chunk = pending.pop()
            if chunk.chunk_id in missing:
                missing.discard(chunk.chunk_id)  # a chunk twice in one batch goes once
                batch.append(self._upload(chunk.seal(self.keys)))
        self._window.send(batch)

    def _upload(self, sealed: SealedChunk) -> ChunkUpload:
        self.bucket.take(len(sealed.blob))
        return ChunkUpload(sealed.chunk_id, sealed.blob, blake3.blake3(sealed.blob).digest())

    def _landed(self, chunks: int, size: int) -> None:
        self.tally.chunks_sent += chunks
        self.tally.bytes_sent += size
