"""FastCDC chunking: cut points stable under an insertion, sizes within the profile,
the same cuts from a stream and from a buffer, and memory bounded whatever the size."""

from __future__ import annotations

import io
import random
import tracemalloc
from pathlib import Path

import pytest

from common.vault.chunking import (
    BACKUPS,
    IMAGES,
    MANIFESTS,
    MIB,
    Profile,
    chunk_bytes,
    chunk_stream,
    chunk_views,
)
from common.vault.chunks import cut_bytes, cut_stream, open_chunk, seal_stream
from common.vault.sitekeys import SiteKeys


def _data(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("profile", [BACKUPS, MANIFESTS, IMAGES], ids=lambda p: p.name)
def test_sizes_stay_within_the_profile(profile: Profile, keys: SiteKeys) -> None:
    data = _data(24 * profile.max_size if profile is not IMAGES else 48 * MIB)
    sizes = [len(c) for c in chunk_bytes(data, profile, keys.chunker_seed)]
    assert sum(sizes) == len(data)
    assert all(profile.min_size <= s <= profile.max_size for s in sizes[:-1])
    assert profile.min_size < sum(sizes) / len(sizes) < profile.max_size


def test_stream_and_buffer_cut_alike(keys: SiteKeys) -> None:
    data = _data(2 * MIB)
    from_buffer = list(chunk_bytes(data, BACKUPS, keys.chunker_seed))
    from_stream = list(chunk_stream(io.BytesIO(data), BACKUPS, keys.chunker_seed))
    assert from_stream == from_buffer


@pytest.mark.parametrize("size", [0, 1, 300_000, 3 * MIB, 9 * MIB])
@pytest.mark.parametrize("head", [b"", b"\xff\xd8\xff"], ids=["raw", "jpeg"])
def test_a_file_cut_in_memory_gives_the_chunks_of_its_stream(
    keys: SiteKeys, size: int, head: bytes
) -> None:
    data = (head + _data(size))[:size]
    whole = list(cut_bytes(keys, data, IMAGES))
    assert whole == list(cut_stream(keys, io.BytesIO(data), IMAGES))
    assert b"".join(c.data for c in whole) == data
    assert all(c.try_compress is (data[:3] != b"\xff\xd8\xff") for c in whole)


@pytest.mark.parametrize("size", [0, 100, IMAGES.min_size, 3 * MIB])
def test_views_are_the_chunks_without_copies(keys: SiteKeys, size: int) -> None:
    """A file read whole is cut into views of its bytes (itself when it is one chunk)."""
    data = _data(size)
    views = list(chunk_views(data, IMAGES, keys.chunker_seed))
    assert views == list(chunk_bytes(data, IMAGES, keys.chunker_seed))
    if size == 0:
        assert views == []
    elif size <= IMAGES.min_size:
        assert len(views) == 1 and views[0] is data
    else:
        assert len(views) > 1
        assert all(isinstance(v, memoryview) and v.obj is data for v in views)


def test_one_inserted_byte_changes_few_chunks(keys: SiteKeys) -> None:
    data = _data(8 * MIB)
    changed = data[: 4 * MIB] + b"!" + data[4 * MIB :]
    before = {keys.chunk_id(c) for c in chunk_bytes(data, BACKUPS, keys.chunker_seed)}
    after = [keys.chunk_id(c) for c in chunk_bytes(changed, BACKUPS, keys.chunker_seed)]
    new = [c for c in after if c not in before]
    assert len(before) > 200
    assert 1 <= len(new) <= 3


def test_sites_cut_differently(keys: SiteKeys, keys_b: SiteKeys) -> None:
    data = _data(2 * MIB)
    mine = [len(c) for c in chunk_bytes(data, BACKUPS, keys.chunker_seed)]
    theirs = [len(c) for c in chunk_bytes(data, BACKUPS, keys_b.chunker_seed)]
    assert mine != theirs


class Generated(io.RawIOBase):
    """A read-only stream of `size` pseudo-random bytes, made as it is read."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._block = _data(MIB, seed=3)
        self._turn = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left, MIB)
        offset = (self._turn * 7919) % (MIB - n + 1)
        buffer[:n] = self._block[offset : offset + n]
        self._turn += 1
        self._left -= n
        return n


def test_sealing_a_large_stream_keeps_memory_bounded(keys: SiteKeys) -> None:
    size = 160 * MIB  # far more than the bound below
    tracemalloc.start()
    try:
        total = chunks = 0
        for sealed in seal_stream(keys, Generated(size), IMAGES):
            total += sealed.length
            chunks += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == size
    assert chunks > 50
    assert peak < 5 * IMAGES.max_size  # buffer (2x max) + chunk + sealed copies


def test_a_2_gib_sparse_file_is_chunked_without_reading_it_into_memory(
    tmp_path: Path, keys: SiteKeys
) -> None:
    path = tmp_path / "big.bin"
    size = 2 * 1024 * MIB + 1  # past 2**31: offsets must not wrap
    with path.open("wb") as handle:
        handle.truncate(size)
    tracemalloc.start()
    try:
        total = 0
        with path.open("rb", buffering=0) as handle:
            for chunk in chunk_stream(handle, IMAGES, keys.chunker_seed):
                total += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == size
    assert peak < 5 * IMAGES.max_size  # the same bound as any other stream


def test_sealed_stream_round_trips(keys: SiteKeys) -> None:
    data = _data(3 * MIB)
    sealed = list(seal_stream(keys, io.BytesIO(data), BACKUPS))
    assert b"".join(open_chunk(keys, s.chunk_id, s.blob) for s in sealed) == data


def test_a_jpeg_stream_is_never_compressed(keys: SiteKeys) -> None:
    compressible = b"\xff\xd8\xff\xe0" + bytes(3 * MIB)
    sealed = list(seal_stream(keys, io.BytesIO(compressible), IMAGES))
    assert not any(s.compressed for s in sealed)
    plain = b"%PDF-1.4\n" + bytes(3 * MIB)
    assert all(s.compressed for s in seal_stream(keys, io.BytesIO(plain), IMAGES))


def test_cut_then_seal_only_what_is_missing(keys: SiteKeys) -> None:
    data = _data(1 * MIB)
    known = {s.chunk_id for s in seal_stream(keys, io.BytesIO(data[: MIB // 2]), BACKUPS)}
    plain = list(cut_stream(keys, io.BytesIO(data), BACKUPS))
    assert [p.chunk_id for p in plain] == [keys.chunk_id(p.data) for p in plain]
    missing = [p.seal(keys) for p in plain if p.chunk_id not in known]
    assert 0 < len(missing) < len(plain) * 0.6
    for sealed in missing:
        assert keys.chunk_id(open_chunk(keys, sealed.chunk_id, sealed.blob)) == sealed.chunk_id
