"""A site's sealed off-site upload made with the real vault (keys, chunks, a snapshot),
and the gRPC messages that carry it, for the server's off-site tests."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterator

from storesafe.v1 import agent_pb2

from common.vault.chunks import SealedChunk, seal_chunk
from common.vault.datakey import seal_data_key
from common.vault.keys import FleetPrivateKey
from common.vault.manifest import Entry, SnapshotInfo
from common.vault.sitekeys import SiteKeys, new_data_key
from common.vault.snapshot import SealedSnapshot, seal_snapshot

WHEN = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@dataclasses.dataclass
class SiteUpload:
    """Everything one site's agent sends for one snapshot of a few small files."""

    fleet: FleetPrivateKey
    keys: SiteKeys
    sealed_key: str
    files: dict[str, bytes]
    content: list[SealedChunk]
    snapshot: SealedSnapshot

    @property
    def chunks(self) -> list[SealedChunk]:
        """Content chunks and manifest parts: what PutChunks must store."""
        return [*self.content, *self.snapshot.parts]

    def site_key_request(self, site: str = "") -> agent_pb2.PutSiteKeyRequest:
        return agent_pb2.PutSiteKeyRequest(
            sealed_key=self.sealed_key,
            data_key_id=self.keys.key_id_hex,
            recovery_key_fingerprint=self.fleet.public.fingerprint,
            site=site,
        )

    def header(self, **overrides: object) -> agent_pb2.SnapshotHeader:
        snap = self.snapshot
        fields: dict[str, object] = dict(
            snapshot_id=snap.snapshot_id,
            record=snap.record,
            record_sha256=hashlib.sha256(snap.record).digest(),
            kind=agent_pb2.SNAPSHOT_KIND_IMAGES,
            data_key_id=self.keys.key_id_hex,
            entries=snap.entries,
            size=snap.size,
            reference_count=len(snap.references),
        )
        fields.update(overrides)
        header = agent_pb2.SnapshotHeader(**fields)  # type: ignore[arg-type]
        if "created_at" not in overrides:
            header.created_at.FromDatetime(WHEN)
        return header

    def commit_requests(
        self, *, batch: int = 2, header: agent_pb2.SnapshotHeader | None = None
    ) -> list[agent_pb2.CommitSnapshotRequest]:
        """The header, then the references `batch` at a time."""
        refs = sorted(self.snapshot.references)
        out = [agent_pb2.CommitSnapshotRequest(header=header or self.header())]
        out += [
            agent_pb2.CommitSnapshotRequest(references=refs[at : at + batch])
            for at in range(0, len(refs), batch)
        ]
        return out


def put_request(chunk: SealedChunk, **overrides: object) -> agent_pb2.PutChunkRequest:
    fields: dict[str, object] = dict(
        id=chunk.chunk_id, data=chunk.blob, sha256=hashlib.sha256(chunk.blob).digest()
    )
    fields.update(overrides)
    return agent_pb2.PutChunkRequest(**fields)  # type: ignore[arg-type]


def site_upload(site: str, files: dict[str, bytes] | None = None) -> SiteUpload:
    """A sealed snapshot of `files` (one chunk each) for `site` under a fresh fleet key."""
    fleet = FleetPrivateKey.generate()
    data_key = new_data_key()
    keys = SiteKeys.derive(site, data_key)
    files = files or {f"img/{i:02d}.jpg": f"{site} picture {i} ".encode() * 50 for i in range(3)}
    content: list[SealedChunk] = []
    entries = []
    for path in sorted(files):
        chunk = seal_chunk(keys, files[path])
        content.append(chunk)
        entries.append(Entry(path, len(files[path]), 0, ((chunk.chunk_id, chunk.length),)))
    snapshot = seal_snapshot(keys, SnapshotInfo(site, WHEN, "Images"), entries)
    sealed_key = seal_data_key(site, data_key, fleet.public)
    return SiteUpload(fleet, keys, sealed_key, files, content, snapshot)


def each(requests: list[agent_pb2.PutChunkRequest]) -> Iterator[agent_pb2.PutChunkRequest]:
    yield from requests
