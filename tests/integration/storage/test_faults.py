"""The store under faults: full, unreachable, silent endpoints, and a busy backend."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.errors import NotFound
from server.storage import BlobStore, Digest, StoreFull, StoreUnavailable, open_store
from server.storage.filesystem import FilesystemBackend
from server.storage.s3 import S3Backend
from tests.integration.storage.test_conformance import KEY, listed, many, run, save
from tests.support.faulty_storage import FaultyBackend
from tests.support.s3servers import (
    LIMITED_CREDENTIALS,
    LIMITED_WRITES,
    S3Server,
    use_test_credentials,
)
from tests.support.server import free_port


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[BlobStore, FaultyBackend]]:
    backend = FaultyBackend(FilesystemBackend(tmp_path / "store"))
    store = BlobStore(backend, workers=2)
    yield store, backend
    run(store.close())


def test_a_full_store_is_a_typed_error_and_nothing_is_visible(
    faulty: tuple[BlobStore, FaultyBackend],
) -> None:
    store, backend = faulty
    backend.fail("create", StoreFull("the blob store at /x is full (No space left on device)"))
    with pytest.raises(StoreFull, match="is full") as caught:
        run(save(store, KEY, b"data"))
    assert caught.value.code == "store_full"
    assert run(store.stat([KEY])) == {KEY: None}
    assert run(save(store, KEY, b"data")) is True  # room again: the retry goes through


def test_an_unreachable_store_is_a_typed_error(faulty: tuple[BlobStore, FaultyBackend]) -> None:
    store, backend = faulty
    run(save(store, KEY, b"data"))
    backend.fail("read", StoreUnavailable("the S3 endpoint http://x cannot be reached"), times=1)
    with pytest.raises(StoreUnavailable, match="cannot be reached") as caught:
        run(store.load(KEY))
    assert caught.value.code == "store_unavailable"
    assert run(store.load(KEY)) == b"data"


def test_a_digest_mismatch_never_reaches_the_backend(
    faulty: tuple[BlobStore, FaultyBackend],
) -> None:
    store, backend = faulty
    with pytest.raises(Exception, match="nothing was stored"):
        run(store.save(KEY, b"data", Digest.of(b"other", "blake3")))
    assert backend.calls["create"] == 0


def test_a_blocked_backend_call_does_not_block_the_event_loop(
    faulty: tuple[BlobStore, FaultyBackend],
) -> None:
    store, backend = faulty
    gate = backend.gate("create")

    async def scenario() -> bool:
        upload = asyncio.create_task(save(store, KEY, b"data"))
        for _ in range(100):  # the loop keeps running while the write waits in its thread
            await asyncio.sleep(0)
        assert not upload.done()
        gate.set()  # set from the event loop: a blocked loop would never get here
        return await upload

    assert run(scenario()) is True


def test_a_write_that_disappears_before_the_comparison_is_unavailable(
    faulty: tuple[BlobStore, FaultyBackend],
) -> None:
    store, backend = faulty
    run(save(store, KEY, b"first"))
    backend.fail("read", NotFound(f"blob {KEY} is not in the store"))
    with pytest.raises(StoreUnavailable, match="another upload"):
        run(save(store, KEY, b"second"))


@pytest.mark.timeout(60)
def test_an_s3_endpoint_that_is_down_is_unavailable_naming_it() -> None:
    use_test_credentials()
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = BlobStore(S3Backend("storesafe-test", endpoint=endpoint, connect_timeout=1, attempts=2))
    try:
        with pytest.raises(StoreUnavailable, match=f"S3 endpoint {endpoint} cannot be reached"):
            run(save(store, KEY, b"data"))
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            run(store.check())
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            run(listed(store))
    finally:
        run(store.close())


@pytest.mark.timeout(60)
def test_an_s3_endpoint_that_is_down_through_open_store_defaults(tmp_path: Path) -> None:
    use_test_credentials()
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = open_store(f"s3://storesafe-test/p?endpoint={endpoint}&region=us-east-1", tmp_path)
    try:
        with pytest.raises(StoreUnavailable, match=f"S3 endpoint {endpoint} cannot be reached"):
            run(store.load(KEY))
    finally:
        run(store.close())


@pytest.mark.timeout(60)
def test_an_s3_endpoint_that_never_answers_times_out_as_unavailable() -> None:
    use_test_credentials()
    with socket.socket() as silent:  # accepts connections (kernel backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        backend = S3Backend("storesafe-test", endpoint=endpoint, read_timeout=1, attempts=1)
        store = BlobStore(backend)
        try:
            with pytest.raises(StoreUnavailable, match="did not answer within 1 s"):
                run(store.load(KEY))
        finally:
            run(store.close())


def test_a_missing_bucket_is_unavailable_at_check(moto_server: S3Server, tmp_path: Path) -> None:
    url = moto_server.url("p").replace("storesafe-test", "no-such-bucket")
    store = open_store(url, tmp_path)
    try:
        with pytest.raises(StoreUnavailable, match="bucket no-such-bucket does not exist"):
            run(store.check())
    finally:
        run(store.close())


def test_a_wrong_secret_is_unavailable_naming_the_store(
    seaweedfs_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = open_store(seaweedfs_server.url("p"), tmp_path)
    try:
        with pytest.raises(
            StoreUnavailable, match=r"S3 store s3://storesafe-test/p/ at .* refused access"
        ):
            run(save(store, KEY, b"data"))
        with pytest.raises(StoreUnavailable, match="check the credentials"):
            run(store.check())
    finally:
        run(store.close())


def test_no_credentials_are_unavailable_naming_the_store(
    moto_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    store = open_store(moto_server.url("p"), tmp_path)
    try:
        with pytest.raises(StoreUnavailable, match="no S3 credentials were found"):
            run(save(store, KEY, b"data"))
    finally:
        run(store.close())


def test_an_s3_batch_refused_in_the_middle_fails_with_the_first_refusal(
    seaweedfs_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PUTs of a batch run side by side; when the store refuses some of them, the
    batch fails with the error of the first refused blob in batch order, and every blob
    is whole or absent (Backend.create_many's contract)."""
    for name, value in LIMITED_CREDENTIALS.items():  # may write only under LIMITED_WRITES
        monkeypatch.setenv(name, value)
    run_id = uuid.uuid4().hex[:12]
    folder, _, start = LIMITED_WRITES.partition("/")  # the store's prefix, the names' start
    allowed, refused = f"{start}-{run_id}", f"no-{run_id}"
    keys = [f"{refused if n in (3, 6) else allowed}/chunks/{n:04d}" for n in range(10)]
    blobs = {key: os.urandom(20_000 + n) for n, key in enumerate(keys)}
    backend = S3Backend(
        seaweedfs_server.bucket,
        prefix=folder,
        endpoint=seaweedfs_server.endpoint,
        region="us-east-1",
    )
    store = BlobStore(backend)
    try:
        with pytest.raises(StoreUnavailable, match=f"refused access .* store blob {keys[3]}$"):
            run(store.save_many(many(blobs)))
        stored = run(listed(store))
        assert keys[3] not in stored and keys[6] not in stored
        assert all(key in blobs for key in stored)
        assert run(store.load_many(list(stored))) == [blobs[key] for key in stored]
        # the same batch again, without the refused blobs: all of it ends up stored
        rest = {key: data for key, data in blobs.items() if not key.startswith(refused)}
        saved, error = run(store.save_many(many(rest)))
        assert error is None and [s.key for s in saved] == list(rest)
        assert run(listed(store)) == {key: len(data) for key, data in rest.items()}
    finally:
        run(store.close())
