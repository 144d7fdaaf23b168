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


IMAGES = Profile("images", min_size=256 * KIB, avg_size=768 * KIB, max_size=8 * MIB)
BACKUPS = Profile("backups", min_size=4 * KIB, avg_size=12 * KIB, max_size=64 * KIB)
MANIFESTS = Profile("manifests", min_size=16 * KIB, avg_size=48 * KIB, max_size=256 * KIB)


def chunk_stream(stream: Readable, profile: Profile, seed: int) -> Iterator[bytes]:
    """The chunks of `stream` in order, each its own bytes object, in bounded memory."""
    for chunk in profile.chunker(seed).cut_stream(cast(Any, stream)):
        yield bytes(chunk.data)


def chunk_bytes(data: bytes | memoryview, profile: Profile, seed: int) -> Iterator[bytes]:
    """The chunks of a buffer already in memory (same cut points as `chunk_stream`)."""
    for chunk in profile.chunker(seed).cut_buf(data):
        yield bytes(chunk.data)
