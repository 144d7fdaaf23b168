"""Content-defined chunking (FastCDC 2020 via pyfastcdc) of files and streams of any size.

Two profiles: image files get large chunks (few ids per file, little
overhead); database backup streams get small ones, because a day's changes
are scattered through the gbak output and only small chunks keep the
unchanged parts equal (see bench/README.md for the figures). The gear table
is keyed per site (pyfastcdc's seed, derived from the data key), so chunk
sizes do not line up with those of another site or a known file. Memory is
bounded: pyfastcdc reads into one buffer of about twice the largest chunk,
and each chunk is copied out before the next is cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from pyfastcdc import FastCDC

KIB = 1024
MIB = 1024 * KIB


class Readable(Protocol):
    """A binary stream: a file opened with 'rb', a pipe, a socket file."""

    def readinto(self, buffer: memoryview, /) -> int: ...


@dataclass(frozen=True)
class Profile:
    """Chunk size limits. pyfastcdc's average comes out near `avg_size + min_size`."""

    name: str
    min_size: int
    avg_size: int
    max_size: int

    def chunker(self, seed: int) -> FastCDC:
        return FastCDC(self.avg_size, min_size=self.min_size, max_size=self.max_size, seed=seed)


# Scanned images are written once and rarely edited: chunks near 1 MiB keep the
# per-chunk costs (id, index row, upload call) low; 4 MiB at most bounds memory.
IMAGES = Profile("images", min_size=256 * KIB, avg_size=768 * KIB, max_size=4 * MIB)
# gbak output of a shop day (bench/offsite_dedup.py: 214 MB database, 1% of the item
# rows touched, mostly new and recent rows): the day-2 upload sends, manifest included,
# 3.2% of the zstd file at 4 KiB average chunks (mean 5.3 KiB), 4.2% at 8 KiB, 5.0% at
# 16 KiB (bench/README.md), all well under the 10% a slow uplink allows. Every chunk
# costs a restore, the store's index and garbage collection the same whatever its size:
# 16 KiB restores 1.7x faster than 4 KiB (bench/restore_throughput.py) with a quarter of
# the index rows, for 1.8 points more of day 2 sent.
BACKUPS = Profile("backups", min_size=8 * KIB, avg_size=16 * KIB, max_size=128 * KIB)
MANIFESTS = Profile("manifests", min_size=16 * KIB, avg_size=48 * KIB, max_size=256 * KIB)
MANIFEST_REF_BYTES = 80  # one chunk ref in a manifest line, about
MANIFEST_PARTS = 4096  # database manifests aim at no more pieces (the record lists each)


def database_manifests(stream_bytes: int) -> Profile:
    """How a database snapshot's manifest is cut, for backup streams of `stream_bytes`.

    The manifest is one long list of chunk refs that a shop day changes in many
    places: small pieces re-send less of it (day 2 of a 214 MB shop database: the
    manifest was 28% of the bytes sent with 48 KiB pieces, 9% with 4 KiB). Pieces
    of 4 KiB average, larger for backups so big that the record (which names every
    piece) would pass MANIFEST_PARTS of them; at most the MANIFESTS size.
    """
    refs = stream_bytes // (BACKUPS.avg_size + BACKUPS.min_size) + 1
    avg = 4 * KIB
    while avg < MANIFESTS.avg_size and refs * MANIFEST_REF_BYTES > avg * MANIFEST_PARTS:
        avg *= 2
    avg = min(avg, MANIFESTS.avg_size)
    return Profile("database-manifests", avg // 3, avg, avg * 6)


def chunk_stream(stream: Readable, profile: Profile, seed: int) -> Iterator[bytes]:
    """The chunks of `stream` in order, each its own bytes object, in bounded memory."""
    for chunk in profile.chunker(seed).cut_stream(cast(Any, stream)):
        yield bytes(chunk.data)


def chunk_bytes(data: bytes | memoryview, profile: Profile, seed: int) -> Iterator[bytes]:
    """The chunks of a buffer already in memory (same cut points as `chunk_stream`)."""
    for chunk in profile.chunker(seed).cut_buf(data):
        yield bytes(chunk.data)


def chunk_views(data: bytes, profile: Profile, seed: int) -> Iterator[bytes | memoryview]:
    """`chunk_bytes` without copying: each chunk a view into `data` (which it keeps alive),
    or `data` itself when one chunk is all of it (most scans)."""
    if len(data) <= profile.min_size:  # a single chunk, whatever the gear says
        if data:
            yield data
        return
    view = memoryview(data)
    for chunk in profile.chunker(seed).cut_buf(view):
        if chunk.offset == 0 and chunk.length == len(data):
            yield data
        else:
            yield view[chunk.offset : chunk.offset + chunk.length]
