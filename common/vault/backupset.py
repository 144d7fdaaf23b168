"""Database snapshots: how one verified backup is laid out in a snapshot.

A database snapshot (kind "database") copies one verified backup: the logical
streams a restore needs, uncompressed (gbak: the one gbak output stream; nbackup:
the level files of its chain, level 0 first). Each stream is cut with the
`BACKUPS` chunking profile. Its chunk references are split into entries of at
most `PART_CHUNKS` chunks, named `stream-NN/part-PPPPPP`, so the names stay the
same from day to day (consecutive days' manifests share their unchanged parts)
and no single manifest line grows with the backup. Entry mtimes are 0.

The record's `source` is "firebird" and its tags say what it copies:
`run` (the backup run id), `method`, `database` (as configured), `backup.sha256`
(hex of the compressed file in backup.dir, the run's recorded checksum),
`backup.size` (its bytes), and per stream NN: `stream.NN.file` (its file name in
backup.dir), `stream.NN.sha256` (hex of the uncompressed stream, recorded at
backup time), `stream.NN.size` and `stream.NN.level`. A restore reassembles each
stream from its parts in order and checks its size and sha256.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Iterator, Sequence

from common.vault.errors import BadManifest
from common.vault.manifest import ChunkRef, Entry, SnapshotInfo

SOURCE = "firebird"
PART_CHUNKS = 4096
MAX_STREAMS = 6
METHODS = ("gbak", "nbackup")
_PATH = re.compile(r"stream-(\d{2})/part-(\d{6})")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RUN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def stream_path(index: int, part: int) -> str:
    return f"stream-{index:02d}/part-{part:06d}"


@dataclasses.dataclass(frozen=True)
class StreamInfo:
    """One logical stream of the backup: its file in backup.dir, size and sha256 (hex)."""

    index: int
    file: str
    size: int
    sha256: str
    level: int = 0

    def check(self) -> StreamInfo:
        if not 0 <= self.index < MAX_STREAMS:
            raise BadManifest(f"stream index {self.index} is outside 0-{MAX_STREAMS - 1}")
        if not self.file or len(self.file) > 255 or not self.file.isprintable():
            raise BadManifest(f"stream {self.index} has no printable file name")
        if "/" in self.file or "\\" in self.file:
            raise BadManifest(f"stream {self.index}'s file name holds a path separator")
        if not isinstance(self.size, int) or self.size < 0:
            raise BadManifest(f"stream {self.index} has a bad size")
        if not _HEX64.fullmatch(self.sha256):
            raise BadManifest(f"stream {self.index} has no sha256 (64 lowercase hex)")
        if not 0 <= self.level <= 9:
            raise BadManifest(f"stream {self.index} has a bad nbackup level")
        return self


@dataclasses.dataclass(frozen=True)
class BackupInfo:
    """What a database snapshot copies."""

    run_id: str
    method: str
    database: str
    backup_sha256: str
    backup_size: int
    streams: tuple[StreamInfo, ...]

    def check(self) -> BackupInfo:
        if not _RUN.fullmatch(self.run_id):
            raise BadManifest("the backup run id is not 1-64 characters of A-Z a-z 0-9 _ . : -")
        if self.method not in METHODS:
            raise BadManifest(f"backup method {self.method!r} is not gbak or nbackup")
        if len(self.database) > 1024 or not self.database.isprintable():
            raise BadManifest("the database path is not short printable text")
        if not _HEX64.fullmatch(self.backup_sha256):
            raise BadManifest("backup.sha256 is not 64 lowercase hex")
        if not isinstance(self.backup_size, int) or self.backup_size < 0:
            raise BadManifest("backup.size is not a size")
        if not 1 <= len(self.streams) <= MAX_STREAMS:
            raise BadManifest(f"a database snapshot has 1-{MAX_STREAMS} streams")
        for number, stream in enumerate(self.streams):
            stream.check()
            if stream.index != number:
                raise BadManifest(f"stream {stream.index} is listed as stream {number}")
        if self.method == "gbak" and len(self.streams) != 1:
            raise BadManifest("a gbak backup is one stream")
        return self

    @property
    def size(self) -> int:
        return sum(s.size for s in self.streams)

    def snapshot_info(self, site: str, created: dt.datetime) -> SnapshotInfo:
        """The snapshot info (source and tags) of a database snapshot of this backup."""
        self.check()
        tags = {
            "run": self.run_id,
            "method": self.method,
            "database": self.database,
            "backup.sha256": self.backup_sha256,
            "backup.size": str(self.backup_size),
        }
        for s in self.streams:
            prefix = f"stream.{s.index:02d}"
            tags[f"{prefix}.file"] = s.file
            tags[f"{prefix}.sha256"] = s.sha256
            tags[f"{prefix}.size"] = str(s.size)
            tags[f"{prefix}.level"] = str(s.level)
        return SnapshotInfo(site=site, created=created, source=SOURCE, tags=tags).check()

    @classmethod
    def from_snapshot_info(cls, info: SnapshotInfo) -> BackupInfo:
        """The backup a database snapshot copies; BadManifest when it is not one."""
        if info.source != SOURCE:
            raise BadManifest(f"snapshot source {info.source!r} is not a database backup")
        tags = dict(info.tags)
        try:
            streams = []
            for index in range(MAX_STREAMS):
                prefix = f"stream.{index:02d}"
                if f"{prefix}.file" not in tags:
                    break
                streams.append(
                    StreamInfo(
                        index=index,
                        file=tags[f"{prefix}.file"],
                        size=_count(tags[f"{prefix}.size"]),
                        sha256=tags[f"{prefix}.sha256"],
                        level=_count(tags[f"{prefix}.level"]),
                    )
                )
            found = cls(
                run_id=tags["run"],
                method=tags["method"],
                database=tags["database"],
                backup_sha256=tags["backup.sha256"],
                backup_size=_count(tags["backup.size"]),
                streams=tuple(streams),
            )
        except KeyError as err:
            raise BadManifest(f"the database snapshot has no tag {err.args[0]!r}") from None
        return found.check()


def _count(text: str) -> int:
    if not text.isdigit() or len(text) > 19:
        raise BadManifest(f"{text[:40]!r} is not a count")
    return int(text)


def stream_entries(index: int, refs: Iterable[ChunkRef]) -> Iterator[Entry]:
    """The entries of stream `index` for its chunk refs in order (an empty stream: one
    empty part)."""
    part: list[ChunkRef] = []
    number = 0
    for ref in refs:
        part.append(ref)
        if len(part) == PART_CHUNKS:
            yield Entry(stream_path(index, number), sum(n for _, n in part), 0, tuple(part))
            part, number = [], number + 1
    if part or number == 0:
        yield Entry(stream_path(index, number), sum(n for _, n in part), 0, tuple(part))


def stream_refs(info: BackupInfo, entries: Sequence[Entry]) -> list[list[ChunkRef]]:
    """Each stream's chunk refs in order, from a database snapshot's entries; BadManifest
    when a part is missing, out of place, or a stream's size is not its recorded size."""
    refs: list[list[ChunkRef]] = [[] for _ in info.streams]
    expected = (0, 0)
    sizes = [0] * len(info.streams)
    for entry in entries:
        found = _PATH.fullmatch(entry.path)
        if found is None:
            raise BadManifest(f"entry {entry.path!r} is not a database stream part")
        index, part = int(found.group(1)), int(found.group(2))
        if index >= len(info.streams):
            raise BadManifest(f"entry {entry.path!r} names a stream the snapshot does not list")
        if (index, part) != expected and (index, part) != (expected[0] + 1, 0):
            raise BadManifest(f"entry {entry.path!r} is out of sequence (a part is missing)")
        if part > 0 and len(refs[index]) != part * PART_CHUNKS:
            raise BadManifest(f"the part before {entry.path!r} is not full")
        refs[index].extend(entry.chunks)
        sizes[index] += entry.size
        expected = (index, part + 1)
    for stream in info.streams:
        if expected[0] < stream.index or (expected[0] == stream.index and expected[1] == 0):
            raise BadManifest(f"stream {stream.index} ({stream.file}) has no parts")
        if sizes[stream.index] != stream.size:
            raise BadManifest(
                f"stream {stream.index} ({stream.file}) has {sizes[stream.index]} bytes in its "
                f"parts but {stream.size} recorded"
            )
    return refs
