"""Off-site store messages <-> service inputs and records (chunks, snapshots, site keys)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from storesafe.v1 import admin_pb2, agent_pb2

from common.errors import InvalidArgument, quote
from server.domain.offsite import MAX_FETCH_MESSAGE_BYTES, SiteKeyRecord, SnapshotRecord
from server.rpc.convert.admin import run_report
from server.rpc.convert.stamps import from_ts, ts
from server.services.offsite import ChunkUpload, SnapshotHeader
from server.services.storecheck import CheckProgress

KIND_NAMES: dict[int, str] = {
    agent_pb2.SNAPSHOT_KIND_IMAGES: "images",
    agent_pb2.SNAPSHOT_KIND_DATABASE: "database",
}
KIND_VALUES = {name: value for value, name in KIND_NAMES.items()}


def kind_name(value: int) -> str:
    """The kind's name; "" for unspecified; an unknown number is refused."""
    if value == agent_pb2.SNAPSHOT_KIND_UNSPECIFIED:
        return ""
    name = KIND_NAMES.get(value)
    if name is None:
        raise InvalidArgument(f"snapshot kind {value} is unknown (use images or database)")
    return name


async def chunk_uploads(
    requests: AsyncIterator[agent_pb2.PutChunkRequest],
) -> AsyncIterator[ChunkUpload]:
    """The chunks of a PutChunks stream in order: one a message in the message's own
    fields, or several in its `chunks`, never both."""
    async for req in requests:
        if not req.chunks:
            yield ChunkUpload(req.id, req.data, *stated_digest(req), req.site)
            continue
        if req.id or req.data or req.sha256 or req.blake3:
            raise InvalidArgument(
                "a PutChunks message carries one chunk in its own fields or several in "
                "`chunks`, not both"
            )
        for piece in req.chunks:
            yield ChunkUpload(piece.id, piece.data, *stated_digest(piece), req.site)


def stated_digest(chunk: agent_pb2.PutChunkRequest | agent_pb2.ChunkPiece) -> tuple[bytes, str]:
    """The one digest a chunk states and its algorithm: blake3, or sha256 from agents
    before BLAKE3; both or neither is refused."""
    if chunk.blake3 and chunk.sha256:
        raise InvalidArgument(
            f"chunk {quote(chunk.id, 80)} states both a blake3 and a sha256 digest; "
            "a chunk states exactly one"
        )
    if chunk.blake3:
        return chunk.blake3, "blake3"
    if chunk.sha256:
        return chunk.sha256, "sha256"
    raise InvalidArgument(
        f"chunk {quote(chunk.id, 80)} states no digest; a chunk states exactly one "
        "(blake3, or sha256)"
    )


async def commit_stream(
    requests: AsyncIterator[agent_pb2.CommitSnapshotRequest],
) -> tuple[SnapshotHeader, AsyncIterator[Sequence[str]]]:
    """The header of a CommitSnapshot stream and the reference batches that follow
    (the first message's own references count too)."""
    first = await anext(aiter(requests), None)
    if first is None or not first.HasField("header"):
        raise InvalidArgument("a CommitSnapshot stream must start with its header")
    h = first.header
    header = SnapshotHeader(
        snapshot_id=h.snapshot_id,
        record=h.record,
        record_sha256=h.record_sha256,
        kind=kind_name(h.kind) or "unspecified",
        data_key_id=h.data_key_id,
        created_at=from_ts(h, "created_at"),
        entries=h.entries,
        size=h.size,
        backup_run_id=h.backup_run_id,
        reference_count=h.reference_count,
        claimed_site=first.site,
    )

    async def batches() -> AsyncIterator[Sequence[str]]:
        yield list(first.references)
        async for req in requests:
            if req.HasField("header"):
                raise InvalidArgument("a CommitSnapshot stream carries one header, first")
            if req.site and req.site != first.site:
                raise InvalidArgument("every message of a CommitSnapshot stream names one site")
            yield list(req.references)

    return header, batches()


def snapshot_summary(snap: SnapshotRecord) -> admin_pb2.SnapshotSummary:
    return admin_pb2.SnapshotSummary(
        snapshot_id=snap.snapshot_id,
        kind=KIND_VALUES.get(snap.kind, agent_pb2.SNAPSHOT_KIND_UNSPECIFIED),  # type: ignore[arg-type]
        created_at=ts(snap.created_at),
        committed_at=ts(snap.committed_at),
        entries=snap.entries,
        size=snap.size,
        data_key_id=snap.data_key_id,
        backup_run_id=snap.backup_run_id,
        chunks=snap.chunks,
        stored_bytes=snap.stored_bytes,
    )


def site_key(key: SiteKeyRecord) -> admin_pb2.SiteKey:
    return admin_pb2.SiteKey(
        data_key_id=key.data_key_id,
        sealed_key=key.sealed_key,
        recovery_key_fingerprint=key.recovery_key_fingerprint,
        created_at=ts(key.created_at),
    )


async def fetched_chunks(
    groups: AsyncIterator[list[tuple[str, bytes]]], max_message_bytes: int
) -> AsyncIterator[admin_pb2.FetchedChunk]:
    """The messages of a FetchChunks stream: one chunk each in id and data when the client
    set no `max_message_bytes` (clients before it), else as many chunks a message as fit in
    that many bytes (capped at MAX_FETCH_MESSAGE_BYTES; a larger chunk goes alone)."""
    if not max_message_bytes:
        async for group in groups:
            for chunk_id, data in group:
                yield admin_pb2.FetchedChunk(id=chunk_id, data=data)
        return
    limit = min(max_message_bytes, MAX_FETCH_MESSAGE_BYTES)
    message = admin_pb2.FetchedChunk()
    size = 0
    async for group in groups:
        for chunk_id, data in group:
            if size and size + len(chunk_id) + len(data) > limit:
                yield message
                message = admin_pb2.FetchedChunk()
                size = 0
            message.chunks.add(id=chunk_id, data=data)
            size += len(chunk_id) + len(data)
    if size:
        yield message


def verify_update(update: CheckProgress) -> admin_pb2.VerifyStoreUpdate:
    msg = admin_pb2.VerifyStoreUpdate(
        site=update.site,
        chunks_checked=update.checked,
        chunks_total=update.total,
        bytes_checked=update.bytes_checked,
    )
    if update.result is not None:
        msg.result.CopyFrom(run_report(update.result))
    return msg
