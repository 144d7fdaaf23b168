"""What only the filesystem backend has: a real full disk, crash leftovers, its root."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from common.errors import InvalidArgument
from server.storage import BlobStore, StoreFull, StoreUnavailable, open_store
from server.storage.filesystem import INCOMING, FilesystemBackend
from tests.integration.storage.test_conformance import KEY, listed, run, save
from tests.support.clock import FakeClock


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (needs root, which the tests and CI run as)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = f"cannot mount a 1 MiB tmpfs: {done.stderr.strip()}"
        if os.environ.get("CI") or os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(f"{reason} (run as root; CI does)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_store_full_and_leaves_nothing(small_disk: Path) -> None:
    store = open_store(str(small_disk / "store"), small_disk)
    try:
        run(store.check())
        with pytest.raises(
            StoreFull, match=r"blob store at .* is full \(No space left on device\)"
        ):
            run(save(store, KEY, os.urandom(2 * 1024 * 1024)))
        assert run(listed(store)) == {}
        assert list((small_disk / "store" / INCOMING).iterdir()) == []
        assert run(save(store, "sites/s/chunks/small", b"fits")) is True  # room for small ones
        usage = run(store.usage())
        assert usage.total_bytes == 1024 * 1024
    finally:
        run(store.close())


def test_crash_leftovers_are_invisible_and_removed_after_the_margin(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime.now(dt.UTC))
    backend = FilesystemBackend(tmp_path / "store", clock=clock)
    store = BlobStore(backend)
    try:
        run(save(store, KEY, b"kept"))
        incoming = tmp_path / "store" / INCOMING
        old, fresh = incoming / ".blob-old", incoming / ".blob-fresh"
        old.write_bytes(b"half a blob")
        fresh.write_bytes(b"being written")
        two_hours_ago = (clock.now() - dt.timedelta(hours=2)).timestamp()
        os.utime(old, (two_hours_ago, two_hours_ago))
        assert run(listed(store)) == {KEY: 4}
        assert backend.remove_stale_temp_files(dt.timedelta(hours=1)) == 1
        assert sorted(p.name for p in incoming.iterdir()) == [".blob-fresh"]
        clock.advance(dt.timedelta(hours=2))
        assert backend.remove_stale_temp_files(dt.timedelta(hours=1)) == 1
        assert list(incoming.iterdir()) == []
        assert run(store.load(KEY)) == b"kept"
    finally:
        run(store.close())


def test_a_blob_file_is_written_through_a_temporary_name(tmp_path: Path) -> None:
    store = open_store("", tmp_path)
    try:
        run(save(store, KEY, b"abc"))
        blob = tmp_path / "store" / KEY
        assert blob.read_bytes() == b"abc"
        assert blob.stat().st_nlink == 1  # the temporary link is gone
        assert list((tmp_path / "store" / INCOMING).iterdir()) == []
    finally:
        run(store.close())


def test_a_root_that_cannot_be_a_folder_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = open_store(str(tmp_path / "file" / "store"), tmp_path)
    try:
        with pytest.raises(StoreUnavailable, match="could not be created: Not a directory"):
            run(store.check())
        with pytest.raises(StoreUnavailable, match="Not a directory"):
            run(save(store, KEY, b"x"))
    finally:
        run(store.close())


def test_a_name_cannot_be_both_a_blob_and_a_folder(tmp_path: Path) -> None:
    store = open_store("", tmp_path)
    try:
        run(save(store, "sites/s/a", b"x"))
        with pytest.raises(InvalidArgument, match="both a blob and a folder"):
            run(save(store, "sites/s/a/b", b"y"))
        run(save(store, "sites/s/b/c", b"z"))
        with pytest.raises(InvalidArgument, match="both a blob and a folder"):
            run(save(store, "sites/s/b", b"w"))
        assert run(listed(store)) == {"sites/s/a": 1, "sites/s/b/c": 1}
    finally:
        run(store.close())


def test_many_threads_creating_the_same_new_folders_never_clash(tmp_path: Path) -> None:
    backend = FilesystemBackend(tmp_path / "store")
    # 16 writers at a time race to create each new chain of folders
    keys = [f"sites/r{n // 16}/chunks/{n % 4}/{n:05d}" for n in range(1600)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        created = list(pool.map(lambda key: backend.create(key, b"x"), keys))
    assert created == [True] * len(keys)
    assert {info.key for info in backend.list("")} == set(keys)


@pytest.mark.parametrize("use_syncfs", [True, False], ids=["syncfs", "fsync"])
def test_a_batch_is_written_durable_through_temporary_names(
    tmp_path: Path, use_syncfs: bool
) -> None:
    backend = FilesystemBackend(tmp_path / "store", use_syncfs=use_syncfs)
    blobs = [(f"sites/s/chunks/{n % 4:02x}/{n:03d}", os.urandom(n * 10)) for n in range(20)]
    assert backend.create(blobs[3][0], blobs[3][1]) is True
    assert backend.create_many(blobs) == [n != 3 for n in range(20)]
    for key, data in blobs:
        assert (tmp_path / "store" / key).read_bytes() == data
        assert (tmp_path / "store" / key).stat().st_nlink == 1
    assert list((tmp_path / "store" / INCOMING).iterdir()) == []


def test_a_full_disk_mid_batch_is_store_full_and_leaves_no_temporary_file(
    small_disk: Path,
) -> None:
    backend = FilesystemBackend(small_disk / "store")
    blobs = [("sites/s/chunks/a", b"fits"), ("sites/s/chunks/b", os.urandom(2 << 20))]
    with pytest.raises(StoreFull, match=r"could not store a batch of 2 blobs"):
        backend.create_many(blobs)
    assert list((small_disk / "store" / INCOMING).iterdir()) == []
    assert not (small_disk / "store" / "sites/s/chunks/b").exists()
    assert backend.create_many(blobs[:1]) == [True]  # room for small ones
