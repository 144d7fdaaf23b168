"""The Windows opener's logic, run against a fake of the Win32 calls over real files."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from agent.images.errors import FileBusy, FileUnreadable, FileVanished
from agent.images.index import INDEX_FILE, ImageIndex
from agent.images.result import SkipReason
from agent.images.scanner import Scanner
from agent.images.winfile import (
    FILE_FLAG_SEQUENTIAL_SCAN,
    GENERIC_READ,
    OPEN_EXISTING,
    WindowsFileAccess,
)
from tests.support.clock import FakeClock
from tests.support.imagefiles import FakeWin32, RecordingConsumer


def test_opens_with_read_write_and_delete_sharing_and_reads(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"data")
    api = FakeWin32()
    opened = WindowsFileAccess(api).open(str(path))
    try:
        assert opened.read(100) == b"data"
    finally:
        opened.close()
    ((name, access, share, disposition, flags),) = api.calls
    assert name == str(path) and access == GENERIC_READ and disposition == OPEN_EXISTING
    assert share == 0x1 | 0x2 | 0x4 and flags == FILE_FLAG_SEQUENTIAL_SCAN


@pytest.mark.parametrize(
    ("code", "error"), [(32, FileBusy), (33, FileBusy), (2, FileVanished), (5, FileUnreadable)]
)
def test_create_file_failures(tmp_path, code, error):
    path = str(tmp_path / "a.jpg")
    with pytest.raises(error, match=r"a\.jpg: "):
        WindowsFileAccess(FakeWin32(errors={path: code})).open(path)


def test_a_failed_open_osfhandle_closes_the_handle(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x")
    api = FakeWin32(osfhandle_error=OSError(24, "Too many open files"))
    with pytest.raises(FileUnreadable):
        WindowsFileAccess(api).open(str(path))
    assert len(api.closed_handles) == 1


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(Exception, match="not a regular file"):
        WindowsFileAccess(FakeWin32()).open(str(tmp_path))


def test_a_sharing_violation_is_busy_this_pass_and_read_the_next(tmp_path):
    folder = tmp_path / "Images"
    folder.mkdir()
    (folder / "open-in-shop.jpg").write_bytes(b"held")
    (folder / "free.jpg").write_bytes(b"free")
    api = FakeWin32(errors={str(folder / "open-in-shop.jpg"): 32})
    clock = FakeClock(dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    with ImageIndex(tmp_path / INDEX_FILE) as index:
        scan = Scanner(
            index, str(folder), settle_seconds=0, clock=clock, file_access=WindowsFileAccess(api)
        )
        consumer = RecordingConsumer()
        first = scan.scan(consumer)
        assert consumer.stored == ["free.jpg"] and first.skipped == {SkipReason.BUSY: 1}
        assert not first.failed
        assert first.skipped_examples[0].detail.endswith(
            "another program has it open without sharing"
        )
        api.errors.clear()
        second = scan.scan(consumer)
        assert consumer.stored[-1] == "open-in-shop.jpg" and second.stored == 1
    assert all(call[2] == 7 for call in api.calls)
    assert not any(
        os.path.basename(c[0]) == "free.jpg" for c in api.calls[2:]
    )  # unchanged: not opened
