"""The file stream: blocks, pacing, bounded memory, and the end-of-file check."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from agent.images.errors import ChangedWhileRead
from agent.images.fileaccess import PosixFileAccess
from agent.images.identity import state_of
from agent.images.stream import FileStream


def open_stream(path, **kw) -> FileStream:
    expected = state_of(os.stat(path))
    return FileStream(PosixFileAccess().open(str(path)), expected, path=path.name, **kw)


def test_blocks_are_paced_and_the_file_closed_at_its_end(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes
    paced: list[int] = []
    stream = open_stream(path, block_size=4096, pace=paced.append)
    assert b"".join(stream) == path.read_bytes()
    assert paced == [4096, 4096, 2048] and stream.complete and stream.closed
    assert stream.read() == b"" and stream.bytes_read == stream.bytes_handed == 10240


def test_asks_larger_than_a_block_get_one_block_and_read_all_is_refused(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 10000)
    stream = open_stream(path, block_size=4096)
    with pytest.raises(ValueError, match="in blocks"):
        stream.read(-1)
    assert len(stream.read(1 << 30)) == 4096 and len(stream.read(10)) == 10
    stream.close()


def test_a_change_seen_only_at_the_end_raises_instead_of_the_end(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    os.utime(path, ns=(10**18, 10**18))
    stream = open_stream(path, block_size=4096)
    assert stream.read() == b"x" * 100
    os.utime(path, ns=(2 * 10**18, 2 * 10**18))  # a write of the same bytes would do the same
    with pytest.raises(ChangedWhileRead):
        stream.read()
    assert not stream.complete and stream.closed and isinstance(stream.failure, ChangedWhileRead)


def test_read_all_takes_a_small_file_in_one_read_and_checks_its_end(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(256)) * 40)
    paced: list[int] = []
    stream = open_stream(path, block_size=4096, pace=paced.append)
    assert stream.read_all() == path.read_bytes()
    assert paced == [10240] and stream.complete and stream.closed
    assert stream.read_all() == b"" and stream.bytes_read == stream.bytes_handed == 10240
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    stream = open_stream(empty)
    assert stream.read_all() == b"" and stream.complete


def test_read_all_refuses_a_file_that_grew_or_changed_after_it_was_opened(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"x" * 100)
    os.utime(path, ns=(10**18, 10**18))
    stream = open_stream(path)
    with open(path, "ab") as f:
        f.write(b"y")  # one more byte than the listing said
    with pytest.raises(ChangedWhileRead, match="grew"):
        stream.read_all()
    assert not stream.complete and stream.closed
    path.write_bytes(b"x" * 100)
    os.utime(path, ns=(10**18, 10**18))
    stream = open_stream(path)
    os.utime(path, ns=(2 * 10**18, 2 * 10**18))  # same size, written again
    with pytest.raises(ChangedWhileRead, match="changed"):
        stream.read_all()


class ShortReads:
    """An opened file that hands out at most 7 bytes a read (a pipe-like system)."""

    def __init__(self, data: bytes, state) -> None:
        self.data, self.at, self._state, self.closed = data, 0, state, False

    def read(self, size: int) -> bytes:
        piece = self.data[self.at : self.at + min(size, 7)]
        self.at += len(piece)
        return piece

    def state(self):
        return self._state

    def close(self) -> None:
        self.closed = True


def test_read_all_goes_on_block_by_block_after_a_short_read(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"0123456789" * 3)
    expected = state_of(os.stat(path))
    stream = FileStream(ShortReads(path.read_bytes(), expected), expected, path="a.bin")
    assert stream.read_all() == path.read_bytes() and stream.complete


SPARSE = 256 * 1024**2  # bench/image_scan.py --sparse-gb reads a 2 GB one the same way


def test_memory_stays_at_a_block_for_a_big_sparse_file(tmp_path):
    path = tmp_path / "big.tif"
    with open(path, "wb") as f:
        f.truncate(SPARSE)
    stream = open_stream(path)
    tracemalloc.start()
    try:
        total = 0
        for block in stream:
            total += len(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == SPARSE and stream.complete
    assert peak < 3 * 1024**2, peak
