"""Snapshot manifest entries and records: their rules, their order, and their JSON lines.

An entry is one file: its path (see `paths`), size, mtime in ns and the
(id, length) of each of its chunks in order. Entries come sorted by
`path_key`; `EntryOrder` checks one entry at a time that there is no
duplicate, nothing out of order, and no path that is both a file and a folder.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from common.clock import iso
from common.errors import InvalidArgument, quote
from common.names import check_name
from common.vault.compress import MAX_PLAIN_BYTES
from common.vault.errors import BadChunkId, BadManifest, BadPath, UnsupportedFormat
from common.vault.ids import ID_PATTERN, check_id
from common.vault.paths import check_path, path_key

INT64_MAX = 2**63 - 1
MAX_TAGS = 32
_TAG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


ChunkRef = tuple[str, int]
"""One chunk of a file: (keyed chunk id, plaintext length)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a snapshot."""

    path: str
    size: int
    mtime_ns: int
    chunks: tuple[ChunkRef, ...] = ()

    def check(self) -> Entry:
        """This entry when it follows the rules, else a typed error naming its path."""
        check_path(self.path)
        if not _is_int(self.size) or not 0 <= self.size <= INT64_MAX:
            raise BadManifest(f"entry {quote(self.path)} has a bad size", self.path)
        if not _is_int(self.mtime_ns) or not -INT64_MAX <= self.mtime_ns <= INT64_MAX:
            raise BadManifest(f"entry {quote(self.path)} has a bad mtime", self.path)
        total = 0
        id_ok = ID_PATTERN.fullmatch
        for chunk_id, length in self.chunks:
            if not isinstance(chunk_id, str) or not id_ok(chunk_id):
                raise BadManifest(f"entry {quote(self.path)} lists a bad chunk id", self.path)
            if not _is_int(length) or not 0 < length <= MAX_PLAIN_BYTES:
                raise BadManifest(
                    f"entry {quote(self.path)} lists a chunk of bad length", self.path
                )
            total += length
        if total != self.size:
            raise BadManifest(
                f"entry {quote(self.path)} has size {self.size} but chunks of {total} bytes",
                self.path,
            )
        return self

    def line(self) -> bytes:
        """The entry as one JSON line (with its newline)."""
        raw = {"p": self.path, "s": self.size, "m": self.mtime_ns, "c": self.chunks}
        return orjson.dumps(raw) + b"\n"

    @classmethod
    def from_line(cls, line: bytes, where: str) -> Entry:
        """An entry from its JSON line, checked; `where` names the line in errors."""
        try:
            raw = orjson.loads(line)
            chunks = tuple((chunk_id, length) for chunk_id, length in raw["c"])
            entry = cls(raw["p"], raw["s"], raw["m"], chunks)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            raise BadManifest(f"{where} is not a manifest entry") from None
        return entry.check()


def _is_int(value: object) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


class EntryOrder:
    """Checks entries one at a time: sorted by `path_key`, no duplicate, no file-folder clash."""

    def __init__(self) -> None:
        self._last: tuple[str, ...] | None = None
        self.count = 0
        self.total = 0

    def add(self, entry: Entry) -> None:
        key = path_key(entry.path)
        last = self._last
        if last is not None and not key > last:
            shown = quote(entry.path)
            if key == last:
                raise BadPath(f"path {shown} appears twice in the snapshot", entry.path)
            raise BadManifest(
                f"entry {shown} is out of order (entries are sorted by path parts)", entry.path
            )
        if last is not None and key[: len(last)] == last:
            raise BadPath(
                f"path {quote('/'.join(last))} is a file and also the folder of "
                f"{quote(entry.path)}",
                entry.path,
            )
        self._last = key
        self.count += 1
        self.total += entry.size


def sorted_entries(entries: Iterable[Entry]) -> list[Entry]:
    """The entries in manifest order."""
    return sorted(entries, key=lambda e: path_key(e.path))


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot is of: the site, when it was taken, the source folder's name, tags."""

    site: str
    created: dt.datetime
    source: str
    tags: Mapping[str, str] = field(default_factory=dict)

    def check(self) -> SnapshotInfo:
        try:
            check_name(self.site)
        except InvalidArgument as err:
            raise BadManifest(f"snapshot site: {err.message}") from None
        if self.created.tzinfo is None:
            raise BadManifest("a snapshot's time must carry a time zone")
        if not self.source or len(self.source) > 255 or not self.source.isprintable():
            raise BadManifest(f"snapshot source {quote(self.source)} is not a printable name")
        if len(self.tags) > MAX_TAGS:
            raise BadManifest(f"a snapshot carries at most {MAX_TAGS} tags")
        for name, value in self.tags.items():
            if not isinstance(name, str) or not _TAG.fullmatch(name):
                raise BadManifest(f"snapshot tag name {quote(name)} is not lowercase a-z, 0-9")
            if not isinstance(value, str) or len(value) > 1024 or not value.isprintable():
                raise BadManifest(f"snapshot tag {name} has a value that is not short text")
        return self

    def record(self, *, entries: int, size: int, parts: list[str]) -> bytes:
        """The snapshot record: this info, the totals and the manifest's part chunks."""
        return orjson.dumps(
            {
                "format": 1,
                "site": self.site,
                "created": iso(self.created),
                "source": self.source,
                "tags": dict(self.tags),
                "entries": entries,
                "bytes": size,
                "parts": parts,
            }
        )

    @classmethod
    def from_record(cls, raw: Any) -> tuple[SnapshotInfo, int, int, list[str]]:
        """(info, entries, bytes, parts) from a decoded record; BadManifest when malformed."""
        try:
            if raw["format"] != 1:
                raise UnsupportedFormat(f"snapshot record format {quote(raw['format'])} is unknown")
            info = cls(
                site=raw["site"],
                created=dt.datetime.fromisoformat(raw["created"]),
                source=raw["source"],
                tags={str(k): v for k, v in raw["tags"].items()},
            ).check()
            parts = [check_id(p, "manifest part id") for p in raw["parts"]]
            entries, size = raw["entries"], raw["bytes"]
        except (KeyError, TypeError, ValueError, AttributeError, BadChunkId):
            raise BadManifest("the snapshot record is malformed") from None
        if not (_is_int(entries) and _is_int(size) and entries >= 0 and size >= 0):
            raise BadManifest("the snapshot record has bad totals")
        return info, entries, size, parts
