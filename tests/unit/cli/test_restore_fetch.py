"""`restore_fetch.Chunks`: the next batch is fetched and opened while the caller writes one;
what goes wrong there is told when its batch is taken, never lost or blamed on another."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest

from cli.restore_fetch import Chunks
from common.errors import Unavailable
from common.vault.chunks import seal_chunk
from tests.support.sealed import SealedSite, new_site

GUARD = 30.0  # a hang guard only: every wait below is released by the test itself


class GatedSource:
    """Serves sealed chunks; a call asking for an id in `gated` waits until `open` is set
    and names the thread it ran on; `cut` ids make the call fail as a lost link would."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.gated: set[str] = set()
        self.cut: set[str] = set()
        self.open = threading.Event()
        self.calls: list[tuple[list[str], str]] = []

    def fetch_chunks(self, site: str, ids: Sequence[str]) -> Iterator[tuple[str, bytes]]:
        self.calls.append((list(ids), threading.current_thread().name))
        if self.gated & set(ids) and not self.open.wait(GUARD):
            raise AssertionError("the gated fetch was never released")
        if self.cut & set(ids):
            raise Unavailable("the server at 127.0.0.1:7443 is unreachable")
        for chunk_id in ids:
            yield chunk_id, self.blobs[chunk_id]


@pytest.fixture
def site() -> SealedSite:
    return new_site("shop-a")


def _sealed(site: SealedSite, count: int) -> tuple[list[tuple[str, bytes]], dict[str, bytes]]:
    rng = random.Random(3)
    plain = [rng.randbytes(5000) for _ in range(count)]
    sealed = [seal_chunk(site.keys, p) for p in plain]
    return [(s.chunk_id, p) for s, p in zip(sealed, plain, strict=True)], {
        s.chunk_id: s.blob for s in sealed
    }


def test_the_next_batch_is_fetched_while_this_one_is_taken(site: SealedSite) -> None:
    chunks_, blobs = _sealed(site, 8)
    first, second = chunks_[:4], chunks_[4:]
    source = GatedSource(blobs)
    source.gated = {second[0][0]}
    chunks = Chunks(source, site.keys, Counter(cid for cid, _ in chunks_))
    try:
        chunks.load((cid for cid, _ in first), ahead=(cid for cid, _ in second))
        # the second batch's call is held by the source, yet the first is at hand
        assert [chunks.take(cid, len(p)) for cid, p in first] == [p for _, p in first]
        source.open.set()
        chunks.load(cid for cid, _ in second)
        assert [chunks.take(cid, len(p)) for cid, p in second] == [p for _, p in second]
    finally:
        chunks.close()
    asked = [ids for ids, _ in source.calls]
    assert sorted(cid for ids in asked for cid in ids) == sorted(blobs)  # each chunk once
    ahead = [name for ids, name in source.calls if second[0][0] in ids]
    assert ahead and not ahead[0].startswith("MainThread")
    assert chunks.fetched == sum(len(b) for b in blobs.values())


def test_a_tampered_chunk_fetched_ahead_is_named_when_its_batch_is_taken(
    site: SealedSite,
) -> None:
    chunks_, blobs = _sealed(site, 6)
    victim = chunks_[4][0]
    damaged = bytearray(blobs[victim])
    damaged[len(damaged) // 2] ^= 0x01
    blobs[victim] = bytes(damaged)
    chunks = Chunks(GatedSource(blobs), site.keys, Counter(cid for cid, _ in chunks_))
    try:
        chunks.load((cid for cid, _ in chunks_[:3]), ahead=(cid for cid, _ in chunks_[3:]))
        assert all(chunks.take(cid, len(p)) == p for cid, p in chunks_[:3])
        chunks.load(cid for cid, _ in chunks_[3:])
        taken = {cid: chunks.take(cid, len(p)) for cid, p in chunks_[3:]}
    finally:
        chunks.close()
    assert taken[victim] is None
    assert list(chunks.bad) == [victim]
    assert chunks.bad[victim].startswith(f"chunk {victim} failed its authentication check")
    assert all(taken[cid] == p for cid, p in chunks_[3:] if cid != victim)


def test_a_link_cut_while_fetching_ahead_fails_the_next_load_not_this_batch(
    site: SealedSite,
) -> None:
    chunks_, blobs = _sealed(site, 6)
    source = GatedSource(blobs)
    source.cut = {chunks_[4][0]}
    chunks = Chunks(source, site.keys, Counter(cid for cid, _ in chunks_))
    try:
        chunks.load((cid for cid, _ in chunks_[:3]), ahead=(cid for cid, _ in chunks_[3:]))
        assert all(chunks.take(cid, len(p)) == p for cid, p in chunks_[:3])
        with pytest.raises(Unavailable):
            chunks.load(cid for cid, _ in chunks_[3:])
    finally:
        chunks.close()
    assert not chunks.bad


def test_close_waits_for_a_fetch_ahead_nobody_takes(site: SealedSite) -> None:
    chunks_, blobs = _sealed(site, 4)
    source = GatedSource(blobs)
    source.gated = {chunks_[3][0]}
    chunks = Chunks(source, site.keys, Counter(cid for cid, _ in chunks_))
    chunks.load((cid for cid, _ in chunks_[:2]), ahead=(cid for cid, _ in chunks_[2:]))
    source.open.set()
    chunks.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("fetch-ahead")]
