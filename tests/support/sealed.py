"""Sealed off-site uploads made with the real vault, as an agent makes them: one helper for
every test that needs a site's keys, a sealed snapshot of a few files, the gRPC messages
that carry them, or their upload to a real server.

- `new_site` / `SealedSite`: a site's data key, its sub-keys, the data key sealed to a
  fleet key, and the PutSiteKey request that registers it;
- `seal_files` / `Sealed`: a snapshot of small in-memory files (chunked as the agent
  chunks images; mtimes from `mtime_of`) with every sealed chunk it needs, its
  SnapshotHeader and CommitSnapshot requests; `seal_lines` builds a manifest the
  vault's own sealing would refuse (a path attack, say), as a hostile server could
  offer it;
- `site_upload` / `SiteUpload`: both at once, for the server's off-site API tests;
- `upload`: PutSiteKey, MissingChunks, PutChunks of the missing ones and CommitSnapshot
  against a real server, as an agent would.

The restore tests serve `Sealed` snapshots from a fake admin client (tests/support/cli.py)
or upload them to a real server; the in-memory store the uploader's unit tests send to is
tests/support/offsitestore.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass

import blake3
import grpc
from storesafe.v1 import agent_pb2, agent_pb2_grpc

from common.vault import envelope
from common.vault.chunking import IMAGES
from common.vault.chunks import SealedChunk, seal_chunk, seal_stream
from common.vault.datakey import seal_data_key
from common.vault.keys import FleetPrivateKey
from common.vault.manifest import Entry, SnapshotInfo, sorted_entries
from common.vault.sitekeys import SiteKeys, new_data_key
from common.vault.snapshot import seal_snapshot
from tests.support.server import ServerHandle

TAKEN = dt.datetime(2026, 11, 26, 21, 0, tzinfo=dt.UTC)
WHEN = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)  # when `site_upload`'s snapshot is taken
MTIME_NS = 1_764_000_000_123_456_789

Files = dict[str, bytes]


@dataclass(frozen=True)
class SealedSite:
    """A site's data key, its sub-keys, and the data key sealed to a fleet key."""

    site: str
    fleet: FleetPrivateKey
    keys: SiteKeys
    sealed_key: str

    @property
    def data_key_id(self) -> str:
        return self.keys.key_id_hex

    def site_key_request(self, site: str = "") -> agent_pb2.PutSiteKeyRequest:
        return agent_pb2.PutSiteKeyRequest(
            sealed_key=self.sealed_key,
            data_key_id=self.data_key_id,
            recovery_key_fingerprint=self.fleet.public.fingerprint,
            site=site,
        )


def new_site(site: str = "shop-a", fleet: FleetPrivateKey | None = None) -> SealedSite:
    """A fresh data key for `site`, sealed to `fleet` (a new fleet key when None)."""
    fleet = fleet or FleetPrivateKey.generate()
    data_key = new_data_key()
    sealed = seal_data_key(site, data_key, fleet.public)
    return SealedSite(site, fleet, SiteKeys.derive(site, data_key), sealed)


@dataclass(frozen=True)
class Sealed:
    """One sealed snapshot: its id, record, and every sealed chunk it needs, content first
    (in file order) then the manifest parts."""

    snapshot_id: str
    record: bytes
    created: dt.datetime
    entries: int
    size: int
    data_key_id: str
    sealed: tuple[SealedChunk, ...] = ()
    content_count: int = 0

    @property
    def chunks(self) -> dict[str, bytes]:
        """Chunk id -> sealed blob, of every chunk (content and manifest parts)."""
        return {c.chunk_id: c.blob for c in self.sealed}

    @property
    def content(self) -> tuple[SealedChunk, ...]:
        return self.sealed[: self.content_count]

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(c.chunk_id for c in self.sealed[self.content_count :])

    @property
    def references(self) -> list[str]:
        return sorted(self.chunks)

    def header(self, **overrides: object) -> agent_pb2.SnapshotHeader:
        """Its SnapshotHeader; `overrides` replace fields (a wrong count, say)."""
        fields: dict[str, object] = dict(
            snapshot_id=self.snapshot_id,
            record=self.record,
            record_sha256=hashlib.sha256(self.record).digest(),
            kind=agent_pb2.SNAPSHOT_KIND_IMAGES,
            data_key_id=self.data_key_id,
            entries=self.entries,
            size=self.size,
            reference_count=len(self.references),
        )
        fields.update(overrides)
        header = agent_pb2.SnapshotHeader(**fields)  # type: ignore[arg-type]
        if "created_at" not in overrides:
            header.created_at.FromDatetime(self.created)
        return header

    def commit_requests(
        self, *, batch: int = 2, header: agent_pb2.SnapshotHeader | None = None
    ) -> list[agent_pb2.CommitSnapshotRequest]:
        """The header, then the references `batch` at a time."""
        refs = self.references
        out = [agent_pb2.CommitSnapshotRequest(header=header or self.header())]
        out += [
            agent_pb2.CommitSnapshotRequest(references=refs[at : at + batch])
            for at in range(0, len(refs), batch)
        ]
        return out


def mtime_of(path: str) -> int:
    """A distinct, fixed mtime (ns) for each test path."""
    return MTIME_NS + sum(map(ord, path)) * 1_000_000_007


def seal_files(site: SealedSite, files: Files, created: dt.datetime = TAKEN) -> Sealed:
    """A snapshot of `files` (path -> bytes; mtimes from `mtime_of`), sealed as the agent does."""
    content: dict[str, SealedChunk] = {}
    entries = []
    for path, data in files.items():
        refs = []
        for chunk in seal_stream(site.keys, io.BytesIO(data), IMAGES):
            content.setdefault(chunk.chunk_id, chunk)
            refs.append((chunk.chunk_id, chunk.length))
        entries.append(Entry(path, len(data), mtime_of(path), tuple(refs)))
    info = SnapshotInfo(site.site, created, "images")
    snap = seal_snapshot(site.keys, info, sorted_entries(entries))
    parts = {p.chunk_id: p for p in snap.parts if p.chunk_id not in content}
    return Sealed(
        snap.snapshot_id,
        snap.record,
        created,
        snap.entries,
        snap.size,
        site.data_key_id,
        (*content.values(), *parts.values()),
        len(content),
    )


def seal_lines(
    site: SealedSite, lines: list[bytes], size: int, created: dt.datetime = TAKEN
) -> Sealed:
    """A snapshot whose manifest is `lines` as given (JSON lines, no check), one part."""
    part = seal_chunk(site.keys, b"".join(lines))
    info = SnapshotInfo(site.site, created, "images")
    record = info.record(entries=len(lines), size=size, parts=[part.chunk_id])
    snapshot_id = site.keys.snapshot_id(record)
    _, blob = envelope.seal(
        envelope.Kind.SNAPSHOT, site.keys.manifest_key, site.keys.key_id, snapshot_id, record
    )
    return Sealed(snapshot_id, blob, created, len(lines), size, site.data_key_id, (part,), 0)


@dataclass(frozen=True)
class SiteUpload(SealedSite):
    """Everything one site's agent sends for one snapshot of a few small files."""

    snapshot: Sealed
    files: Files

    @property
    def content(self) -> tuple[SealedChunk, ...]:
        return self.snapshot.content

    @property
    def chunks(self) -> tuple[SealedChunk, ...]:
        """Content chunks and manifest parts: what PutChunks must store."""
        return self.snapshot.sealed

    def header(self, **overrides: object) -> agent_pb2.SnapshotHeader:
        return self.snapshot.header(**overrides)

    def commit_requests(
        self, *, batch: int = 2, header: agent_pb2.SnapshotHeader | None = None
    ) -> list[agent_pb2.CommitSnapshotRequest]:
        return self.snapshot.commit_requests(batch=batch, header=header)


def site_upload(site: str, files: Files | None = None) -> SiteUpload:
    """A sealed snapshot of `files` (a few small ones by default) for `site` under a fresh
    fleet key, taken at WHEN."""
    files = files or {f"img/{i:02d}.jpg": f"{site} picture {i} ".encode() * 50 for i in range(3)}
    s = new_site(site)
    return SiteUpload(s.site, s.fleet, s.keys, s.sealed_key, seal_files(s, files, WHEN), files)


def put_request(chunk: SealedChunk, **overrides: object) -> agent_pb2.PutChunkRequest:
    fields: dict[str, object] = dict(
        id=chunk.chunk_id, data=chunk.blob, blake3=blake3.blake3(chunk.blob).digest()
    )
    fields.update(overrides)
    return agent_pb2.PutChunkRequest(**fields)  # type: ignore[arg-type]


def each(requests: list[agent_pb2.PutChunkRequest]) -> Iterator[agent_pb2.PutChunkRequest]:
    yield from requests


def upload(
    server: ServerHandle,
    credential: str,
    site: SealedSite,
    snap: Sealed,
    *,
    backup_run_id: str = "",
) -> None:
    """PutSiteKey, MissingChunks, PutChunks of the missing ones, CommitSnapshot (a
    database snapshot of that backup run when `backup_run_id` is given)."""
    metadata = (("authorization", f"Bearer {credential}"),)
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    with grpc.secure_channel(server.address, creds) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        stub.PutSiteKey(site.site_key_request(), metadata=metadata, timeout=30)
        ids = snap.references
        missing: set[str] = set()
        for at in range(0, len(ids), 1000):
            answer = stub.MissingChunks(
                agent_pb2.MissingChunksRequest(ids=ids[at : at + 1000]),
                metadata=metadata,
                timeout=30,
            )
            missing.update(answer.missing)
        puts = [put_request(c) for c in snap.sealed if c.chunk_id in missing]
        stub.PutChunks(iter(puts), metadata=metadata, timeout=60)
        header = (
            snap.header(kind=agent_pb2.SNAPSHOT_KIND_DATABASE, backup_run_id=backup_run_id)
            if backup_run_id
            else None
        )
        requests = snap.commit_requests(batch=10_000, header=header)
        stub.CommitSnapshot(iter(requests), metadata=metadata, timeout=60)
