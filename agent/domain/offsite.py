"""The agent's side of the off-site store, in domain terms: what it sends and the link it sends on.

The store is append-only for agents: a site key, sealed chunks and snapshots
go in; nothing comes back but which chunk ids are missing and counts. The
transport (agent.transport.link.ServerLink) implements `StoreLink`;
capabilities get one through `agent.capability.Setup.store_link`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Collection, Sequence
from typing import Protocol

MAX_MISSING_IDS = 1_000
"""Ids one MissingChunks call asks about (the server's limit)."""
MAX_REFERENCES = 10_000
"""Reference ids one CommitSnapshot message carries (the server's limit)."""


class SnapshotKind(enum.StrEnum):
    IMAGES = "images"
    DATABASE = "database"


@dataclasses.dataclass(frozen=True)
class ChunkUpload:
    """One sealed chunk to store: its keyed id, the sealed bytes and their unkeyed BLAKE3
    (32 bytes), which the server checks on receipt."""

    chunk_id: str
    data: bytes
    blake3: bytes


@dataclasses.dataclass(frozen=True)
class PutChunksResult:
    """What one PutChunks stream stored."""

    stored: int
    duplicates: int
    bytes_stored: int


@dataclasses.dataclass(frozen=True)
class SiteKeyUpload:
    """The site's data key sealed to the fleet recovery key (`ssdk1:...`)."""

    sealed_key: str
    data_key_id: str
    recovery_key_fingerprint: str


@dataclasses.dataclass(frozen=True)
class SnapshotCommit:
    """A sealed snapshot record and the ids of every chunk it needs."""

    snapshot_id: str
    record: bytes
    record_sha256: bytes
    kind: SnapshotKind
    data_key_id: str
    created_at: dt.datetime
    entries: int
    size: int
    references: Collection[str]  # distinct; a file-backed collection for big snapshots
    backup_run_id: str = ""


class StoreLink(Protocol):
    """The off-site store calls, as the transport offers them (typed errors, never grpc's)."""

    async def put_site_key(self, key: SiteKeyUpload) -> bool:
        """Register the sealed data key; True when the server had it already."""
        ...

    async def missing_chunks(self, ids: Sequence[str]) -> list[str]:
        """Which of `ids` (at most MAX_MISSING_IDS) the store lacks, in request order."""
        ...

    async def put_chunks(self, chunks: Sequence[ChunkUpload]) -> PutChunksResult:
        """Store `chunks` on one PutChunks stream."""
        ...

    async def commit_snapshot(self, snapshot: SnapshotCommit) -> bool:
        """Commit the snapshot (header, then references in batches); True for a duplicate."""
        ...

    async def close(self) -> None: ...
