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
