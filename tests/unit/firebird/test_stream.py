"""Compression that follows a growing file, and the checked decompression."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.firebird.decompress import decompress_checked, decompress_to_pipe, sha256_file
from agent.firebird.pipes import BUFFER, NARROW, make_pipe
from agent.firebird.pipes import SUPPORTED as PIPE_SUPPORTED
from agent.firebird.stream import compress_following, compress_pipe
from common.firebird.errors import BackupCorrupt
from tests.support.agent import wait_for
from tests.support.clock import SteppedTime
from tests.support.damage import damage


def test_follows_a_file_that_is_still_being_written(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.fbk", tmp_path / "out.zst"
    blocks = [os.urandom(300_000) + b"x" * 700_000 for _ in range(6)]
    done = threading.Event()

    def writer() -> None:
        time.sleep(0.05)
        with open(src, "wb") as fh:
            for block in blocks:
                fh.write(block)
                fh.flush()
                time.sleep(0.03)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    result = compress_following(src, dst, finished=done.is_set)
    thread.join()
    data = b"".join(blocks)
    assert result.size_raw == len(data)
    assert result.size_compressed == dst.stat().st_size
    assert result.sha256 == sha256_file(dst)
    assert result.raw_sha256 == hashlib.sha256(data).hexdigest()  # the logical stream's
    decompress_checked(dst, tmp_path / "back", expected_sha256=result.sha256)
    assert (tmp_path / "back").read_bytes() == data


def test_writer_that_never_creates_the_file(tmp_path: Path) -> None:
    result = compress_following(tmp_path / "none", tmp_path / "out", finished=lambda: True)
    assert result.size_raw == 0
    assert not (tmp_path / "out").exists()


def test_never_overwrites_an_existing_output(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"abc")
    (tmp_path / "out").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        compress_following(tmp_path / "src", tmp_path / "out", finished=lambda: True)
    assert (tmp_path / "out").read_bytes() == b"keep"


def make_backup(tmp_path: Path, data: bytes) -> tuple[Path, str]:
    src = tmp_path / "raw"
    src.write_bytes(data)
    out = tmp_path / "b.zst"
    result = compress_following(src, out, finished=lambda: True)
    return out, result.sha256


def test_round_trip(tmp_path: Path) -> None:
    data = os.urandom(50_000) * 40
    out, digest = make_backup(tmp_path, data)
    size = decompress_checked(out, tmp_path / "restored", expected_sha256=digest)
    assert size == len(data)
    assert (
        hashlib.sha256((tmp_path / "restored").read_bytes()).digest()
        == hashlib.sha256(data).digest()
    )


def test_flipped_byte_is_caught_and_scratch_removed(tmp_path: Path) -> None:
    out, digest = make_backup(tmp_path, os.urandom(100_000) * 20)
    damage(out)
    with pytest.raises(BackupCorrupt):
        decompress_checked(out, tmp_path / "restored", expected_sha256=digest)
    assert not (tmp_path / "restored").exists()


def test_truncated_file_is_caught(tmp_path: Path) -> None:
    out, digest = make_backup(tmp_path, os.urandom(200_000))
    out.write_bytes(out.read_bytes()[:-1000])
    with pytest.raises(BackupCorrupt):
        decompress_checked(out, tmp_path / "restored", expected_sha256=digest)


def test_level_adapts_to_the_backlog() -> None:
    from agent.firebird.stream import LEVELS, SEGMENT, next_level

    fastest = len(LEVELS) - 1
    assert next_level(0, 3 * SEGMENT, False) == 1  # falling behind: faster
    assert next_level(0, 7 * SEGMENT, False) == 2  # far behind: faster still
    assert next_level(fastest, 10 * SEGMENT, False) == fastest
    assert next_level(2, 0, False) == 1  # caught up: stronger
    assert next_level(0, 0, False) == 0
    assert next_level(1, SEGMENT, False) == 1
    assert next_level(0, 2 * SEGMENT, True) == fastest  # writer done: hurry
    assert next_level(1, 0, True) == 1


def test_many_frames_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.firebird import stream

    monkeypatch.setattr(stream, "SEGMENT", 64 * 1024)
    monkeypatch.setattr(stream, "CHUNK", 16 * 1024)
    data = (os.urandom(1000) + b"shop " * 2000) * 100
    out, digest = make_backup(tmp_path, data)
    frames = out.read_bytes().count(b"\x28\xb5\x2f\xfd")  # zstd frame magic
    assert frames > 5
    assert decompress_checked(out, tmp_path / "r", expected_sha256=digest) == len(data)
    assert (tmp_path / "r").read_bytes() == data


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread scheduling policy is Linux's")
def test_idle_priority_applies_to_the_worker_thread_only() -> None:
    from agent.priority import run_niced

    caller = os.sched_getscheduler(0)
    assert run_niced(lambda: os.sched_getscheduler(0), idle=True) == os.SCHED_IDLE
    assert run_niced(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())) >= 10
    assert os.sched_getscheduler(0) == caller  # the agent's own thread is untouched


def test_worker_errors_reach_the_caller() -> None:
    from agent.priority import run_niced

    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_niced(fail, idle=True)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread scheduling policy is Linux's")
def test_follower_leaves_idle_priority_once_the_writer_is_done(tmp_path: Path) -> None:
    from agent.priority import leave_idle, run_niced

    src, dst = tmp_path / "src", tmp_path / "out"
    src.write_bytes(b"backup " * 100_000)
    seen: list[int] = []

    def finished_then_record() -> None:
        leave_idle()
        seen.append(os.sched_getscheduler(0))

    result = run_niced(
        lambda: compress_following(
            src, dst, finished=lambda: True, on_finished=finished_then_record
        ),
        idle=True,
    )
    assert result.size_raw == 700_000
    if os.geteuid() == 0:  # unprivileged processes may not leave SCHED_IDLE (RLIMIT_NICE)
        assert seen == [os.SCHED_OTHER]
    else:
        assert len(seen) == 1


pipes = pytest.mark.skipif(not PIPE_SUPPORTED, reason="named pipes are POSIX only")


@pipes
def test_a_named_pipe_is_compressed_as_it_arrives_and_nothing_raw_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.firebird.stream.SEGMENT", 256 << 10)  # several frames
    pipe, out, back = tmp_path / "b.pipe", tmp_path / "b.zst", tmp_path / "b.raw"
    make_pipe(pipe, 0o620)
    assert oct(pipe.stat().st_mode & 0o777) == oct(0o620)
    data = os.urandom(300_000) + b"shop data " * 200_000  # ~2.3 MB, partly compressible
    done = threading.Event()

    def server() -> None:
        time.sleep(0.2)  # opens the pipe a little after the reader is waiting
        with open(pipe, "wb", buffering=0) as w:
            for i in range(0, len(data), 65_536):
                w.write(data[i : i + 65_536])
        done.set()

    threading.Thread(target=server).start()
    got = compress_pipe(pipe, out, finished=done.is_set)
    assert got.size_raw == len(data) and 0 < got.size_compressed < len(data)
    assert got.sha256 == sha256_file(out)
    assert got.raw_sha256 == hashlib.sha256(data).hexdigest()
    decompress_checked(out, back, expected_sha256=got.sha256)
    assert back.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.pipe", "b.raw", "b.zst"]
    assert pipe.stat().st_size == 0  # a pipe holds nothing on disk


@pipes
def test_a_server_that_fails_before_opening_the_pipe_ends_the_reader(tmp_path: Path) -> None:
    pipe = tmp_path / "b.pipe"
    make_pipe(pipe, 0o620)
    t0 = time.monotonic()
    got = compress_pipe(pipe, tmp_path / "b.zst", finished=lambda: time.monotonic() - t0 > 0.3)
    assert (got.size_raw, got.size_compressed, got.sha256) == (0, 0, "")


class PipeReader(threading.Thread):
    """Reads a named pipe like the server's restore: one probe read thrown away, then the rest."""

    def __init__(self, pipe: Path, *, keep: int | None = None) -> None:
        super().__init__(daemon=True)
        self.pipe, self.keep = pipe, keep
        self.probe, self.got = b"", bytearray()
        self.done = threading.Event()

    def run(self) -> None:
        try:
            with open(self.pipe, "rb", buffering=0) as r:
                self.probe = r.read(100)  # gbak's gsplit probe, which it cannot undo on a pipe
                while chunk := r.read(65_536):
                    self.got += chunk
                    if self.keep is not None and len(self.got) >= self.keep:
                        break  # a restore that failed: it closes its end
        finally:
            self.done.set()


def pipe_restore(
    tmp_path: Path, backup: Path, digest: str, *, keep: int | None = None
) -> tuple[PipeReader, int]:
    pipe = tmp_path / "r.pipe"
    make_pipe(pipe, 0o640)
    reader = PipeReader(pipe, keep=keep)
    reader.start()
    try:
        size = decompress_to_pipe(
            backup, pipe, expected_sha256=digest, finished=reader.done.is_set, lead=b"\0"
        )
    finally:
        reader.join(timeout=10)
        assert not reader.is_alive(), "the reader was left waiting"
    return reader, size


@pipes
def test_a_backup_is_decompressed_into_a_pipe_after_the_readers_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.firebird.stream.SEGMENT", 256 << 10)  # several frames
    data = os.urandom(300_000) + b"shop data " * 300_000  # ~3.3 MB, more than the pipe holds
    backup, digest = make_backup(tmp_path, data)
    reader, size = pipe_restore(tmp_path, backup, digest)
    assert reader.probe == b"\0"  # the reader's first read got the lead and nothing else
    assert size == len(data) and bytes(reader.got) == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zst", "r.pipe", "raw"]


@pipes
@pytest.mark.parametrize("how", ["flipped byte", "truncated"])
def test_a_damaged_backup_is_caught_through_the_pipe_and_its_reader_is_cut_short(
    tmp_path: Path, how: str
) -> None:
    data = os.urandom(100_000) * 20
    backup, digest = make_backup(tmp_path, data)
    damage(backup, how)
    with pytest.raises(BackupCorrupt):
        pipe_restore(tmp_path, backup, digest)


@pipes
def test_a_reader_that_stops_early_ends_the_writer_and_damage_is_still_found(
    tmp_path: Path,
) -> None:
    data = os.urandom(4_000_000)  # incompressible: the file is as long as the stream
    backup, digest = make_backup(tmp_path, data)
    reader, size = pipe_restore(tmp_path, backup, digest, keep=100_000)
    assert 100_000 <= size < len(data)
    assert bytes(reader.got) == data[: len(reader.got)]

    raw = bytearray(backup.read_bytes())
    raw[-10_000] ^= 0xFF  # far past what the reader takes before it stops
    backup.write_bytes(bytes(raw))
    (tmp_path / "r.pipe").unlink()
    with pytest.raises(BackupCorrupt):
        pipe_restore(tmp_path, backup, digest, keep=100_000)


@pipes
def test_a_reader_that_never_opens_the_pipe_ends_the_writer(tmp_path: Path) -> None:
    backup, digest = make_backup(tmp_path, b"backup " * 100_000)
    pipe = tmp_path / "r.pipe"
    make_pipe(pipe, 0o640)
    t0 = time.monotonic()
    size = decompress_to_pipe(
        backup, pipe, expected_sha256=digest, finished=lambda: time.monotonic() - t0 > 0.3
    )
    assert size == 0


@pipes
def test_a_reader_waiting_to_open_is_released_when_the_writer_fails_first(
    tmp_path: Path,
) -> None:
    pipe = tmp_path / "r.pipe"
    make_pipe(pipe, 0o640)
    reader = PipeReader(pipe)
    reader.start()
    with pytest.raises(FileNotFoundError):  # the backup file is gone
        decompress_to_pipe(
            tmp_path / "missing.zst", pipe, expected_sha256="", finished=reader.done.is_set
        )
    reader.join(timeout=10)
    assert not reader.is_alive() and reader.probe == b"" and not reader.got


@pipes
def test_a_reader_blocked_opening_is_released_when_the_writer_is_interrupted_waiting(
    tmp_path: Path,
) -> None:
    backup, digest = make_backup(tmp_path, b"backup " * 1000)
    pipe = tmp_path / "r.pipe"
    make_pipe(pipe, 0o640)
    reader = PipeReader(pipe)

    def interrupted() -> bool:  # the reader comes between two of the writer's tries
        reader.start()
        time.sleep(0.2)  # now blocked in open(), waiting for a writer
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        decompress_to_pipe(backup, pipe, expected_sha256=digest, finished=interrupted)
    reader.join(timeout=10)
    assert not reader.is_alive() and reader.probe == b"" and not reader.got
    assert not pipe.exists()  # a later reader finds no pipe instead of waiting


@pipes
@pytest.mark.skipif(sys.platform != "linux", reason="pipe sizes are Linux's")
@pytest.mark.parametrize(("busy", "size"), [(True, NARROW), (False, BUFFER)])
def test_the_pipe_stays_narrow_while_the_shop_is_busy(
    tmp_path: Path, busy: bool, size: int
) -> None:
    import fcntl

    pipe, out = tmp_path / "b.pipe", tmp_path / "b.zst"
    make_pipe(pipe, 0o620)
    data = os.urandom(200_000) + b"shop data " * 400_000  # ~4.2 MB
    sizes: list[int] = []

    def server() -> None:
        with open(pipe, "wb", buffering=0) as w:
            # the reader sizes the pipe right after it opened it: write once it has
            wait_for(lambda: fcntl.fcntl(w.fileno(), 1032) == size, timeout=10)
            for at in range(0, len(data), 256 << 10):
                w.write(data[at : at + (256 << 10)])
                sizes.append(fcntl.fcntl(w.fileno(), 1032))  # F_GETPIPE_SZ
                time.sleep(0.02)  # the sizer looks every 50 ms

    writer = threading.Thread(target=server)
    writer.start()
    got = compress_pipe(pipe, out, finished=lambda: False, shop_busy=lambda: busy)
    writer.join()
    assert sizes[-1] == size
    if busy:
        assert set(sizes) == {NARROW}  # never widened
    assert got.size_raw == len(data) and got.sha256 == sha256_file(out)


@pipes
@pytest.mark.skipif(sys.platform != "linux", reason="pipe sizes are Linux's")
def test_a_pipe_the_writer_filled_before_it_could_narrow_narrows_once_emptied(
    tmp_path: Path,
) -> None:
    import fcntl

    pipe, out = tmp_path / "f.pipe", tmp_path / "f.zst"
    make_pipe(pipe, 0o620)
    data = os.urandom(200_000) + b"shop data " * 200_000
    head = 3 * NARROW  # queued before the reader opens: narrowing at open is refused
    sizes: list[int] = []
    w = os.open(pipe, os.O_RDWR)  # a writer end that exists before any reader
    os.write(w, data[:head])

    def server() -> None:
        try:
            for at in range(head, len(data), 64 << 10):
                os.write(w, data[at : at + (64 << 10)])
                sizes.append(fcntl.fcntl(w, 1032))  # F_GETPIPE_SZ
                time.sleep(0.02)
        finally:
            os.close(w)

    writer = threading.Thread(target=server)
    writer.start()
    got = compress_pipe(pipe, out, finished=lambda: False, shop_busy=lambda: True)
    writer.join()
    assert sizes[-1] == NARROW
    assert got.size_raw == len(data) and got.sha256 == sha256_file(out)


def test_a_busy_shop_gets_two_thirds_of_the_time_and_an_idle_one_all_of_it() -> None:
    from agent.firebird.stream import BUSY_DUTY, YIELD_SLICE, _Pacer

    stepped = SteppedTime(100.0)
    slept = stepped.slept
    pacer = _Pacer(sleep=stepped.sleep, clock=stepped.clock)
    for _ in range(50):  # idle: runs on, never pauses
        stepped.now += YIELD_SLICE
        pacer.tick(busy=False)
    assert slept == []
    ran = 0.0
    for _ in range(200):  # busy: 0.5 ms of work per chunk
        stepped.now += 0.0005
        ran += 0.0005
        pacer.tick(busy=True)
    assert 200 * 0.0005 / YIELD_SLICE / 1.25 <= len(slept) <= 200 * 0.0005 / YIELD_SLICE
    assert ran / (ran + sum(slept)) == pytest.approx(BUSY_DUTY, rel=0.05)
    slept.clear()
    stepped.now += 5.0  # a long idle stretch is not owed a pause once the shop is busy again
    pacer.tick(busy=False)
    stepped.now += 0.0005
    pacer.tick(busy=True)
    assert slept == []


def test_the_pipe_level_follows_how_long_the_reader_waits_for_data() -> None:
    from agent.firebird.stream import PIPE_LEVEL, PIPE_LEVELS, _PipeLevel

    stepped = SteppedTime()
    level = _PipeLevel(clock=stepped.clock)
    level.start()
    assert level.level == PIPE_LEVEL

    def frame(wait_share: float, *, narrow: bool = False) -> int:
        level.waited(wait_share * 0.02)
        stepped.now += 0.02
        return level.frame_ended(narrow=narrow)

    assert frame(0.0) == PIPE_LEVELS[-1]  # data always waiting: compress faster
    assert frame(0.0) == PIPE_LEVELS[-1]  # no faster level than the last
    assert frame(0.1) == PIPE_LEVELS[-1]  # a little slack: stay
    assert frame(0.5) == PIPE_LEVELS[-2]  # plenty of slack: stronger
    assert frame(0.5) == PIPE_LEVELS[0]
    assert frame(0.9) == PIPE_LEVELS[0]
    assert frame(0.0, narrow=True) == PIPE_LEVELS[0]  # a busy shop paces it: stay
