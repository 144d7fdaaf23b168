"""What the index remembers across passes: renames, an emptied and restored folder, stable files,
a consumer that fails, a pass cut short."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.images.errors import PassAlreadyRunning
from agent.images.index import INDEX_FILE, ImageIndex
from agent.images.scanner import Scanner
from common.errors import Unavailable
from tests.integration.agent.images.conftest import put
from tests.support.imagefiles import FaultyFileAccess, RecordingConsumer


def test_a_rename_reuses_the_content_ids_without_reading(folder, index, scanner):
    put(folder / "in" / "scan-001.jpg", b"ID card")
    scanner().scan(RecordingConsumer())
    before = index.get(b"in\0scan-001.jpg")
    os.makedirs(folder / "filed")
    os.rename(folder / "in" / "scan-001.jpg", folder / "filed" / "Smith, J.jpg")
    access = FaultyFileAccess()
    result = scanner(file_access=access).scan(RecordingConsumer())
    assert access.opened == []
    assert (result.renamed, result.new, result.deleted, result.stored) == (1, 0, 0, 0)
    (entry,) = index.stored_entries()
    assert entry.path == "filed/Smith, J.jpg" and entry.content_ids == before.content_ids
    assert index.get(b"in\0scan-001.jpg") is None  # moved, not a tombstone


def test_a_hard_link_is_a_new_name_with_the_same_content(folder, index, scanner):
    put(folder / "a.jpg", b"shared")
    scanner().scan(RecordingConsumer())
    os.link(folder / "a.jpg", folder / "b.jpg")
    access = FaultyFileAccess()
    result = scanner(file_access=access).scan(RecordingConsumer())
    assert access.opened == [] and (result.new, result.renamed, result.deleted) == (1, 0, 0)
    assert index.get(b"b.jpg").content_ids == index.get(b"a.jpg").content_ids


def test_only_a_pass_after_something_was_stored_looks_for_a_new_name_s_content(
    folder, index, scanner, monkeypatch
):
    """A first pass over thousands of new files asks the index about none of them."""
    looked: list[str] = []
    real = ImageIndex.with_stored
    monkeypatch.setattr(
        ImageIndex, "with_stored", lambda self, state: looked.append("x") or real(self, state)
    )
    put(folder / "a.jpg", b"first")
    put(folder / "b.jpg", b"second")
    assert scanner().scan(RecordingConsumer()).stored == 2 and looked == []
    put(folder / "c.jpg", b"third")
    assert scanner().scan(RecordingConsumer()).stored == 1 and looked == ["x"]


def test_a_suddenly_empty_folder_is_reported_and_its_restore_is_not_new(
    folder, index, scanner, clock
):
    for i in range(20):
        put(folder / "2026" / f"{i:03d}.jpg", f"image {i}".encode())
    put(folder / "moved-back.jpg", b"kept inode")
    scanner().scan(RecordingConsumer())
    clock.advance(dt.timedelta(days=3))
    backup = folder.parent / "elsewhere"
    shutil.copytree(folder, backup, copy_function=shutil.copy2)  # a restore: same mtimes, new ids
    os.rename(folder / "moved-back.jpg", folder.parent / "moved-back.jpg")
    shutil.rmtree(folder / "2026")

    empty = scanner().scan(RecordingConsumer())
    assert empty.folder_empty and empty.deleted == 21 and empty.files_seen == 0
    assert empty.stable_before == 21 and empty.stable_changed_share == 1.0
    assert list(index.stored_entries()) == []
    assert index.count_live() == 0 and index.get(b"2026\x00000.jpg").deleted_at is not None

    clock.advance(dt.timedelta(hours=1))
    shutil.copytree(backup / "2026", folder / "2026", copy_function=shutil.copy2)
    os.rename(folder.parent / "moved-back.jpg", folder / "moved-back.jpg")
    consumer = RecordingConsumer()
    back = scanner().scan(consumer)
    assert (back.reappeared, back.new, back.deleted, back.folder_empty) == (21, 0, 0, False)
    # Restored copies have new file ids (or, by chance, their own old one): read again, same
    # content ids. The file moved out and back kept its id, size and mtime: not read.
    assert back.stored <= 20 and back.stored + back.skipped_total <= 20
    assert "moved-back.jpg" not in consumer.stored
    previous = {item.path: item.previous_content_ids for item in consumer.items}
    assert len(previous) == back.stored
    for path, ids in previous.items():  # read again: the same content ids as before
        assert index.get(path.replace("/", "\0").encode()).content_ids == ids
    for entry in index.stored_entries():  # and every entry names what is on disk
        assert entry.content_ids == (
            hashlib.sha256((folder / entry.path).read_bytes()).hexdigest(),
        )
    assert len(list(index.stored_entries())) == 21


def test_the_share_of_stable_files_changed_or_deleted(folder, index, scanner, clock):
    for i in range(10):
        put(folder / f"{i}.jpg", b"x" * i)
    scanner().scan(RecordingConsumer())
    put(folder / "fresh.jpg", b"new")
    clock.advance(dt.timedelta(hours=2))
    quiet = scanner(stable_after=dt.timedelta(days=1)).scan(RecordingConsumer())
    assert quiet.stable_before == 0 and quiet.stable_changed_share is None
    clock.advance(dt.timedelta(days=2))
    for i in range(6):
        put(folder / f"{i}.jpg", b"encrypted!" * 3, old=False)
    (folder / "8.jpg").unlink()
    (folder / "fresh.jpg").unlink()
    os.rename(folder / "9.jpg", folder / "9.jpg.renamed")
    result = scanner(stable_after=dt.timedelta(days=1)).scan(RecordingConsumer())
    assert result.stable_before == 11
    assert (result.stable_changed, result.stable_deleted, result.renamed) == (6, 2, 1)
    assert result.stable_changed_share == pytest.approx(8 / 11)


def test_a_consumer_that_cannot_reach_the_server_ends_the_pass_and_keeps_what_was_stored(
    folder, index, scanner
):
    for name in ["a.jpg", "b.jpg", "c.jpg"]:
        put(folder / name, name.encode())
    put(folder / "old.jpg")
    scanner().scan(RecordingConsumer())
    (folder / "old.jpg").unlink()
    for name in ["a.jpg", "b.jpg", "c.jpg"]:
        put(folder / name, name.encode() * 2, old=False)
    consumer = RecordingConsumer(fail_on={"b.jpg": Unavailable("the server is unreachable")})
    result = scanner().scan(consumer)
    assert result.aborted and result.failed
    assert result.errors == ("b.jpg: the server is unreachable",)
    assert result.stored == 1 and result.deleted == 0  # deletions wait for a whole pass
    assert index.get(b"a.jpg").current and not index.get(b"b.jpg").current
    assert index.get(b"old.jpg").live
    whole = scanner().scan(RecordingConsumer())
    assert (whole.stored, whole.deleted, whole.unchanged, whole.changed) == (
        2,
        1,
        2,
        1,
    )  # c.jpg: unseen


_KILLED_MID_PASS = """
import datetime as dt, os, sys
from pathlib import Path
from agent.images.index import ImageIndex
from agent.images.scanner import Scanner
from tests.support.clock import FakeClock
from tests.support.imagefiles import RecordingConsumer

def die(file, block):
    if file.path == "0400.jpg":
        os._exit(9)  # the process dies: no commit, no close

index = ImageIndex(Path(sys.argv[1]))
clock = FakeClock(dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
Scanner(index, sys.argv[2], settle_seconds=0, clock=clock).scan(RecordingConsumer(after_block=die))
"""


def test_a_pass_killed_half_way_leaves_the_index_consistent(tmp_path, folder, clock):
    for i in range(600):
        put(folder / f"{i:04d}.jpg", str(i).encode())
    path = tmp_path / INDEX_FILE
    root = Path(__file__).resolve().parents[4]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_PASS, str(path), str(folder)], cwd=root
    )
    assert killed.returncode == 9
    with ImageIndex(path) as reopened:
        kept = list(reopened.stored_entries())  # what the committed batches hold
        assert 0 < len(kept) < 400
        for entry in kept:
            assert entry.content_ids == (
                hashlib.sha256((folder / entry.path).read_bytes()).hexdigest(),
            )
        access = FaultyFileAccess()
        result = Scanner(
            reopened, str(folder), settle_seconds=0, clock=clock, file_access=access
        ).scan(RecordingConsumer())
        assert result.stored == len(access.opened) == 600 - len(kept)
        assert result.new + result.unchanged == 600 and len(list(reopened.stored_entries())) == 600


def test_two_passes_at_once_are_refused(folder, index, scanner):
    put(folder / "a.jpg")
    inside = threading.Event()
    release = threading.Event()

    def hold(file, block):
        inside.set()
        release.wait(10)

    thread = threading.Thread(target=lambda: scanner().scan(RecordingConsumer(after_block=hold)))
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(PassAlreadyRunning):
            scanner().scan(RecordingConsumer())
    finally:
        release.set()
        thread.join(10)


def test_a_new_folder_setting_is_reported_with_the_previous_one(
    tmp_path, folder, index, clock, scanner
):
    put(folder / "a.jpg", b"a")
    scanner().scan(RecordingConsumer())
    moved = tmp_path / "Moved"
    os.rename(folder, moved)
    result = Scanner(index, str(moved), settle_seconds=0, clock=clock).scan(RecordingConsumer())
    assert result.previous_folder == str(folder) and result.unchanged == 1 and result.stored == 0


def test_tombstones_are_pruned_after_keep_tombstones(folder, index, scanner, clock):
    put(folder / "a.jpg", b"a")
    scanner().scan(RecordingConsumer())
    (folder / "a.jpg").unlink()
    scanner().scan(RecordingConsumer())
    assert index.get(b"a.jpg") is not None
    clock.advance(dt.timedelta(days=91))
    scanner().scan(RecordingConsumer())
    assert index.get(b"a.jpg") is None
