"""Sealed snapshots of small in-memory folders, made with common.vault as an agent would.

For the restore tests: the unit tests serve them from a fake admin client
(tests/support/cli.py), the integration test uploads them to a real server
with the agent RPCs. `seal_lines` builds a manifest the vault's own sealing
would refuse (a path attack, say), exactly as a hostile server could offer it.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

from common.vault import envelope
from common.vault.chunking import IMAGES
from common.vault.chunks import seal_chunk, seal_stream
from common.vault.datakey import seal_data_key
from common.vault.keys import FleetPrivateKey
from common.vault.manifest import Entry, SnapshotInfo, sorted_entries
from common.vault.sitekeys import SiteKeys, new_data_key
from common.vault.snapshot import seal_snapshot

TAKEN = dt.datetime(2026, 11, 26, 21, 0, tzinfo=dt.UTC)
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


def new_site(site: str = "shop-a", fleet: FleetPrivateKey | None = None) -> SealedSite:
    """A fresh data key for `site`, sealed to `fleet` (a new fleet key when None)."""
    fleet = fleet or FleetPrivateKey.generate()
    data_key = new_data_key()
    sealed = seal_data_key(site, data_key, fleet.public)
    return SealedSite(site, fleet, SiteKeys.derive(site, data_key), sealed)


@dataclass(frozen=True)
class Sealed:
    """One sealed snapshot: its id, record and every sealed chunk it needs (by id)."""

    snapshot_id: str
    record: bytes
    created: dt.datetime
    entries: int
    size: int
    chunks: dict[str, bytes] = field(default_factory=dict)
    parts: tuple[str, ...] = ()

    @property
    def references(self) -> list[str]:
        return sorted(self.chunks)


def mtime_of(path: str) -> int:
    """A distinct, fixed mtime (ns) for each test path."""
    return MTIME_NS + sum(map(ord, path)) * 1_000_000_007


def seal_files(site: SealedSite, files: Files, created: dt.datetime = TAKEN) -> Sealed:
    """A snapshot of `files` (path -> bytes; mtimes from `mtime_of`), sealed as the agent does."""
    chunks: dict[str, bytes] = {}
    entries = []
    for path, data in files.items():
        refs = []
        for chunk in seal_stream(site.keys, io.BytesIO(data), IMAGES):
            chunks[chunk.chunk_id] = chunk.blob
            refs.append((chunk.chunk_id, chunk.length))
        entries.append(Entry(path, len(data), mtime_of(path), tuple(refs)))
    info = SnapshotInfo(site.site, created, "images")
    snap = seal_snapshot(site.keys, info, sorted_entries(entries))
    parts = tuple(part.chunk_id for part in snap.parts)
    chunks.update({part.chunk_id: part.blob for part in snap.parts})
    return Sealed(snap.snapshot_id, snap.record, created, snap.entries, snap.size, chunks, parts)


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
    return Sealed(
        snapshot_id, blob, created, len(lines), size, {part.chunk_id: part.blob}, (part.chunk_id,)
    )
