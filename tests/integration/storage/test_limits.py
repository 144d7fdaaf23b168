"""What `BlobStore` refuses before any backend call: oversized blobs and bad batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import InvalidArgument
from server.storage import BlobStore, Digest
from server.storage.errors import BlobTooLarge
from server.storage.filesystem import FilesystemBackend
from tests.integration.storage.test_conformance import run, save
from tests.support.faulty_storage import FaultyBackend


@pytest.fixture
def small(tmp_path: Path) -> tuple[BlobStore, FaultyBackend]:
    backend = FaultyBackend(FilesystemBackend(tmp_path / "store"))
    return BlobStore(backend, max_blob_bytes=10), backend


def test_a_blob_over_the_limit_is_refused_in_one_sentence(
    small: tuple[BlobStore, FaultyBackend],
) -> None:
    store, backend = small
    assert run(save(store, "a/fits", b"x" * 10)) is True
    with pytest.raises(BlobTooLarge, match="a/big is 11 bytes; the store takes at most 10") as e:
        run(store.save("a/big", b"x" * 11, Digest.of(b"x" * 11, "blake3")))
    assert e.value.code == "blob_too_large"
    assert backend.calls["create"] == 1


def test_batches_are_lists_of_at_most_a_thousand_names(
    small: tuple[BlobStore, FaultyBackend],
) -> None:
    store, backend = small
    with pytest.raises(InvalidArgument, match="at most 1000 blob names per call, not 1001"):
        run(store.stat([f"a/{n}" for n in range(1001)]))
    with pytest.raises(InvalidArgument, match="as a list, not one string"):
        run(store.stat("a/1"))
    assert backend.calls["stat"] == 0
    run(save(store, "a/1", b"x"))
    assert run(store.missing(["a/2", "a/1", "a/2", "a/3"])) == ["a/2", "a/3"]


def test_a_store_needs_a_worker(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="at least one worker"):
        BlobStore(FilesystemBackend(tmp_path), workers=0)
