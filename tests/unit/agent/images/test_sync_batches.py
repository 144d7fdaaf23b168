"""Image-sync upload batches that span files (agent.images.uploader): a folder of small
files costs a few round trips, not two a file, and the index records a file only once
its chunks are on the server (a failed or stopped send rolls its rows back)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from agent.images.index import INDEX_FILE, ImageIndex
from agent.images.uploader import SEND_AFTER_FILE
from common.vault import SiteKeys
from common.window import UploadWindow
from tests.support.clock import FakeClock
from tests.support.offsitestore import MemoryStore
from tests.unit.agent.images.test_sync import (  # fixtures: keys, clock
    EACH_FILE,
    budget_sync,
    clock,
    keys,
    opened,
    slow_batches,
    sync,
    write,
)

__all__ = ["clock", "keys"]


def small_files(folder: Path, count: int) -> dict[str, bytes]:
    files = {f"d{n % 3}/f{n:03d}.txt": os.urandom(1024 + 37 * n) for n in range(count)}
    for name, data in files.items():
        write(folder / name, data)
    return files


def stored_paths(state: Path) -> list[str]:
    with ImageIndex(state / INDEX_FILE) as index:
        return sorted(e.path for e in index.stored_entries())


def test_a_folder_of_small_files_goes_in_a_few_round_trips(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    files = small_files(folder, 300)  # more files than the index commits at once (256)
    missing_calls = 0
    real_missing = store.missing

    def missing(ids):  # type: ignore[no-untyped-def]
        nonlocal missing_calls
        missing_calls += 1
        return real_missing(ids)

    store.missing = missing  # type: ignore[method-assign]
    out = sync(folder, state, keys, store, clock)
    assert out.snapshot_id and not out.result.failed and out.result.stored == 300
    # 300 files of about 6.5 KB (2 MB), each under SEND_AFTER_FILE: a batch goes before
    # each of the index's commits (256 rows), plus the snapshot's manifest parts
    assert all(len(d) < SEND_AFTER_FILE for d in files.values())
    assert store.put_calls <= 4 and missing_calls <= 4
    assert opened(store, keys, out.snapshot_id) == files
    assert store.chunks_received == len(store.chunks)


def test_a_failed_send_of_the_last_files_rolls_their_rows_back_and_fails_the_pass(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state = tmp_path / "img", tmp_path / "state"
    state.mkdir()
    files = small_files(folder, 40)  # one batch, sent before the pass's last commit
    store = MemoryStore(fail_put_call=1, keep=5)
    cut = sync(folder, state, keys, store, clock)
    assert cut.result.aborted and cut.snapshot_id == "" and store.snapshots == {}
    assert "the connection was cut" in " ".join(cut.result.errors)
    assert stored_paths(state) == []  # no row names a chunk that did not arrive
    # the pass's figures count what the index kept: none of the 40 rolled-back rows
    assert (cut.result.stored, cut.result.bytes_stored) == (0, 0)

    done = sync(folder, state, keys, store, clock)
    assert done.snapshot_id and not done.result.failed and done.result.stored == 40
    assert store.chunks_received == len(store.chunks)  # the 5 that arrived: not sent again
    assert opened(store, keys, done.snapshot_id) == files


def test_a_stop_while_small_files_wait_rolls_them_back_and_the_next_pass_goes_on(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.images.uploader.SEND_AFTER_FILE", EACH_FILE)
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    big = {f"a{n}.bin": os.urandom(300_000 + n) for n in range(2)}  # one batch each
    for name, data in big.items():
        write(folder / name, data)
    files = {**big, **small_files(folder, 20)}  # d*/: after a*.bin in the walk
    slow_batches(store, clock, minutes=10, monkeypatch=monkeypatch)
    window = UploadWindow.parse("08:00-09:45", tz=dt.UTC)
    clock.set(dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC))

    cut = budget_sync(folder, state, keys, store, clock, window=window)
    assert cut.incomplete == "the upload window (08:00-09:45 local time) closed"
    assert not cut.result.failed and store.snapshots == {}
    # a0 and a1 went at 09:30 and 09:40; the small files' batch waited for the index's
    # last commit, asked at 09:50: the window had closed, so their rows were never written
    assert stored_paths(state) == ["a0.bin", "a1.bin"]

    clock.set(dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC))
    done = budget_sync(folder, state, keys, store, clock, window=window)
    assert done.incomplete == "" and done.snapshot_id and done.result.stored == 20
    assert store.chunks_received == len(store.chunks)
    assert opened(store, keys, done.snapshot_id) == files


def test_files_under_a_full_batch_share_it_and_a_larger_file_goes_as_it_ends(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    files = {f"a{n}.jpg": os.urandom(300_000 + n) for n in range(10)}  # 3 MB in all
    files["z.tif"] = os.urandom(9 * 1024 * 1024)  # a full batch (6 MiB) or more
    for name, data in files.items():
        write(folder / name, data)
    puts = slow_batches(store, clock, minutes=0)
    out = sync(folder, state, keys, store, clock)
    assert out.snapshot_id and out.result.stored == 11
    # 12 MB in batches of at most 6 MiB (or one chunk), the manifest's part last: not a
    # batch a file
    assert 3 <= len(puts) <= 5 and puts[-1] == 1
    assert opened(store, keys, out.snapshot_id) == files
