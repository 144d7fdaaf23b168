"""An in-memory off-site store for the uploader's unit tests (the real one runs in the server).

`MemoryStore` answers the agent's store calls the way the server's contract
says (agent.proto): MissingChunks in request order, PutChunks create-only and
digest-checked, CommitSnapshot refused while a reference is missing. It can
be told to fail the Nth PutChunks call (a cut connection: the chunks of that
call before `keep` arrive, the rest do not). It counts what it was sent.
`AsyncMemoryStore` offers the same as an async StoreLink. `CutBeforePut` wraps
the real transport to cut the real connection at a chosen point; `GatedLink`
holds one real PutChunks call at a gate while the uploader goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable, Sequence

import blake3

from agent.domain.offsite import (
    MAX_MISSING_IDS,
    MAX_REFERENCES,
    ChunkUpload,
    PutChunksResult,
    SiteKeyUpload,
    SnapshotCommit,
    StoreLink,
)
from common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Unavailable


@dataclasses.dataclass
class MemoryStore:
    chunks: dict[str, bytes] = dataclasses.field(default_factory=dict)
    snapshots: dict[str, SnapshotCommit] = dataclasses.field(default_factory=dict)
    site_keys: list[SiteKeyUpload] = dataclasses.field(default_factory=list)
    put_calls: int = 0
    chunks_received: int = 0
    asked: int = 0
    fail_put_call: int | None = None  # 1-based number of the PutChunks call that is cut
    keep: int = 0  # chunks of the cut call that arrive before the cut

    def missing(self, ids: Sequence[str]) -> list[str]:
        if len(ids) > MAX_MISSING_IDS:
            raise InvalidArgument("too many ids")
        self.asked += len(ids)
        return [i for i in ids if i not in self.chunks]

    def put(self, chunks: Sequence[ChunkUpload]) -> PutChunksResult:
        self.put_calls += 1
        cut = self.put_calls == self.fail_put_call
        stored = duplicates = size = 0
        for n, chunk in enumerate(chunks):
            if cut and n >= self.keep:
                raise Unavailable("the connection was cut (test)")
            if blake3.blake3(chunk.data).digest() != chunk.blake3:
                raise InvalidArgument(f"chunk {chunk.chunk_id} does not match its blake3")
            self.chunks_received += 1
            if chunk.chunk_id in self.chunks:
                if self.chunks[chunk.chunk_id] != chunk.data:
                    raise AlreadyExists(f"chunk {chunk.chunk_id} is stored with other bytes")
                duplicates += 1
                continue
            self.chunks[chunk.chunk_id] = chunk.data
            stored += 1
            size += len(chunk.data)
        if cut:
            raise Unavailable("the connection was cut (test)")
        return PutChunksResult(stored, duplicates, size)

    def commit(self, snapshot: SnapshotCommit) -> bool:
        if len(snapshot.references) > 100 * MAX_REFERENCES:
            raise InvalidArgument("too many references")
        if hashlib.sha256(snapshot.record).digest() != snapshot.record_sha256:
            raise InvalidArgument("the record does not match its sha256")
        refs = list(snapshot.references)  # read once, as the server reads the stream
        if len(set(refs)) != len(snapshot.references):
            raise InvalidArgument(
                f"{len(set(refs))} distinct references, not the {len(snapshot.references)} "
                "the header announced"
            )
        lacking = [r for r in refs if r not in self.chunks]
        if lacking:
            raise FailedPrecondition(f"{len(lacking)} referenced chunks are missing")
        duplicate = snapshot.snapshot_id in self.snapshots
        self.snapshots[snapshot.snapshot_id] = dataclasses.replace(snapshot, references=refs)
        return duplicate

    def fetch(self, chunk_id: str) -> bytes:
        return self.chunks[chunk_id]


@dataclasses.dataclass
class AsyncMemoryStore:
    """A StoreLink over a MemoryStore; `closed` counts closes."""

    store: MemoryStore
    closed: int = 0

    async def put_site_key(self, key: SiteKeyUpload) -> bool:
        duplicate = key in self.store.site_keys
        if not duplicate:
            self.store.site_keys.append(key)
        return duplicate

    async def missing_chunks(self, ids: Sequence[str]) -> list[str]:
        return self.store.missing(ids)

    async def put_chunks(self, chunks: Sequence[ChunkUpload]) -> PutChunksResult:
        return self.store.put(chunks)

    async def commit_snapshot(self, snapshot: SnapshotCommit) -> bool:
        return self.store.commit(snapshot)

    async def close(self) -> None:
        self.closed += 1


@dataclasses.dataclass
class CutBeforePut:
    """A real StoreLink that runs `cut` (e.g. stops the real server) just before its Nth
    PutChunks call, or (`before_missing`) its Nth MissingChunks call, which the uploader
    makes from the pass's thread and waits for (a clock changed there is seen in a fixed
    order); it records the chunk ids of every PutChunks call that returned."""

    link: StoreLink
    before_put: int
    cut: Callable[[], None]
    delivered: list[str] = dataclasses.field(default_factory=list)
    puts: int = 0
    before_missing: int = 0
    asked: int = 0

    async def put_site_key(self, key: SiteKeyUpload) -> bool:
        return await self.link.put_site_key(key)

    async def missing_chunks(self, ids: Sequence[str]) -> list[str]:
        self.asked += 1
        if self.asked == self.before_missing:
            self.cut()
        return await self.link.missing_chunks(ids)

    async def put_chunks(self, chunks: Sequence[ChunkUpload]) -> PutChunksResult:
        self.puts += 1
        if self.puts == self.before_put:
            self.cut()
        result = await self.link.put_chunks(chunks)
        self.delivered.extend(c.chunk_id for c in chunks)
        return result

    async def commit_snapshot(self, snapshot: SnapshotCommit) -> bool:
        return await self.link.commit_snapshot(snapshot)

    async def close(self) -> None:
        await self.link.close()


GATE_WAIT = 60.0
"""Longest a gated call waits for its gate: a hang guard, turned into a test failure."""


@dataclasses.dataclass
class GatedLink:
    """A real StoreLink whose PutChunks call number `hold` waits at a gate before it goes
    to the server, so a test sees what the uploader does while a batch is in flight.

    MissingChunks call number `asked_while_held` first waits until the held call is at
    the gate (so it is asked while that batch is in flight, whatever the threads'
    order); call number `opens` opens the gate once answered, after `on_open` (a test
    stops the real server there); `open_threadsafe` opens it from another thread.
    `events` records the calls in order: ("missing", n), ("held", n), ("put", n) as a
    call goes to the server and ("stored", n) as it returns, each with `watch()`'s
    value at that moment. `spoil`: the PutChunks call number whose first chunk goes
    with a wrong SHA-256 (the real server refuses the call); that chunk is kept in
    `spoiled`.
    """

    link: StoreLink
    loop: asyncio.AbstractEventLoop | None = None
    hold: int = 1
    spoil: int = 0
    asked_while_held: int = 0
    opens: int = 0
    on_open: Callable[[], None] = lambda: None
    watch: Callable[[], object] = lambda: None
    events: list[tuple[str, int, object]] = dataclasses.field(default_factory=list)
    puts: int = 0
    asked: int = 0
    spoiled: ChunkUpload | None = None  # the chunk `spoil` sent
    _gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    _at_gate: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def open_threadsafe(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._open)

    def _open(self) -> None:
        if not self._gate.is_set():
            self.on_open()
            self._gate.set()

    def _note(self, what: str, n: int) -> None:
        self.events.append((what, n, self.watch()))

    async def put_site_key(self, key: SiteKeyUpload) -> bool:
        return await self.link.put_site_key(key)

    async def missing_chunks(self, ids: Sequence[str]) -> list[str]:
        self.asked += 1
        n = self.asked
        if n == self.asked_while_held:
            await asyncio.wait_for(self._at_gate.wait(), GATE_WAIT)
        self._note("missing", n)
        answer = await self.link.missing_chunks(ids)
        if n == self.opens:
            self._open()
        return answer

    async def put_chunks(self, chunks: Sequence[ChunkUpload]) -> PutChunksResult:
        self.puts += 1
        n = self.puts
        if n == self.hold:
            self._note("held", n)
            self._at_gate.set()
            await asyncio.wait_for(self._gate.wait(), GATE_WAIT)
        if n == self.spoil:
            first = chunks[0]
            self.spoiled = ChunkUpload(first.chunk_id, first.data, bytes(32))
            chunks = [self.spoiled, *chunks[1:]]
        self._note("put", n)
        result = await self.link.put_chunks(chunks)
        self._note("stored", n)
        return result

    async def commit_snapshot(self, snapshot: SnapshotCommit) -> bool:
        return await self.link.commit_snapshot(snapshot)

    async def close(self) -> None:
        await self.link.close()
