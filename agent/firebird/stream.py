"""Streaming zstd compression with a SHA-256 of the output, and its checked inverse.

`compress_following` reads a file while another process is still appending to
it (gbak writes its backup strictly sequentially, which is what lets it write
to stdout), so compression and hashing overlap the backup instead of following
it. Memory stays at a few chunks whatever the file size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import zstandard

from agent.firebird.errors import BackupCorrupt

CHUNK = 1 << 20
ZSTD_LEVEL = 3
POLL_SECONDS = 0.02
SYNC_EVERY = 8 << 20  # flush output while the backup runs, so the final fsync is short


@dataclasses.dataclass(frozen=True)
class Compressed:
    size_raw: int
    size_compressed: int
    sha256: str


def compress_following(
    src: Path,
    dst: Path,
    *,
    finished: Callable[[], bool],
    mode: int = 0o640,
    sleep: Callable[[float], None] = time.sleep,
) -> Compressed:
    """Compress `src` into a new `dst` (fsynced) while a writer may still be appending to `src`.

    `finished()` turns true once the writer is done (or failed); reading then
    drains to end of file. If the writer never creates `src`, returns sizes 0.
    """
    while not src.exists():
        if finished():
            if not src.exists():
                return Compressed(0, 0, "")
            break
        sleep(POLL_SECONDS)
    cobj = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compressobj()
    digest = hashlib.sha256()
    raw = out = synced = 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    with open(src, "rb", buffering=0) as reader, os.fdopen(fd, "wb", buffering=0) as writer:
        while True:
            done = finished()  # read before the chunk: no data can be missed
            chunk = reader.read(CHUNK)
            if chunk:
                raw += len(chunk)
                out += _emit(writer, digest, cobj.compress(chunk))
                if out - synced >= SYNC_EVERY and not done:
                    _datasync(writer.fileno())
                    synced = out
            elif done:
                break
            else:
                sleep(POLL_SECONDS)
        out += _emit(writer, digest, cobj.flush())
        os.fsync(writer.fileno())
    return Compressed(raw, out, digest.hexdigest())


def _datasync(fd: int) -> None:
    sync = getattr(os, "fdatasync", os.fsync)  # no fdatasync on Windows
    sync(fd)


def _emit(writer: object, digest: hashlib._Hash | None, data: bytes) -> int:
    if data:
        if digest is not None:
            digest.update(data)
        view = memoryview(data)
        while view:
            written = writer.write(view)  # type: ignore[attr-defined]
            view = view[written:]
    return len(data)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def decompress_checked(src: Path, dst: Path, *, expected_sha256: str, mode: int = 0o640) -> int:
    """Decompress `src` into a new `dst`, checking the SHA-256 of `src` on the way.

    Raises BackupCorrupt (and removes `dst`) when the checksum or the zstd
    frame is wrong. Returns the decompressed size.
    """
    digest = hashlib.sha256()
    dobj = zstandard.ZstdDecompressor().decompressobj()
    size = 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        with open(src, "rb", buffering=0) as reader, os.fdopen(fd, "wb", buffering=0) as writer:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                try:
                    data = dobj.decompress(chunk)
                except zstandard.ZstdError as exc:
                    raise BackupCorrupt(f"The backup file {src.name} is damaged ({exc}).") from exc
                size += _emit(writer, None, data)
            if not dobj.eof:
                raise BackupCorrupt(f"The backup file {src.name} is truncated.")
        if digest.hexdigest() != expected_sha256:
            raise BackupCorrupt(
                f"The backup file {src.name} no longer matches the checksum taken when it "
                "was written: it was damaged on disk."
            )
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    return size
