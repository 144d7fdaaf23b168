"""Streaming zstd compression with a SHA-256 of the output, and its checked inverse.

`compress_following` reads a file while another process is still appending to
it (gbak writes its backup strictly sequentially, which is what lets it write
to stdout), so compression and hashing overlap the backup instead of following
it. Memory stays at a few chunks whatever the file size.

Compression must never be what the backup waits for, so the output is a
series of zstd frames (one per SEGMENT of input) whose level adapts: when the
unread part of the growing file piles up, the next frame uses a faster level;
when the reader has caught up, a stronger one. Any zstd tool reads the result.
The follower runs at idle CPU priority (`run_niced(..., idle=True)`) while gbak
runs: measured on 2 cores, what a concurrent shop writer feels is the
compressor's CPU use (its commits wait for a core), so the compressor takes
only what is left over; once gbak is done, the rest is pure waiting time and
the follower goes back to a niced normal priority (`leave_idle`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import zstandard

from agent.firebird.errors import BackupCorrupt

CHUNK = 1 << 20
SEGMENT = 4 << 20
# Strongest first; the index moves with the backlog. Level 3 is left out: on a
# 2-core shop PC it compresses at about half the rate gbak writes (88 vs 150+ MB/s
# measured), so it only ever built a backlog and cost the shop CPU.
LEVELS = (1, -1, -3, -5)
POLL_SECONDS = 0.02
# Start writing output back while the backup runs, so the final fsync is short.
WRITEBACK_EVERY = 8 << 20
BACKGROUND_NICE = 10
T = TypeVar("T")


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
    on_finished: Callable[[], None] = lambda: None,
) -> Compressed:
    """Compress `src` into a new `dst` (fsynced) while a writer may still be appending to `src`.

    `finished()` turns true once the writer is done (or failed); reading then
    drains to end of file, after calling `on_finished()` once (in this thread).
    If the writer never creates `src`, returns sizes 0.
    """
    while not src.exists():
        if finished():
            if not src.exists():
                return Compressed(0, 0, "")
            break
        sleep(POLL_SECONDS)
    level = 0
    with open(src, "rb", buffering=0) as reader, _create(dst, mode) as writer:
        output = _FramedOutput(writer, LEVELS[level])
        done = False
        while True:
            if not done and (done := finished()):  # before the chunk: no data can be missed
                on_finished()
            chunk = reader.read(CHUNK)
            if chunk:
                if output.write(chunk, writeback=not done):  # a frame ended
                    backlog = os.fstat(reader.fileno()).st_size - output.raw
                    level = next_level(level, backlog, done)
                    output.level = LEVELS[level]
            elif done:
                break
            else:
                sleep(POLL_SECONDS)
        return output.finish()


class _FramedOutput:
    """zstd frames of SEGMENT bytes of input each, hashed and written as they come.

    Writeback of the output starts every WRITEBACK_EVERY bytes, so the final
    fsync is short. A new frame uses `level` as it is when the frame starts.
    """

    def __init__(self, writer: Any, level: int) -> None:
        self.level = level
        self.raw = 0
        self._writer = writer
        self._digest = hashlib.sha256()
        self._compressors: dict[int, zstandard.ZstdCompressor] = {}
        self._cobj: Any = None
        self._out = self._synced = self._in_frame = 0

    def write(self, chunk: bytes, *, writeback: bool = True) -> bool:
        """Compress `chunk`; True when it completed a frame."""
        self.raw += len(chunk)
        self._in_frame += len(chunk)
        self._out += _emit(self._writer, self._digest, self._frame().compress(chunk))
        ended = self._in_frame >= SEGMENT
        if ended:
            self._out += _emit(self._writer, self._digest, self._frame().flush())
            self._cobj, self._in_frame = None, 0
        if writeback and self._out - self._synced >= WRITEBACK_EVERY:
            _start_writeback(self._writer.fileno(), self._synced, self._out - self._synced)
            self._synced = self._out
        return ended

    def finish(self) -> Compressed:
        """End the last frame, fsync, and return the sizes and the output's SHA-256."""
        self._out += _emit(self._writer, self._digest, self._frame().flush())
        os.fsync(self._writer.fileno())
        return Compressed(self.raw, self._out, self._digest.hexdigest())

    def _frame(self) -> Any:
        if self._cobj is None:
            compressor = self._compressors.get(self.level)
            if compressor is None:
                compressor = zstandard.ZstdCompressor(level=self.level, write_checksum=True)
                self._compressors[self.level] = compressor
            self._cobj = compressor.compressobj()
        return self._cobj


def _create(dst: Path, mode: int) -> Any:
    """A new output file (never an existing one), unbuffered."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    return os.fdopen(fd, "wb", buffering=0)


PIPE_SUPPORTED = hasattr(os, "mkfifo") and hasattr(select, "poll")
PIPE_BUFFER = 1 << 20
PIPE_LEVEL = -1  # level 1 (75 vs 102 MiB here) gates gbak at ~112 MB/s on this CPU
_F_SETPIPE_SZ = 1031  # Linux fcntl


def make_pipe(path: Path, mode: int) -> None:
    """Create the named pipe the database server writes the backup into (POSIX)."""
    os.mkfifo(path, mode)
    os.chmod(path, mode)  # mkfifo applies the umask


def compress_pipe(
    src: Path,
    dst: Path,
    *,
    finished: Callable[[], bool],
    mode: int = 0o640,
    poll_ms: int = 100,
) -> Compressed:
    """Compress what a writer sends through the named pipe `src` into a new `dst` (fsynced).

    Nothing of the raw backup touches the disk: only the compressed output is
    written, which halves the backup's disk writes next to a following copy and
    leaves the shop's own commits (fsyncs on the same disk) less to wait for.
    The writer is paced by this reader, so it compresses at PIPE_LEVEL (-1: faster
    than gbak writes; level 1 would pace gbak on a small CPU). Returns when the
    writer closes the pipe; if `finished()` turns true before any writer opened
    it (the server failed first), returns sizes 0.
    """
    import fcntl  # POSIX only, like the pipe itself

    fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BUFFER)
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        seen_writer = False
        with _create(dst, mode) as writer:
            output = _FramedOutput(writer, PIPE_LEVEL)
            while True:
                if not poller.poll(poll_ms):
                    if finished() and not seen_writer:
                        break
                    continue
                try:
                    chunk = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    if seen_writer or finished():
                        break  # the writer closed the pipe: end of the backup
                    time.sleep(poll_ms / 1000)  # no writer yet (Linux reports none)
                    continue
                seen_writer = True
                output.write(chunk)
            if not seen_writer:
                return Compressed(0, 0, "")
            return output.finish()
    finally:
        os.close(fd)


def next_level(level: int, backlog: int, writer_done: bool) -> int:
    """Index into LEVELS for the next frame, given how much input waits unread."""
    if writer_done:  # what is left is pure waiting time: hurry
        return len(LEVELS) - 1 if backlog > SEGMENT else level
    if backlog > 2 * SEGMENT:
        step = 2 if backlog > 6 * SEGMENT else 1
        return min(level + step, len(LEVELS) - 1)
    if backlog < SEGMENT // 2:
        return max(level - 1, 0)
    return level


def run_niced(fn: Callable[[], T], *, nice: int = BACKGROUND_NICE, idle: bool = False) -> T:
    """Run `fn` in a thread of lower CPU priority, so the shop's own work goes first.

    `idle=True` asks for SCHED_IDLE: the thread runs only on CPU time nothing
    else wants (a waking shop process preempts it at once, where a niced
    thread can hold the core for a time slice); `nice` is the fallback. Linux
    applies both per thread; the thread ends with `fn`, so the agent's other
    threads keep their priority. Elsewhere `fn` just runs.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        if sys.platform == "linux":
            _lower_this_thread(nice, idle=idle)
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            error.append(exc)

    worker = threading.Thread(target=body, name="storesafe-compress")
    worker.start()
    worker.join()
    if error:
        raise error[0]
    return result[0]


def leave_idle(nice: int = BACKGROUND_NICE) -> None:
    """Move the calling thread from idle priority back to normal scheduling at `nice`.

    For a backlog that is now pure waiting time. Linux only; where the OS
    refuses (an unprivileged process under RLIMIT_NICE), the thread stays idle.
    """
    if sys.platform == "linux" and os.sched_getscheduler(0) == os.SCHED_IDLE:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def _lower_this_thread(nice: int, *, idle: bool) -> None:
    if idle:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread
            return
        except (OSError, AttributeError):
            pass  # e.g. a container that forbids it: niceness still helps
    if nice:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to write a range back now without waiting for it (Linux).

    POSIX_FADV_DONTNEED starts writeback of dirty pages and only drops pages
    that are already clean, so the file stays cached for verification.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


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
    """Decompress `src` (one or more zstd frames) into a new `dst`, checking `src`'s SHA-256.

    Raises BackupCorrupt (and removes `dst`) when the checksum or a zstd frame
    is wrong or the file is cut short. Returns the decompressed size.
    """
    size = frames = 0
    mid_frame = False
    hasher = _HashThread(src)  # on another core, while this one decompresses
    hasher.start()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        with open(src, "rb", buffering=0) as reader, os.fdopen(fd, "wb", buffering=0) as writer:
            dobj = zstandard.ZstdDecompressor().decompressobj()
            while chunk := reader.read(CHUNK):
                while chunk:
                    mid_frame = True
                    try:
                        size += _emit(writer, None, dobj.decompress(chunk))
                    except zstandard.ZstdError as exc:
                        raise BackupCorrupt(
                            f"The backup file {src.name} is damaged ({exc})."
                        ) from exc
                    chunk = b""
                    if dobj.eof:  # a frame ended; the rest belongs to the next one
                        frames, mid_frame = frames + 1, False
                        chunk = dobj.unused_data
                        dobj = zstandard.ZstdDecompressor().decompressobj()
        if mid_frame or not frames:
            raise BackupCorrupt(f"The backup file {src.name} is truncated.")
        hasher.join()
        if hasher.hexdigest != expected_sha256:
            raise BackupCorrupt(
                f"The backup file {src.name} no longer matches the checksum taken when it "
                "was written: it was damaged on disk."
            )
    except BaseException:
        hasher.join()
        dst.unlink(missing_ok=True)
        raise
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
