"""Links are never followed, and files that cannot be read now are skipped without stopping the pass."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from agent.images.result import SkipReason
from tests.integration.agent.images.conftest import put
from tests.support.imagefiles import FaultyFileAccess, FaultyLister, RecordingConsumer


def test_symlinks_inside_and_out_and_loops_are_recorded_and_never_followed(
    tmp_path: Path, folder, index, scanner
):
    outside = tmp_path / "outside"
    put(outside / "secret.txt", b"not ours")
    put(folder / "real.jpg", b"real")
    (folder / "to-file-outside").symlink_to(outside / "secret.txt")
    (folder / "to-dir-outside").symlink_to(outside, target_is_directory=True)
    (folder / "to-inside").symlink_to(folder / "real.jpg")
    (folder / "loop").mkdir()
    (folder / "loop" / "back").symlink_to(folder, target_is_directory=True)
    (folder / "self").symlink_to(folder / "self")
    (folder / "dangling").symlink_to(tmp_path / "nothing")
    consumer = RecordingConsumer()
    result = scanner().scan(consumer)
    assert consumer.stored == ["real.jpg"]
    assert result.files_seen == 1 and result.skipped == {SkipReason.SYMLINK: 6}
    assert {s.path for s in result.skipped_examples} == {
        "to-file-outside",
        "to-dir-outside",
        "to-inside",
        "loop/back",
        "self",
        "dangling",
    }
    assert all("symbolic link, not followed" in s.detail for s in result.skipped_examples)
    assert not result.failed


def test_a_file_replaced_by_a_symlink_is_deleted_not_followed(tmp_path, folder, index, scanner):
    put(folder / "a.jpg", b"a")
    scanner().scan(RecordingConsumer())
    (folder / "a.jpg").unlink()
    (folder / "a.jpg").symlink_to(tmp_path)
    result = scanner().scan(RecordingConsumer())
    assert result.deleted == 1 and result.skipped == {SkipReason.SYMLINK: 1}


def test_a_fifo_is_skipped_never_opened(folder, index, scanner):
    os.mkfifo(folder / "pipe")
    put(folder / "a.jpg", b"a")
    result = scanner().scan(RecordingConsumer())
    assert result.stored == 1 and result.skipped == {SkipReason.NOT_REGULAR: 1}


def test_an_unreadable_file_is_skipped_with_its_reason_and_read_next_pass(folder, index, scanner):
    put(folder / "a.jpg", b"a")
    put(folder / "locked.jpg", b"locked")
    put(folder / "z.jpg", b"z")
    access = FaultyFileAccess(
        open_errors={"locked.jpg": PermissionError(errno.EACCES, "Permission denied")}
    )
    consumer = RecordingConsumer()
    result = scanner(file_access=access).scan(consumer)
    assert consumer.stored == ["a.jpg", "z.jpg"]
    assert result.skipped == {SkipReason.UNREADABLE: 1} and not result.failed
    (skip,) = result.skipped_examples
    assert skip.path == "locked.jpg" and skip.detail.endswith("locked.jpg: permission denied")
    again = scanner().scan(consumer)
    assert again.stored == 1 and again.unchanged == 3 and consumer.stored[-1] == "locked.jpg"


def test_a_disk_error_mid_read_skips_the_file_and_commits_nothing(folder, index, scanner):
    put(folder / "bad.jpg", b"x" * 5000)
    access = FaultyFileAccess(
        read_errors={"bad.jpg": (2, OSError(errno.EIO, "Input/output error"))}
    )
    consumer = RecordingConsumer()
    result = scanner(file_access=access, block_size=1024).scan(consumer)
    assert result.skipped == {SkipReason.UNREADABLE: 1} and result.stored == 0
    assert result.bytes_read == 2048 and result.bytes_stored == 0
    assert index.get(b"bad.jpg").content_ids is None
    assert scanner().scan(consumer).stored == 1


def test_a_file_that_vanishes_between_listing_and_reading_is_skipped_not_an_error(
    folder, index, scanner
):
    put(folder / "a.jpg", b"a")
    put(folder / "moved-away.jpg", b"m")

    def remove(path: str) -> None:
        if path.endswith("moved-away.jpg"):
            os.unlink(path)

    result = scanner(file_access=FaultyFileAccess(before_open=remove)).scan(RecordingConsumer())
    assert result.skipped == {SkipReason.VANISHED: 1} and not result.failed and result.stored == 1
    nxt = scanner().scan(RecordingConsumer())
    assert nxt.deleted == 1 and nxt.files_seen == 1


def test_a_file_replaced_between_listing_and_opening_is_not_read(folder, index, scanner, clock):
    put(folder / "a.jpg", b"first")

    def replace(path: str) -> None:
        put(Path(path), b"second, longer", old=False)

    consumer = RecordingConsumer()
    result = scanner(file_access=FaultyFileAccess(before_open=replace)).scan(consumer)
    assert consumer.stored == [] and result.skipped == {SkipReason.SETTLING: 1}
    assert index.get(b"a.jpg").seen.size == len(b"second, longer")


def test_a_folder_that_cannot_be_listed_keeps_what_the_index_holds_below_it(folder, index, scanner):
    put(folder / "a" / "1.jpg", b"1")
    put(folder / "b" / "2.jpg", b"2")
    put(folder / "b" / "sub" / "3.jpg", b"3")
    put(folder / "c" / "4.jpg", b"4")
    scanner().scan(RecordingConsumer())
    lister = FaultyLister(errors={"b": PermissionError(errno.EACCES, "Permission denied")})
    result = scanner(lister=lister).scan(RecordingConsumer())
    assert result.deleted == 0 and result.files_seen == 2
    assert result.skipped == {SkipReason.UNREADABLE: 1}
    assert len(list(index.stored_entries())) == 4
    assert scanner().scan(RecordingConsumer()).unchanged == 4


def test_the_image_folder_itself_unlistable_fails_the_pass(folder, index, scanner):
    put(folder / "a.jpg")
    scanner().scan(RecordingConsumer())
    lister = FaultyLister(errors={"Images": PermissionError(errno.EACCES, "Permission denied")})
    result = scanner(lister=lister).scan(RecordingConsumer())
    assert result.failed and not result.folder_missing and result.deleted == 0
    assert result.errors == (f"cannot list the image folder {folder} (Permission denied)",)
