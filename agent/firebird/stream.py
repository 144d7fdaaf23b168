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

Verification goes the other way: `decompress_checked` writes the backup back
out to a file, and `decompress_to_pipe` into a named pipe that the server
restores from as it goes, so no decompressed copy reaches the disk; both check
the frames and the SHA-256 of the compressed file with the same code.
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import errno
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
    """Create a named pipe the database server writes a backup into or restores one from (POSIX)."""
    os.mkfifo(path, mode)
    os.chmod(path, mode)  # mkfifo applies the umask


def _widen_pipe(fd: int) -> None:
    """Ask for a PIPE_BUFFER-sized pipe (Linux), so writer and reader wait on each other less."""
    import fcntl  # POSIX only, like the pipe itself

    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BUFFER)


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
    fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)
    try:
        _widen_pipe(fd)
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
    writer = _create(dst, mode)
    try:
        with writer:

            def into_file(data: bytes) -> bool:
                _emit(writer, None, data)
                return True

            return _checked_frames(src, expected_sha256, into_file)
    except BaseException:
        dst.unlink(missing_ok=True)
        raise


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
    with _PipeWriter(pipe, finished=finished, lead=lead, poll_ms=poll_ms) as out:
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
        raise BackupCorrupt(
            f"The backup file {src.name} no longer matches the checksum taken when it "
            "was written: it was damaged on disk."
        )
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


class _PipeWriter:
    """The writing end of a named pipe whose reader (the database server) may fail or never come.

    Entering waits for the reader to open the pipe, or for `finished()`. `write`
    returns False once the reader has gone. Leaving closes the pipe, which ends
    the reader's input; if the reader never opened it, it is released instead:
    a reader blocked opening it sees an empty stream, a later one no pipe.
    """

    def __init__(
        self, path: Path, *, finished: Callable[[], bool], lead: bytes, poll_ms: int
    ) -> None:
        self.gone = False
        self._path, self._finished, self._lead, self._poll_ms = path, finished, lead, poll_ms
        self._fd = -1
        self._poller = select.poll()

    def __enter__(self) -> _PipeWriter:
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def write(self, data: bytes) -> bool:
        """Write all of `data`, waiting for room; False once the reader has gone."""
        view = memoryview(data)
        while view and not self.gone:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                self._wait_for_room()
            except BrokenPipeError:
                self.gone = True  # the reader closed its end
        return not self.gone

    def _open(self) -> None:
        while True:
            try:
                self._fd = os.open(self._path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
            if self._finished():
                self.gone = True  # the server ended without opening the pipe
                return
            time.sleep(POLL_SECONDS)
        _widen_pipe(self._fd)
        self._poller.register(self._fd, select.POLLOUT)
        if self._lead and self.write(self._lead):
            self._wait_until_taken()

    def _wait_for_room(self) -> None:
        while not self._poller.poll(self._poll_ms):
            if self._finished():
                self.gone = True
                return
        # room, or no reader any more (POLLERR): the next write tells which

    def _wait_until_taken(self) -> None:
        """Until the reader has read everything written so far."""
        import fcntl  # POSIX only, like the pipe itself
        import termios

        unread = array.array("i", [0])
        while True:
            fcntl.ioctl(self._fd, termios.FIONREAD, unread)
            if not unread[0]:
                return
            reader_gone = any(flags & select.POLLERR for _, flags in self._poller.poll(0))
            if reader_gone or self._finished():
                self.gone = True
                return
            time.sleep(0.001)

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            return
        with contextlib.suppress(OSError):  # a reader blocked in open() wakes to an empty stream
            fd = os.open(self._path, os.O_RDWR | os.O_NONBLOCK)
            self._path.unlink()
            os.close(fd)


class _HashThread(threading.Thread):
    """SHA-256 of a file, computed in the background (hashlib releases the GIL)."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="storesafe-sha256", daemon=True)
        self.path = path
        self.hexdigest = ""

    def run(self) -> None:
        with contextlib.suppress(OSError):
            self.hexdigest = sha256_file(self.path)
