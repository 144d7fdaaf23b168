"""Streaming zstd compression of a backup, with a SHA-256 of the output.

Both also hash the uncompressed stream (SHA-256, `Compressed.raw_sha256`) in
the same pass: the checksum a restore from the off-site copy checks the
reassembled gbak stream (or nbackup level file) against.

`compress_following` reads a file while another process is still appending to
it (gbak writes its backup strictly sequentially, which is what lets it write
to stdout), so compression and hashing overlap the backup instead of following
it. Memory stays at a few chunks whatever the file size.

Compression must never be what the backup waits for, so the output is a
series of zstd frames (one per SEGMENT of input) whose level adapts: when the
unread part of the growing file piles up, the next frame uses a faster level;
when the reader has caught up, a stronger one. Any zstd tool reads the result.
The follower runs at idle CPU priority (`priority.run_niced(..., idle=True)`) while gbak
runs: measured on 2 cores, what a concurrent shop writer feels is the
compressor's CPU use (its commits wait for a core), so the compressor takes
only what is left over; once gbak is done, the rest is pure waiting time and
the follower goes back to a niced normal priority (`priority.leave_idle`).

`compress_pipe` reads what the server writes into a named pipe (pipes.py)
instead, so nothing uncompressed reaches the disk. The inverse is decompress.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard

from agent.firebird import pipes

CHUNK = 1 << 20
SEGMENT = 4 << 20
# Strongest first; the index moves with the backlog. Level 3 is left out: on a
# 2-core shop PC it compresses at about half the rate gbak writes (88 vs 150+ MB/s
# measured), so it only ever built a backlog and cost the shop CPU.
LEVELS = (1, -1, -3, -5)
POLL_SECONDS = 0.02
# Start writing output back while the backup runs, so the final fsync is short.
WRITEBACK_EVERY = 8 << 20


@dataclasses.dataclass(frozen=True)
class Compressed:
    size_raw: int
    size_compressed: int
    sha256: str  # of the compressed file
    raw_sha256: str = ""  # of the uncompressed stream


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
    with open(src, "rb", buffering=0) as reader, new_file(dst, mode) as writer:
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
        self._raw_digest = hashlib.sha256()
        self._compressors: dict[int, zstandard.ZstdCompressor] = {}
        self._cobj: Any = None
        self._out = self._synced = self._in_frame = 0

    def write(self, chunk: bytes, *, writeback: bool = True) -> bool:
        """Compress `chunk`; True when it completed a frame."""
        self.raw += len(chunk)
        self._in_frame += len(chunk)
        self._raw_digest.update(chunk)
        self._put(self._frame().compress(chunk))
        ended = self._in_frame >= SEGMENT
        if ended:
            self._put(self._frame().flush())
            self._cobj, self._in_frame = None, 0
        if writeback and self._out - self._synced >= WRITEBACK_EVERY:
            _start_writeback(self._writer.fileno(), self._synced, self._out - self._synced)
            self._synced = self._out
        return ended

    def finish(self) -> Compressed:
        """End the last frame, fsync, and return the sizes and both SHA-256s."""
        self._put(self._frame().flush())
        os.fsync(self._writer.fileno())
        return Compressed(
            self.raw, self._out, self._digest.hexdigest(), self._raw_digest.hexdigest()
        )

    def _put(self, data: bytes) -> None:
        self._out += write_all(self._writer, data, self._digest)

    def _frame(self) -> Any:
        if self._cobj is None:
            compressor = self._compressors.get(self.level)
            if compressor is None:
                compressor = zstandard.ZstdCompressor(level=self.level, write_checksum=True)
                self._compressors[self.level] = compressor
            self._cobj = compressor.compressobj()
        return self._cobj


def new_file(dst: Path, mode: int) -> Any:
    """A new output file (never an existing one), unbuffered."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    return os.fdopen(fd, "wb", buffering=0)


SIZE_CHECK_SECONDS = 0.05
PIPE_LEVEL = -1  # where a pipe's compression starts (see _PipeLevel)
PIPE_LEVELS = (1, -1, -3)  # -5 kept pace only by making backups 30 % larger
# Shares of a frame's time the reader spent waiting for data, below which the next
# frame uses a faster level (the compressor holds gbak up) and above which a stronger
# one (it has time to spare; the next level up costs about 13 % more CPU).
WAIT_FASTER = 0.05
WAIT_STRONGER = 0.25


def compress_pipe(
    src: Path,
    dst: Path,
    *,
    finished: Callable[[], bool],
    mode: int = 0o640,
    poll_ms: int = 100,
    shop_busy: Callable[[], bool] | None = None,
) -> Compressed:
    """Compress what a writer sends through the named pipe `src` into a new `dst` (fsynced).

    Nothing of the raw backup touches the disk: only the compressed output is
    written, which halves the backup's disk writes next to a following copy and
    leaves the shop's own commits (fsyncs on the same disk) less to wait for.
    The writer is paced by this reader, so the compression level adapts frame by
    frame (`_PipeLevel`): it starts at PIPE_LEVEL and moves to a faster level
    while the reader never waits for data, to a stronger one while it often does.
    Returns when the writer closes the pipe; if `finished()` turns true before any
    writer opened it (the server failed first), returns sizes 0.

    While `shop_busy()` says the shop is at work, the pipe narrows to
    pipes.NARROW and the backup runs only part of the time (`_Pacer`), leaving
    the cores to the shop (on 2 cores, side by side gbak and the compressor
    tripled the shop's p99 commit latency); while it is idle the pipe is wide and
    the backup runs at full speed.
    """
    fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK)
    try:
        busy_at_start = shop_busy is not None and shop_busy()
        # A writer that got in first may have queued more than NARROW: then the
        # narrowing is refused, and the sizer empties the pipe and narrows it later.
        narrowed = busy_at_start and pipes.resize_pipe(fd, pipes.NARROW)
        if not busy_at_start:
            pipes.widen_pipe(fd)
        sizer = _PipeSizer(fd, shop_busy, narrow=narrowed, want=busy_at_start)
        pacer = _Pacer()
        level = _PipeLevel()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        seen_writer = False
        with new_file(dst, mode) as writer:
            output = _FramedOutput(writer, level.level)
            while True:
                waited = time.monotonic()
                ready = poller.poll(poll_ms)
                level.waited(time.monotonic() - waited)
                if not ready:
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
                if not seen_writer:
                    seen_writer = True
                    level.start()
                if output.write(chunk):  # a frame ended: choose the next one's level
                    output.level = level.frame_ended(narrow=sizer.narrow)
                if sizer.narrowing_due() and not _empty_into(fd, output):
                    break  # the writer closed the pipe while it was emptied
                sizer.apply()
                pacer.tick(busy=sizer.narrow)
            if not seen_writer:
                return Compressed(0, 0, "")
            return output.finish()
    finally:
        os.close(fd)


class _PipeSizer:
    """Narrows the pipe while the shop is busy and widens it again when it is idle.

    Linux narrows a pipe only while it holds no more than the new size, so the
    caller empties it first (`narrowing_due`, then `apply`).
    """

    def __init__(
        self, fd: int, shop_busy: Callable[[], bool] | None, *, narrow: bool, want: bool
    ) -> None:
        self._fd, self._busy = fd, shop_busy
        self._narrow, self._want = narrow, want  # as compress_pipe set it up
        self._next = 0.0

    def narrowing_due(self) -> bool:
        """Whether the pipe must narrow now (after the caller has emptied it)."""
        if self._busy is not None and time.monotonic() >= self._next:
            self._next = time.monotonic() + SIZE_CHECK_SECONDS
            self._want = self._busy()
        return self._want and not self._narrow

    @property
    def narrow(self) -> bool:
        """Whether the pipe is narrow now (the shop was last seen busy)."""
        return self._narrow

    def apply(self) -> None:
        if self._want != self._narrow:
            size = pipes.NARROW if self._want else pipes.BUFFER
            if pipes.resize_pipe(self._fd, size):
                self._narrow = self._want


class _PipeLevel:
    """The compression level of a pipe's next frame, from how the last one went.

    Measured on 2 cores with an idle shop: zstd -1 compresses a gbak stream at about
    the rate gbak writes it (244 against ~220 MB/s), so with hashing and writing it
    held gbak up (agent 1.05-1.25 s against raw gbak's 0.82 s for 180 MiB). Level 1
    is smaller (67 vs 94 MiB) and 13 % slower, -3 is 12 % faster and larger
    (112 MiB): on that machine the backup settles at -3 (0.91 s, 114 MiB); where a
    core has time to spare, at 1. While the shop is busy the backup is paced anyway,
    so the level stays.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._index = PIPE_LEVELS.index(PIPE_LEVEL)
        self._wait = 0.0
        self._since = clock()

    @property
    def level(self) -> int:
        return PIPE_LEVELS[self._index]

    def start(self) -> None:
        """The first data arrived: the first frame's clock starts now."""
        self._wait, self._since = 0.0, self._clock()

    def waited(self, seconds: float) -> None:
        self._wait += seconds

    def frame_ended(self, *, narrow: bool) -> int:
        """The level for the next frame."""
        now = self._clock()
        share = self._wait / max(now - self._since, 1e-6)
        if not narrow:
            if share < WAIT_FASTER:
                self._index = min(self._index + 1, len(PIPE_LEVELS) - 1)
            elif share > WAIT_STRONGER:
                self._index = max(self._index - 1, 0)
        self._wait, self._since = 0.0, now
        return self.level


BUSY_DUTY = 1 / 3
"""The share of time the backup runs while the shop is busy (it pauses the rest)."""
YIELD_SLICE = 0.002
"""Seconds the backup runs between two pauses while the shop is busy."""


class _Pacer:
    """While the shop is busy, the backup runs at most BUSY_DUTY of the time.

    After each YIELD_SLICE of running it pauses for (1 - BUSY_DUTY) / BUSY_DUTY
    times as long; gbak, whose pipe is full meanwhile, waits too. A narrow pipe
    alone still let gbak and the compressor take a core each, and the shop's p99
    commit latency rose to about 1.4x that during a raw gbak. Paced at a third,
    the shop's p99 stayed at or under that during a raw gbak, and the backup took
    about 8x as long as a raw gbak (6.7 s for 178 MB, measured on 2 cores), only
    while the shop is at work: an idle shop's backup runs at full speed.
    """

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sleep, self._clock = sleep, clock
        self._since = clock()

    def tick(self, *, busy: bool) -> None:
        now = self._clock()
        if not busy:
            self._since = now
            return
        ran = now - self._since
        if ran >= YIELD_SLICE:
            self._sleep(ran * (1 - BUSY_DUTY) / BUSY_DUTY)
            self._since = self._clock()


def _empty_into(fd: int, output: _FramedOutput) -> bool:
    """Read what the pipe holds into `output` until it is empty; False at end of input."""
    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        output.write(chunk)


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


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to write a range back now without waiting for it (Linux).

    POSIX_FADV_DONTNEED starts writeback of dirty pages and only drops pages
    that are already clean, so the file stays cached for verification.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        with contextlib.suppress(OSError):
            advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def write_all(writer: object, data: bytes, digest: hashlib._Hash | None = None) -> int:
    if data:
        if digest is not None:
            digest.update(data)
        view = memoryview(data)
        while view:
            written = writer.write(view)  # type: ignore[attr-defined]
            view = view[written:]
    return len(data)
