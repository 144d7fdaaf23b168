"""A file that changes while it is read is never committed: it is retried next pass."""

from __future__ import annotations

import os
import threading

from agent.images.consumer import FileToStore
from agent.images.identity import state_of
from agent.images.result import SkipReason
from tests.integration.agent.images.conftest import put
from tests.support.imagefiles import FaultyFileAccess, RecordingConsumer

BLOCK = 4096


def test_a_rewrite_of_the_same_size_mid_read_is_caught_at_the_end(folder, index, scanner):
    path = put(folder / "contract.pdf", b"A" * (3 * BLOCK))

    def rewrite(file: FileToStore, block: int) -> None:
        if block == 1:
            with open(path, "r+b") as f:
                f.seek(2 * BLOCK)
                f.write(b"B" * BLOCK)

    consumer = RecordingConsumer(after_block=rewrite)
    result = scanner(block_size=BLOCK).scan(consumer)
    assert result.stored == 0 and result.skipped == {SkipReason.CHANGED_WHILE_READ: 1}
    assert result.bytes_read == 3 * BLOCK
    assert index.get(b"contract.pdf").content_ids is None
    again = scanner(block_size=BLOCK).scan(RecordingConsumer())
    assert again.changed == 1 and again.stored == 1  # re-observed, then read whole
    stored = index.get(b"contract.pdf")
    assert stored.stored.size == 3 * BLOCK and stored.stored.mtime_ns == os.stat(path).st_mtime_ns


def test_a_file_growing_mid_read_stops_the_read_at_once(folder, index, scanner):
    path = put(folder / "scan.tif", b"A" * (2 * BLOCK))

    def append(file: FileToStore, block: int) -> None:
        if block == 1:
            with open(path, "ab") as f:
                f.write(b"C" * (10 * BLOCK))

    result = scanner(block_size=BLOCK).scan(RecordingConsumer(after_block=append))
    assert result.skipped == {SkipReason.CHANGED_WHILE_READ: 1} and result.stored == 0
    assert result.bytes_read == 3 * BLOCK and result.bytes_handed == 2 * BLOCK


def test_a_consumer_that_swallows_the_torn_read_gets_told_to_discard(folder, index, scanner):
    path = put(folder / "a.jpg", b"A" * (2 * BLOCK))

    def truncate(file: FileToStore, block: int) -> None:
        if block == 1:
            os.truncate(path, BLOCK)

    consumer = RecordingConsumer(after_block=truncate, swallow_stream_errors=True)
    result = scanner(block_size=BLOCK).scan(consumer)
    assert result.stored == 0 and result.skipped == {SkipReason.CHANGED_WHILE_READ: 1}
    assert consumer.discarded == [("a.jpg", "a.jpg: it changed while it was read")]


def test_a_file_replaced_by_rename_during_the_read_is_not_committed(folder, index, scanner):
    path = put(folder / "a.jpg", b"A" * (2 * BLOCK))

    def save_by_rename(file: FileToStore, block: int) -> None:  # how editors save
        if block == 1:
            put(folder / "a.jpg.tmp", b"Z" * (2 * BLOCK), old=False)
            os.replace(folder / "a.jpg.tmp", path)

    consumer = RecordingConsumer(after_block=save_by_rename)
    result = scanner(block_size=BLOCK).scan(consumer)
    assert result.stored == 0 and result.skipped == {SkipReason.CHANGED_WHILE_READ: 1}
    assert consumer.discarded == [
        ("a.jpg", "it was changed, replaced or removed while it was read")
    ]
    entry = index.get(b"a.jpg")  # re-observed as the new file, to settle and be read next pass
    assert entry.stored is None and entry.seen == state_of(os.stat(path))


def test_a_writer_thread_rewriting_the_file_during_the_read(folder, index, scanner):
    path = put(folder / "busy.jpg", b"0" * (8 * BLOCK))
    first_block_read = threading.Event()
    rewritten = threading.Event()

    def writer() -> None:
        first_block_read.wait(10)
        with open(path, "r+b") as f:
            for i in range(8):
                f.seek(i * BLOCK)
                f.write(b"1" * BLOCK)
        rewritten.set()

    def handshake(file: FileToStore, block: int) -> None:
        if block == 1:
            first_block_read.set()
            assert rewritten.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        consumer = RecordingConsumer(after_block=handshake)
        result = scanner(block_size=BLOCK).scan(consumer)
    finally:
        thread.join(10)
    assert result.skipped == {SkipReason.CHANGED_WHILE_READ: 1} and result.stored == 0
    clean = RecordingConsumer()
    assert scanner(block_size=BLOCK).scan(clean).stored == 1
    assert clean.blobs[index.get(b"busy.jpg").content_ids[0]] == b"1" * (8 * BLOCK)


def test_a_consumer_that_stops_reading_early_is_an_error_and_nothing_is_committed(
    folder, index, scanner
):
    put(folder / "a.jpg", b"A" * (4 * BLOCK))
    consumer = RecordingConsumer(stop_after_bytes=BLOCK)
    result = scanner(block_size=BLOCK).scan(consumer)
    assert result.failed and result.stored == 0
    assert result.errors == ("a.jpg: the consumer returned before reading it to its end",)
    assert consumer.discarded == [("a.jpg", "the consumer returned before reading it to its end")]
    assert index.get(b"a.jpg").content_ids is None


def test_the_file_is_closed_as_soon_as_its_end_is_read(folder, index, scanner):
    put(folder / "a.jpg", b"A" * BLOCK)
    open_fds: list[int] = []

    class Probe(RecordingConsumer):
        def store(self, file, stream):  # type: ignore[override]
            ids = super().store(file, stream)
            open_fds.append(len(os.listdir("/proc/self/fd")))
            assert stream.closed
            return ids

    before = len(os.listdir("/proc/self/fd"))
    scanner(block_size=BLOCK).scan(Probe())
    assert open_fds and open_fds[0] <= before


def test_a_handle_spelling_the_file_id_otherwise_still_stores_and_still_catches_changes(
    folder, index, scanner
):
    path = put(folder / "a.jpg", b"A" * (2 * BLOCK))
    put(folder / "b.jpg", b"B" * (2 * BLOCK))

    def rewrite(file: FileToStore, block: int) -> None:
        if file.path == "a.jpg" and block == 1:
            with open(path, "r+b") as f:
                f.write(b"Z")

    access = FaultyFileAccess(other_id_spelling=True)
    result = scanner(block_size=BLOCK, file_access=access).scan(
        RecordingConsumer(after_block=rewrite)
    )
    assert result.stored == 1 and result.skipped == {SkipReason.CHANGED_WHILE_READ: 1}
    assert index.get(b"b.jpg").stored == state_of(os.stat(folder / "b.jpg"))  # the name's spelling
