"""Storing a batch of uploaded chunks: checked, looked up in one query, the new blobs
written side by side and made durable together, then indexed in one transaction.

The rules are those of one chunk at a time, in stream order: the first chunk that fails
(a bad field, a digest mismatch, other bytes under a stored id, a chunk garbage
collection is deleting) decides the error, the chunks before it are stored and indexed,
none after it is written. An index row is only written once its blob is durable. Garbage
collection's states are honoured per chunk: a `deleting` one is refused (Unavailable:
send it later), a condemned one used again is rescued, and a chunk whose row GC holds
as an orphan placeholder is refused like a `deleting` one.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

from common.clock import Clock
from common.errors import (
    AlreadyExists,
    InvalidArgument,
    PermissionDenied,
    StoreSafeError,
    Unavailable,
    quote,
)
from server.domain import offsite as rules
from server.domain.offsite import ChunkRecord
from server.domain.records import AgentIdentity
from server.domain.store_gc import STORED
from server.state.store_base import StoreState
from server.storage import BlobStore, Digest, DigestMismatch


@dataclasses.dataclass(frozen=True)
class ChunkUpload:
    """One sealed chunk as an agent sent it, with the one digest it stated: raw bytes of
    `algorithm` (blake3 from current agents, sha256 from agents before BLAKE3)."""

    chunk_id: str
    data: bytes
    digest: bytes
    algorithm: str
    claimed_site: str = ""


def own_site(who: AgentIdentity, claimed: str) -> None:
    """PermissionDenied when the request names a site other than the credential's."""
    if claimed and claimed != who.site:
        raise PermissionDenied(
            f"this agent is enrolled for site {who.site!r} and may not act for {quote(claimed)}"
        )


def being_collected(chunk_id: str) -> Unavailable:
    return Unavailable(
        f"chunk {chunk_id} is being collected (garbage collection is deleting it); "
        "retry later and send it again"
    )


def distinct_run(batch: Sequence[ChunkUpload]) -> int:
    """How many chunks from the start of `batch` have distinct ids."""
    seen: set[str] = set()
    for at, up in enumerate(batch):
        if up.chunk_id in seen:
            return at
        seen.add(up.chunk_id)
    return len(batch)


class ChunkBatch:
    """One batch of chunks with distinct ids; `store` stores it, once."""

    def __init__(
        self,
        state: StoreState,
        store: BlobStore,
        clock: Clock,
        who: AgentIdentity,
        batch: Sequence[ChunkUpload],
    ) -> None:
        self._state = state
        self._store = store
        self._clock = clock
        self._who = who
        self._batch = batch
        self._end = len(batch)  # chunks from here on are not stored
        self._error: StoreSafeError | None = None
        self._digests: list[Digest] = []

    async def store(self) -> list[bool]:
        """Per chunk, whether this call stored it (False: the site had it already); the
        first failure is raised after the chunks before it are stored."""
        self._check_fields()
        found = await self._state.chunks(self._who.site_id, self._ids(range(self._end)))
        known = [at for at in range(self._end) if self._batch[at].chunk_id in found]
        await self._check_known(known, found)
        await self._rescue(known)
        seen = set(known)
        created = await self._save_new([at for at in range(self._end) if at not in seen])
        if self._error is not None:
            raise self._error
        return [created.get(at, False) for at in range(len(self._batch))]

    def _fail(self, at: int, error: StoreSafeError) -> None:
        """The chunk at `at` fails with `error` (when it comes before any failure so far)."""
        if at < self._end:
            self._end, self._error = at, error

    def _ids(self, positions: Sequence[int] | range) -> list[str]:
        return [self._batch[at].chunk_id for at in positions]

    def _check_fields(self) -> None:
        for at, up in enumerate(self._batch):
            try:
                own_site(self._who, up.claimed_site)
                rules.check_id(up.chunk_id)
                if len(up.data) > rules.MAX_CHUNK_BYTES:
                    raise InvalidArgument(
                        f"chunk {up.chunk_id} is {len(up.data)} bytes; at most "
                        f"{rules.MAX_CHUNK_BYTES} bytes a chunk"
                    )
                hexed = rules.check_digest(
                    up.digest, up.algorithm, f"the {up.algorithm} of chunk {up.chunk_id}"
                )
                self._digests.append(Digest(up.algorithm, hexed))
            except StoreSafeError as error:
                self._fail(at, error)
                return

    async def _check_known(self, known: list[int], found: dict[str, ChunkRecord]) -> None:
        """Known chunks: checked as the store checks a new one, then compared with the
        record like with like (hashed off the loop)."""
        if not known:
            return
        work = [
            (self._digests[at], self._batch[at].data, found[self._batch[at].chunk_id])
            for at in known
        ]
        checked = await asyncio.to_thread(lambda: [_held(*one) for one in work])
        for at, (match, held) in zip(known, checked, strict=True):
            up, record = self._batch[at], found[self._batch[at].chunk_id]
            if record.state != STORED:
                self._fail(at, being_collected(up.chunk_id))
            elif not match:
                self._fail(
                    at,
                    DigestMismatch(
                        f"chunk {up.chunk_id} does not hash to its stated {up.algorithm}; "
                        "nothing was stored"
                    ),
                )
            elif held != record.digest or record.size != len(up.data):
                self._fail(
                    at,
                    AlreadyExists(
                        f"chunk {up.chunk_id} is already stored with other content; stored "
                        "chunks are never overwritten"
                    ),
                )
            if self._error is not None:
                return

    async def _rescue(self, known: list[int]) -> None:
        """Known chunks used again: condemned ones rescued (one transaction); one being
        deleted since the lookup fails."""
        wanted = [at for at in known if at < self._end]
        if not wanted:
            return
        stored = await self._state.rescue_chunks(self._who.site_id, self._ids(wanted))
        for at in wanted:
            if self._batch[at].chunk_id not in stored:
                self._fail(at, being_collected(self._batch[at].chunk_id))
                return

    async def _save_new(self, new: list[int]) -> dict[int, bool]:
        """Write the new chunks' blobs, then index those whose blobs are durable."""
        new = [at for at in new if at < self._end]
        if not new:
            return {}
        site = self._who.site
        saved, error = await self._store.save_many(
            [
                (
                    rules.chunk_name(site, self._batch[at].chunk_id),
                    self._batch[at].data,
                    self._digests[at],
                )
                for at in new
            ]
        )
        if error is not None:
            self._fail(new[len(saved)], error)
        new = new[: len(saved)]
        # the blobs are durable: now the index may say so
        records = [
            ChunkRecord(
                self._batch[at].chunk_id,
                len(self._batch[at].data),
                self._digests[at].hex,
                algorithm=self._digests[at].algorithm,
            )
            for at in new
        ]
        added = await self._state.add_chunks(self._who.site_id, records, self._clock.now())
        # not added: another upload indexed it meanwhile, or GC is deleting it as an orphan
        others = [at for at in new if self._batch[at].chunk_id not in added]
        now = await self._state.chunks(self._who.site_id, self._ids(others)) if others else {}
        for at in others:
            row = now.get(self._batch[at].chunk_id)
            if row is None or row.state != STORED:
                self._fail(at, being_collected(self._batch[at].chunk_id))
                break
        return {at: done.created for at, done in zip(new, saved, strict=True) if at < self._end}


def _held(stated: Digest, data: bytes, record: ChunkRecord) -> tuple[bool, str]:
    """Whether `data` hashes to the digest it came with, and the hex digest of `data` with
    the algorithm the record names (the stated one when it is the same: one hash)."""
    match = stated.matches(data)
    if record.algorithm == stated.algorithm or not match:
        return match, stated.hex
    return match, Digest.of(data, record.algorithm).hex
