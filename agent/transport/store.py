"""The off-site store calls (PutSiteKey, MissingChunks, PutChunks, CommitSnapshot) on a ServerLink.

Each call has a deadline; a PutChunks stream carries one bounded batch (the
caller keeps batches small, so a cut connection loses at most one batch), its
small chunks several to a message;
CommitSnapshot sends the header, then the references in messages of at most
`MAX_REFERENCES`, taken from the references as the stream goes (a database
snapshot's come from a file). Failures come out as `common.errors` classes.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence

from storesafe.v1 import agent_pb2

from agent.domain.offsite import (
    MAX_MISSING_IDS,
    MAX_REFERENCES,
    ChunkUpload,
    PutChunksResult,
    SiteKeyUpload,
    SnapshotCommit,
    SnapshotKind,
)
from agent.transport.convert import timestamp
from agent.transport.link import ServerLink
from common.errors import InvalidArgument

KEY_TIMEOUT = 30.0
MISSING_TIMEOUT = 60.0
PUT_TIMEOUT = 600.0
"""One batch (a few MiB) at the slowest allowed pace still fits."""
MESSAGE_BYTES = 1 << 20
"""Chunks share a PutChunks message up to this many bytes (a larger chunk goes alone):
each message costs both sides a write, a wake-up and a decode whatever its size, which
for scans of a few dozen KiB was most of the agent's sending (bench/README.md)."""
COMMIT_TIMEOUT = 300.0

_KINDS = {
    SnapshotKind.IMAGES: agent_pb2.SNAPSHOT_KIND_IMAGES,
    SnapshotKind.DATABASE: agent_pb2.SNAPSHOT_KIND_DATABASE,
}


class StoreCalls:
    """The agent's off-site store calls over one link (agent.domain.offsite.StoreLink)."""

    def __init__(self, link: ServerLink) -> None:
        self.link = link
        self._stub = link.stub

    async def put_site_key(self, key: SiteKeyUpload) -> bool:
        request = agent_pb2.PutSiteKeyRequest(
            sealed_key=key.sealed_key,
            data_key_id=key.data_key_id,
            recovery_key_fingerprint=key.recovery_key_fingerprint,
        )
        reply = await self.link.call(
            self._stub.PutSiteKey(request, timeout=KEY_TIMEOUT, metadata=self.link.auth())
        )
        return reply.duplicate

    async def missing_chunks(self, ids: Sequence[str]) -> list[str]:
        if len(ids) > MAX_MISSING_IDS:
            raise InvalidArgument(f"ask about at most {MAX_MISSING_IDS} chunk ids at once")
        if not ids:
            return []
        request = agent_pb2.MissingChunksRequest(ids=list(ids))
        reply = await self.link.call(
            self._stub.MissingChunks(request, timeout=MISSING_TIMEOUT, metadata=self.link.auth())
        )
        return list(reply.missing)

    async def put_chunks(self, chunks: Sequence[ChunkUpload]) -> PutChunksResult:
        if not chunks:
            return PutChunksResult(0, 0, 0)

        async def messages() -> AsyncIterator[agent_pb2.PutChunkRequest]:
            for group in _messages(chunks):
                yield agent_pb2.PutChunkRequest(
                    chunks=[
                        agent_pb2.ChunkPiece(id=c.chunk_id, data=c.data, blake3=c.blake3)
                        for c in group
                    ]
                )

        reply = await self.link.call(
            self._stub.PutChunks(messages(), timeout=PUT_TIMEOUT, metadata=self.link.auth())
        )
        return PutChunksResult(reply.stored, reply.duplicates, reply.bytes_stored)

    async def commit_snapshot(self, snapshot: SnapshotCommit) -> bool:
        header = agent_pb2.SnapshotHeader(
            snapshot_id=snapshot.snapshot_id,
            record=snapshot.record,
            record_sha256=snapshot.record_sha256,
            kind=_KINDS[snapshot.kind],
            data_key_id=snapshot.data_key_id,
            created_at=timestamp(snapshot.created_at),
            entries=snapshot.entries,
            size=snapshot.size,
            backup_run_id=snapshot.backup_run_id,
            reference_count=len(snapshot.references),
        )

        async def messages() -> AsyncIterator[agent_pb2.CommitSnapshotRequest]:
            yield agent_pb2.CommitSnapshotRequest(header=header)
            refs = iter(snapshot.references)  # read batch by batch: it may be a file
            while batch := list(itertools.islice(refs, MAX_REFERENCES)):
                yield agent_pb2.CommitSnapshotRequest(references=batch)

        reply = await self.link.call(
            self._stub.CommitSnapshot(messages(), timeout=COMMIT_TIMEOUT, metadata=self.link.auth())
        )
        return reply.duplicate

    async def close(self) -> None:
        await self.link.close()


def _messages(chunks: Sequence[ChunkUpload]) -> list[list[ChunkUpload]]:
    """`chunks` in order, grouped into messages of at most MESSAGE_BYTES (or one chunk)."""
    groups: list[list[ChunkUpload]] = []
    size = MESSAGE_BYTES
    for chunk in chunks:
        if size + len(chunk.data) > MESSAGE_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(chunk)
        size += len(chunk.data)
    return groups
