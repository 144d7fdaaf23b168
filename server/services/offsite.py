"""The agent side of the off-site store: register data keys, ask which chunks are
missing, upload sealed chunks, commit snapshots; append-only and confined to the
credential's own site."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Sequence

import zstandard

from common.clock import Clock
from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    quote,
)
from common.vault.datakey import SealedDataKey
from common.vault.errors import VaultError
from server.domain import offsite as rules
from server.domain.offsite import SiteKeyRecord, SnapshotRecord
from server.domain.records import AgentIdentity
from server.domain.store_gc import STORED
from server.services.chunk_batch import ChunkBatch, ChunkUpload, distinct_run, own_site
from server.services.chunk_inbox import ChunkInbox
from server.state.store_base import StoreState
from server.storage import BlobStore, Digest

__all__ = ["ChunkUpload", "OffsiteUploads", "SnapshotHeader", "UploadTotals", "own_site"]

_ZSTD_LEVEL = 3
BATCH_CHUNKS = 512
"""Chunks stored together at most: their blobs made durable at once, one index write."""
BATCH_BYTES = 8 << 20
"""Bytes of chunks stored together at most (or one chunk); as much is read ahead."""


@dataclasses.dataclass(frozen=True)
class UploadTotals:
    """What one PutChunks stream stored."""

    stored: int
    duplicates: int
    bytes_stored: int


@dataclasses.dataclass(frozen=True)
class SnapshotHeader:
    """The first message of a commit."""

    snapshot_id: str
    record: bytes
    record_sha256: bytes
    kind: str  # "images" | "database"; anything else is refused
    data_key_id: str
    created_at: dt.datetime | None
    entries: int
    size: int
    backup_run_id: str
    reference_count: int
    claimed_site: str = ""


class OffsiteUploads:
    """The four agent calls of the off-site store."""

    def __init__(self, state: StoreState, store: BlobStore, clock: Clock) -> None:
        self._state = state
        self._store = store
        self._clock = clock

    async def put_site_key(
        self,
        who: AgentIdentity,
        *,
        sealed_key: str,
        data_key_id: str,
        recovery_key_fingerprint: str,
        claimed_site: str = "",
    ) -> bool:
        """Store the site's sealed data key; True when it was stored already."""
        own_site(who, claimed_site)
        rules.check_key_id(data_key_id)
        try:
            parsed = SealedDataKey.parse(sealed_key)
        except VaultError as err:  # a damaged key text is the sender's fault
            raise InvalidArgument(err.message) from None
        if parsed.site != who.site:
            raise PermissionDenied(
                f"this data key is sealed for site {parsed.site!r}, not {who.site!r}"
            )
        if parsed.key_id_hex != data_key_id:
            raise InvalidArgument(
                f"data_key_id {data_key_id} is not the id inside the sealed key "
                f"({parsed.key_id_hex})"
            )
        if parsed.fingerprint != recovery_key_fingerprint:
            raise InvalidArgument(
                f"recovery_key_fingerprint {quote(recovery_key_fingerprint)} is not the "
                f"fingerprint inside the sealed key ({parsed.fingerprint})"
            )
        key = SiteKeyRecord(data_key_id, sealed_key.strip(), parsed.fingerprint, self._clock.now())
        if await self._state.add_site_key(who.site_id, key):
            return False
        stored = await self._state.site_key(who.site_id, data_key_id)
        if stored is not None and stored.sealed_key != key.sealed_key:
            raise AlreadyExists(
                f"site {who.site} has data key {data_key_id} stored with other sealed text; "
                "stored keys are never replaced"
            )
        return True

    async def missing_chunks(
        self, who: AgentIdentity, ids: Sequence[str], *, claimed_site: str = ""
    ) -> list[str]:
        """Those of `ids` (at most 1,000) the site's index lacks, in request order."""
        own_site(who, claimed_site)
        wanted = rules.check_ids(ids)
        found = await self._state.chunks(who.site_id, wanted)
        # a chunk being deleted by garbage collection is as good as gone: send it again
        return [one for one in wanted if one not in found or found[one].state != STORED]

    async def put_chunks(
        self, who: AgentIdentity, uploads: AsyncIterator[ChunkUpload]
    ) -> UploadTotals:
        """Store the chunks in batches of those that have arrived (a failure keeps the ones
        before it)."""
        stored = duplicates = size = 0
        inbox = ChunkInbox(
            uploads, max_chunks=BATCH_CHUNKS, max_bytes=BATCH_BYTES, ahead_bytes=BATCH_BYTES
        )
        async with inbox:
            while batch := await inbox.take():
                created = await self._put_batch(who, batch)
                stored += sum(created)
                duplicates += len(created) - sum(created)
                size += sum(len(up.data) for up, new in zip(batch, created, strict=True) if new)
        return UploadTotals(stored, duplicates, size)

    async def put_chunk(self, who: AgentIdentity, up: ChunkUpload) -> bool:
        """Store one chunk; False when the site had it with the same bytes already."""
        return (await self._put_batch(who, [up]))[0]

    async def _put_batch(self, who: AgentIdentity, batch: Sequence[ChunkUpload]) -> list[bool]:
        """Store the chunks in order, each id once a run (a repeated id starts the next)."""
        created: list[bool] = []
        while batch:
            cut = distinct_run(batch)
            created += await ChunkBatch(
                self._state, self._store, self._clock, who, batch[:cut]
            ).store()
            batch = batch[cut:]
        return created

    async def commit_snapshot(
        self,
        who: AgentIdentity,
        header: SnapshotHeader,
        reference_batches: AsyncIterator[Sequence[str]],
    ) -> bool:
        """Record a snapshot whose every reference is stored; True when it was already."""
        own_site(who, header.claimed_site)
        created_at, record_sha = await self._check_header(who, header)
        references = await _collect(reference_batches, header.reference_count)
        existing = await self._state.snapshot(who.site_id, header.snapshot_id)
        if existing is not None:
            if existing.record_sha256 != record_sha:
                raise AlreadyExists(
                    f"snapshot {header.snapshot_id} is already committed with another "
                    "record; snapshots are never replaced"
                )
            return True
        missing = await self._state.unstored(who.site_id, references)
        if missing:  # refused before anything is written
            raise FailedPrecondition(rules.missing_sentence(missing, len(missing)))
        await self._store.save(
            rules.snapshot_name(who.site, header.snapshot_id),
            header.record,
            Digest("sha256", record_sha),
        )
        refs = await asyncio.to_thread(_packed_refs, references)
        await self._store.save(
            rules.refs_name(who.site, header.snapshot_id), refs, Digest.of(refs, "blake3")
        )
        snap = SnapshotRecord(
            snapshot_id=header.snapshot_id,
            kind=header.kind,
            created_at=created_at,
            committed_at=self._clock.now(),
            entries=header.entries,
            size=header.size,
            data_key_id=header.data_key_id,
            backup_run_id=header.backup_run_id,
            chunks=len(references),
            stored_bytes=0,  # summed by the state from the rows it checks
            record_sha256=record_sha,
        )
        # checked again, condemned chunks rescued and the row inserted in one transaction:
        # garbage collection may have started deleting a chunk since the check above
        inserted, missing = await self._state.commit_snapshot(who.site_id, snap, references)
        if missing:
            raise FailedPrecondition(rules.missing_sentence(missing, len(missing)))
        return not inserted

    async def _check_header(
        self, who: AgentIdentity, header: SnapshotHeader
    ) -> tuple[dt.datetime, str]:
        rules.check_id(header.snapshot_id, "snapshot id")
        if not header.record:
            raise InvalidArgument("the snapshot header carries no record")
        if len(header.record) > rules.MAX_RECORD_BYTES:
            raise InvalidArgument(
                f"the snapshot record is {len(header.record)} bytes; at most "
                f"{rules.MAX_RECORD_BYTES} bytes"
            )
        record_sha = rules.check_sha256(header.record_sha256, "record_sha256")
        if not Digest("sha256", record_sha).matches(header.record):
            raise InvalidArgument(
                "the snapshot record does not hash to its record_sha256; nothing was stored"
            )
        rules.check_kind(header.kind)
        if header.created_at is None:
            raise InvalidArgument("the snapshot header has no created_at")
        if header.kind == "database" and not header.backup_run_id:
            raise InvalidArgument("a database snapshot must name its backup_run_id")
        if header.backup_run_id:
            rules.check_run_id(header.backup_run_id)
        if header.reference_count > rules.MAX_REFERENCES:
            raise InvalidArgument(
                f"a snapshot references at most {rules.MAX_REFERENCES} chunks, "
                f"not {header.reference_count}"
            )
        rules.check_key_id(header.data_key_id)
        if await self._state.site_key(who.site_id, header.data_key_id) is None:
            raise FailedPrecondition(
                f"data key {header.data_key_id} is not registered for site {who.site}; "
                "send it with PutSiteKey first"
            )
        return header.created_at, record_sha


async def _collect(batches: AsyncIterator[Sequence[str]], expected: int) -> list[str]:
    """The distinct references of the stream, checked; their number must be `expected`."""
    seen: dict[str, None] = {}
    async for batch in batches:
        if len(batch) > rules.MAX_REFERENCES_PER_MESSAGE:
            raise InvalidArgument(
                f"at most {rules.MAX_REFERENCES_PER_MESSAGE} references a message, not {len(batch)}"
            )
        for ref in batch:
            rules.check_id(ref, "chunk id")
            seen[ref] = None
        if len(seen) > expected:
            raise InvalidArgument(
                f"the stream carries more than the {expected} references its header announced"
            )
    if len(seen) != expected:
        raise InvalidArgument(
            f"the stream carries {len(seen)} distinct references, not the {expected} "
            "its header announced"
        )
    return list(seen)


def _packed_refs(references: Sequence[str]) -> bytes:
    compressed: bytes = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(
        rules.refs_text(references)
    )
    return compressed
