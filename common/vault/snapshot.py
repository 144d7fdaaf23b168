"""Sealing a snapshot (record + manifest) and opening it again, checking every entry.

The manifest is a stream of JSON lines, one entry each, sorted by path parts.
That stream is cut with the `MANIFESTS` chunking profile and each piece is
sealed as an ordinary content chunk, so consecutive snapshots of a folder
share most of their manifest chunks. The snapshot record (site, time,
source, tags, totals, the ids of the manifest chunks) is sealed with the
manifest key as a `SNAPSHOT` blob under its own keyed id. Sealing streams the
entries: `seal_snapshot` keeps the sealed manifest chunks and the set of
referenced ids, `seal_streamed` hands each sealed chunk on as it is cut and
keeps only the chunks' ids (a database snapshot of millions of refs); opening
checks each entry, their order and the totals.
"""

from __future__ import annotations

import datetime as dt
import hmac
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import orjson

from common.vault import envelope
from common.vault.chunking import MANIFESTS, Profile, chunk_stream
from common.vault.chunks import SealedChunk, open_chunk, seal_chunk
from common.vault.errors import BadManifest, SiteMismatch, Tampered, VaultError
from common.vault.ids import check_id
from common.vault.manifest import Entry, EntryOrder, SnapshotInfo
from common.vault.sitekeys import SiteKeys

Fetch = Callable[[str], bytes]
_BLOCK = 256  # entries checked and turned into manifest lines at a time


@dataclass(frozen=True)
class SealedSnapshot:
    """What the agent sends: the record blob under its id, the manifest chunks, and the
    ids of every chunk the snapshot needs (content and manifest) for the server's index."""

    snapshot_id: str
    record: bytes
    parts: list[SealedChunk]
    references: frozenset[str]
    entries: int
    size: int


@dataclass(frozen=True)
class SealedRecord:
    """A snapshot sealed by `seal_streamed`: the record blob under its id and the ids of the
    manifest chunks it handed on (in manifest order, a repeated piece repeated)."""

    snapshot_id: str
    record: bytes
    part_ids: list[str]
    entries: int
    size: int


@dataclass(frozen=True)
class Snapshot:
    """An opened, fully checked snapshot."""

    snapshot_id: str
    info: SnapshotInfo
    entries: list[Entry]
    size: int

    @property
    def site(self) -> str:
        return self.info.site

    @property
    def created(self) -> dt.datetime:
        return self.info.created


class _Lines:
    """A readable stream over the JSON lines of checked entries, for the chunker.

    Entries are checked and turned into lines a block at a time (`_BLOCK`), so the
    chunker's reads copy from one joined block instead of looping entry by entry. An
    entry that breaks a rule of its own goes to `unlisted` and is left out when that is
    given; else, as an entry out of order or named twice always does, it stops the seal.
    """

    def __init__(
        self,
        entries: Iterable[Entry],
        order: EntryOrder,
        refs: set[str] | None,
        unlisted: Callable[[VaultError], None] | None = None,
    ) -> None:
        self._entries = iter(entries)
        self.order = order
        self._refs = refs
        self._unlisted = unlisted
        self._pending = memoryview(b"")

    def _next_block(self) -> bool:
        """The lines of the next entries into `_pending`; False when none is left."""
        lines: list[bytes] = []
        add, refs = self.order.add, self._refs
        while not lines:
            block = list(itertools.islice(self._entries, _BLOCK))
            if not block:
                return False
            for entry in block:
                try:
                    entry.check()
                except VaultError as exc:
                    if self._unlisted is None:
                        raise
                    self._unlisted(exc)
                    continue
                add(entry)
                if refs is not None:
                    refs.update(chunk_id for chunk_id, _ in entry.chunks)
                lines.append(entry.line())
        self._pending = memoryview(b"".join(lines))
        return True

    def readinto(self, buffer: memoryview, /) -> int:
        filled = 0
        while filled < len(buffer):
            if not self._pending and not self._next_block():
                break
            take = min(len(buffer) - filled, len(self._pending))
            buffer[filled : filled + take] = self._pending[:take]
            self._pending = self._pending[take:]
            filled += take
        return filled


def seal_snapshot(
    keys: SiteKeys,
    info: SnapshotInfo,
    entries: Iterable[Entry],
    *,
    profile: Profile = MANIFESTS,
    unlisted: Callable[[VaultError], None] | None = None,
) -> SealedSnapshot:
    """Seal a snapshot of `entries` (sorted by `path_key`); a bad entry stops it, named.

    With `unlisted`, an entry that breaks a rule of its own (its path, size or chunks)
    is handed to it as its error and left out instead; one out of order or named twice
    still stops the seal. `profile` cuts the manifest (opening does not depend on it: the
    record lists the parts); database snapshots use smaller pieces (DATABASE_MANIFESTS).
    """
    refs: set[str] = set()
    parts: list[SealedChunk] = []
    lines = _Lines(entries, EntryOrder(), refs, unlisted)
    sealed = _seal(keys, info, lines, parts.append, profile)
    refs.update(sealed.part_ids)
    return SealedSnapshot(
        sealed.snapshot_id, sealed.record, parts, frozenset(refs), sealed.entries, sealed.size
    )


def seal_streamed(
    keys: SiteKeys,
    info: SnapshotInfo,
    entries: Iterable[Entry],
    send: Callable[[SealedChunk], None],
    *,
    profile: Profile = MANIFESTS,
) -> SealedRecord:
    """Seal a snapshot as `seal_snapshot` does, handing each manifest chunk to `send` as it
    is cut; memory holds one piece and the pieces' ids, whatever the number of entries. The
    ids the entries reference are not collected: the caller has them."""
    return _seal(keys, info, _Lines(entries, EntryOrder(), None), send, profile)


def _seal(
    keys: SiteKeys,
    info: SnapshotInfo,
    lines: _Lines,
    send: Callable[[SealedChunk], None],
    profile: Profile,
) -> SealedRecord:
    info.check()
    if info.site != keys.site:
        raise SiteMismatch(
            f"a snapshot of site {info.site} cannot be sealed with {keys.site}'s key"
        )
    part_ids: list[str] = []
    for piece in chunk_stream(lines, profile, keys.chunker_seed):
        part = seal_chunk(keys, piece)
        part_ids.append(part.chunk_id)
        send(part)
    order = lines.order
    record = info.record(entries=order.count, size=order.total, parts=part_ids)
    snapshot_id = keys.snapshot_id(record)
    _, blob = envelope.seal(
        envelope.Kind.SNAPSHOT, keys.manifest_key, keys.key_id, snapshot_id, record
    )
    return SealedRecord(snapshot_id, blob, part_ids, order.count, order.total)


def open_record(
    keys: SiteKeys, snapshot_id: str, blob: bytes
) -> tuple[SnapshotInfo, int, int, list[str]]:
    """(info, entries, bytes, manifest part ids) of a sealed snapshot record."""
    check_id(snapshot_id, "snapshot id")
    record = envelope.open_blob(
        envelope.Kind.SNAPSHOT, keys.manifest_key, keys.key_id, snapshot_id, blob
    )
    if not hmac.compare_digest(keys.snapshot_id(record), snapshot_id):
        raise Tampered(f"snapshot {snapshot_id} opened to a record with another id", snapshot_id)
    try:
        raw = orjson.loads(record)
    except orjson.JSONDecodeError:
        raise BadManifest(f"snapshot {snapshot_id} holds a record that is not JSON") from None
    info, count, size, parts = SnapshotInfo.from_record(raw)
    if info.site != keys.site:
        raise SiteMismatch(f"snapshot {snapshot_id} is of site {info.site}, not {keys.site}")
    return info, count, size, parts


def _lines(keys: SiteKeys, parts: list[str], fetch: Fetch) -> Iterator[bytes]:
    carry = b""
    for part_id in parts:
        data = carry + open_chunk(keys, part_id, fetch(part_id))
        *lines, carry = data.split(b"\n")
        yield from lines
    if carry:
        raise BadManifest("the manifest ends inside an entry")


def open_snapshot(keys: SiteKeys, snapshot_id: str, blob: bytes, fetch: Fetch) -> Snapshot:
    """Open and check a whole snapshot; `fetch(chunk_id)` returns a sealed manifest chunk."""
    info, count, size, parts = open_record(keys, snapshot_id, blob)
    order = EntryOrder()
    entries: list[Entry] = []
    for number, line in enumerate(_lines(keys, parts, fetch), start=1):
        entry = Entry.from_line(line, f"manifest line {number} of snapshot {snapshot_id}")
        order.add(entry)
        entries.append(entry)
    if order.count != count or order.total != size:
        raise BadManifest(
            f"snapshot {snapshot_id} lists {order.count} entries of {order.total} bytes, "
            f"its record says {count} of {size}"
        )
    return Snapshot(snapshot_id, info, entries, size)
