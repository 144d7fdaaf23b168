"""Checked decompression of a backup: into a file, or into a named pipe the server
restores from as it goes (no decompressed copy on disk). Both check every zstd
frame and the SHA-256 of the compressed file with the same code; the inverse of
stream.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import zstandard

from agent.firebird.pipes import PipeWriter
from agent.firebird.stream import CHUNK, new_file, write_all
from agent.priority import run_niced
from common.firebird.errors import BackupCorrupt


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(src: Path, expected_sha256: str) -> None:
    """BackupCorrupt unless `src` still hashes to the SHA-256 taken when it was written."""
    if sha256_file(src) != expected_sha256:
        raise _mismatch(src)


def _mismatch(src: Path) -> BackupCorrupt:
    return BackupCorrupt(
        f"The backup file {src.name} no longer matches the checksum taken when it "
        "was written: it was damaged on disk."
    )


def decompress_checked(src: Path, dst: Path, *, expected_sha256: str, mode: int = 0o640) -> int:
    """Decompress `src` (one or more zstd frames) into a new `dst`, checking `src`'s SHA-256.

    Raises BackupCorrupt (and removes `dst`) when the checksum or a zstd frame
    is wrong or the file is cut short. Returns the decompressed size.
    """
    writer = new_file(dst, mode)
    try:
        with writer:

            def into_file(data: bytes) -> bool:
                write_all(writer, data)
                return True

            return _checked_frames(src, expected_sha256, into_file)
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


def decompress_niced(src: Path, dst: Path, *, expected_sha256: str, mode: int) -> int:
    """decompress_checked at background priority (the restore that follows waits for it)."""
    return run_niced(
        lambda: decompress_checked(src, dst, expected_sha256=expected_sha256, mode=mode)
    )


def decompress_to_pipe(
    src: Path,
    pipe: Path,
    *,
    expected_sha256: str,
    finished: Callable[[], bool],
    lead: bytes = b"",
    poll_ms: int = 100,
) -> int:
    """Decompress `src` into the named pipe `pipe` as its reader takes it, checking `src`'s SHA-256.

    The inverse of compress_pipe: nothing decompressed reaches the disk. Waits
    for the reader (the database server) to open the pipe, writes `lead` and
    waits until the reader has taken it (for a reader that throws its first read
    away), then the decompressed stream; closing the pipe ends the reader's
    input, cut short if this fails. If the reader goes away (closes the pipe,
    or `finished()` turns true before it opened it or while the pipe is full),
    writing stops. Either way the whole of `src` is checked: BackupCorrupt as in
    decompress_checked, whoever stopped first. Returns the decompressed bytes
    the reader was given.
    """
    with PipeWriter(pipe, finished=finished, lead=lead, poll_ms=poll_ms) as out:
        return _checked_frames(src, expected_sha256, out.write)


def _checked_frames(src: Path, expected_sha256: str, write: Callable[[bytes], bool]) -> int:
    """Decompress the zstd frames of `src` through `write`, then check `src`'s SHA-256.

    `write` returns False once nobody wants more output: decompression stops
    there, but the checksum, taken over the whole file by another thread, is
    still compared. Raises BackupCorrupt when it or a frame is wrong or the
    file is cut short. Returns the bytes passed to `write`.
    """
    hasher = _HashThread(src)  # on another core, while this one decompresses
    hasher.start()
    try:
        size = _frames(src, write)
    finally:
        hasher.join()
    if hasher.hexdigest != expected_sha256:
        raise _mismatch(src)
    return size


def _frames(src: Path, write: Callable[[bytes], bool]) -> int:
    size = frames = 0
    mid_frame = False
    decompressor = zstandard.ZstdDecompressor()
    with open(src, "rb", buffering=0) as reader:
        dobj = decompressor.decompressobj()
        while chunk := reader.read(CHUNK):
            while chunk:
                mid_frame = True
                try:
                    data = dobj.decompress(chunk)
                except zstandard.ZstdError as exc:
                    raise BackupCorrupt(f"The backup file {src.name} is damaged ({exc}).") from exc
                if data and not write(data):
                    return size  # the reader went away
                size += len(data)
                chunk = b""
                if dobj.eof:  # a frame ended; the rest belongs to the next one
                    frames, mid_frame = frames + 1, False
                    chunk = dobj.unused_data
                    dobj = decompressor.decompressobj()
    if mid_frame or not frames:
        raise BackupCorrupt(f"The backup file {src.name} is truncated.")
    return size


class _HashThread(threading.Thread):
    """SHA-256 of a file, computed in the background (hashlib releases the GIL)."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="storesafe-sha256", daemon=True)
        self.path = path
        self.hexdigest = ""

    def run(self) -> None:
        with contextlib.suppress(OSError):
            self.hexdigest = sha256_file(self.path)
