"""A scan pass over a real folder: new, unchanged, changed, deleted, settling, names as on disk."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import unicodedata

from agent.images.result import PassResult, SkipReason
from tests.integration.agent.images.conftest import put
from tests.support.clock import FakeClock
from tests.support.imagefiles import FaultyFileAccess, RecordingConsumer


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def classified(r: PassResult) -> int:
    return r.new + r.changed + r.unchanged + r.renamed + r.reappeared


def test_first_pass_stores_every_file_and_a_second_opens_none(folder, index, scanner):
    put(folder / "a.jpg", b"A" * 10)
    put(folder / "sub" / "b.jpg", b"B" * 20)
    put(folder / "sub" / "deeper" / "c.pdf", b"C" * 30)
    consumer = RecordingConsumer()
    first = scanner().scan(consumer)
    assert (first.files_seen, first.new, first.stored, first.deleted) == (3, 3, 3, 0)
    assert sorted(consumer.stored) == ["a.jpg", "sub/b.jpg", "sub/deeper/c.pdf"]
    assert first.bytes_read == first.bytes_handed == first.bytes_stored == 60
    assert not first.failed and first.skipped == {}

    access = FaultyFileAccess()
    second = scanner(file_access=access).scan(RecordingConsumer())
    assert access.opened == []
    assert (second.files_seen, second.unchanged, second.stored, second.bytes_read) == (3, 3, 0, 0)
    stored = {e.path: e.content_ids for e in index.stored_entries()}
    assert stored == {
        "a.jpg": (sha(b"A" * 10),),
        "sub/b.jpg": (sha(b"B" * 20),),
        "sub/deeper/c.pdf": (sha(b"C" * 30),),
    }


def test_changed_and_deleted_files(folder, index, scanner):
    put(folder / "keep.jpg", b"k")
    put(folder / "edit.jpg", b"old")
    put(folder / "gone.jpg", b"g")
    scanner().scan(RecordingConsumer())
    put(folder / "edit.jpg", b"new content", old=False)
    (folder / "gone.jpg").unlink()
    consumer = RecordingConsumer()
    result = scanner().scan(consumer)
    assert (result.changed, result.deleted, result.unchanged, result.stored) == (1, 1, 1, 1)
    assert consumer.stored == ["edit.jpg"]
    assert consumer.items[0].previous_content_ids == (sha(b"old"),)
    assert [e.path for e in index.stored_entries()] == ["edit.jpg", "keep.jpg"]
    tomb = index.get(b"gone.jpg")
    assert tomb is not None and tomb.deleted_at is not None and tomb.content_ids == (sha(b"g"),)


def test_a_new_file_waits_until_unchanged_for_settle_seconds(
    folder, index, scanner, clock: FakeClock
):
    put(folder / "scan.jpg", b"part")
    scan = scanner(settle_seconds=60)
    consumer = RecordingConsumer()
    first = scan.scan(consumer)
    assert first.new == 1 and first.stored == 0 and first.skipped == {SkipReason.SETTLING: 1}
    assert first.settle_due_at == clock.now() + dt.timedelta(seconds=60)
    clock.advance(dt.timedelta(seconds=40))
    put(folder / "scan.jpg", b"part and more", old=False)  # still being written
    second = scan.scan(consumer)
    assert second.changed == 1 and second.stored == 0
    assert second.settle_due_at == clock.now() + dt.timedelta(seconds=60)
    clock.advance(dt.timedelta(seconds=59))
    assert scan.scan(consumer).stored == 0
    clock.advance(dt.timedelta(seconds=1))
    third = scan.scan(consumer)
    assert (third.unchanged, third.stored, third.skipped) == (1, 1, {})
    assert consumer.blobs[index.get(b"scan.jpg").content_ids[0]] == b"part and more"


def test_a_changed_file_keeps_its_stored_version_while_it_settles(folder, index, scanner, clock):
    put(folder / "id.jpg", b"v1")
    scanner().scan(RecordingConsumer())
    put(folder / "id.jpg", b"version 2", old=False)
    result = scanner(settle_seconds=300).scan(RecordingConsumer())
    assert result.changed == 1 and result.skipped == {SkipReason.SETTLING: 1}
    (entry,) = index.stored_entries()
    assert entry.content_ids == (sha(b"v1"),) and entry.stored.size == 2


def test_names_are_kept_exactly_nfc_and_nfd_side_by_side_and_odd_characters(folder, index, scanner):
    nfc = unicodedata.normalize("NFC", "Müller-Ausweis.jpg")
    nfd = unicodedata.normalize("NFD", "Müller-Ausweis.jpg")
    assert nfc != nfd
    odd = [
        "space name.jpg",
        "semi;colon,comma.jpg",
        "quote'\"back\\slash.jpg",
        "tab\tnew\nline.jpg",
        "emoji 📄.jpg",
        "日本語.png",
        "-leading-dash",
        ".hidden",
        "trailing.dot.",
    ]
    for i, name in enumerate([nfc, nfd, *odd]):
        put(folder / "Kunden" / name, f"content {i}".encode())
    consumer = RecordingConsumer()
    result = scanner().scan(consumer)
    assert result.stored == 11 and not result.failed
    paths = {e.path for e in index.stored_entries()}
    assert f"Kunden/{nfc}" in paths and f"Kunden/{nfd}" in paths
    assert paths == {f"Kunden/{n}" for n in [nfc, nfd, *odd]}
    assert scanner().scan(RecordingConsumer()).unchanged == 11


def test_a_name_that_is_not_utf8_round_trips(folder, index, scanner):
    raw = os.fsencode(str(folder)) + b"/latin1-\xe9.jpg"
    with open(raw, "wb") as f:
        f.write(b"x")
    result = scanner().scan(RecordingConsumer())
    assert result.stored == 1
    (entry,) = index.stored_entries()
    assert os.fsencode(entry.path) == b"latin1-\xe9.jpg"
    assert scanner().scan(RecordingConsumer()).unchanged == 1


def test_empty_files_are_stored(folder, index, scanner):
    put(folder / "empty.jpg", b"")
    consumer = RecordingConsumer()
    result = scanner().scan(consumer)
    assert result.stored == 1 and result.bytes_read == 0
    assert index.get(b"empty.jpg").content_ids == (sha(b""),)


def test_a_very_deep_path_over_260_characters(folder, index, scanner):
    deep = folder.joinpath(*[f"level-{i:02d}-of-a-deep-tree" for i in range(20)])
    put(deep / "deep.jpg", b"deep")
    assert len(str(deep / "deep.jpg")) > 260
    result = scanner().scan(RecordingConsumer())
    assert result.stored == 1 and not result.failed
    (entry,) = index.stored_entries()
    assert entry.path.count("/") == 20 and entry.path.endswith("/deep.jpg")


def test_a_path_longer_than_the_system_allows_is_skipped_and_the_rest_scanned(
    folder, index, scanner
):
    put(folder / "ok.jpg", b"ok")
    name = "d" * 250
    fd = os.open(folder, os.O_RDONLY)
    try:  # build past PATH_MAX (4096) relative to a descriptor, as only a program can
        for _ in range(18):
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open("far.jpg", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        os.close(leaf)
    finally:
        os.close(fd)
    result = scanner().scan(RecordingConsumer())
    assert result.stored == 1
    assert result.skipped == {SkipReason.TOO_LONG: 1}
    assert not result.failed


def test_the_pass_classifies_every_file_once(folder, index, scanner, clock):
    for i in range(6):
        put(folder / f"f{i}.jpg", bytes([i]) * (i + 1))
    scanner(settle_seconds=10).scan(RecordingConsumer())
    clock.advance(dt.timedelta(seconds=5))
    put(folder / "f0.jpg", b"changed", old=False)
    os.rename(folder / "f1.jpg", folder / "f1-renamed.jpg")
    (folder / "f2.jpg").unlink()
    put(folder / "f9.jpg", b"brand new")
    result = scanner(settle_seconds=10).scan(RecordingConsumer())
    assert result.files_seen == 6 == classified(result)
    assert (result.new, result.changed, result.deleted) == (
        2,
        1,
        2,
    )  # nothing was stored: no rename


def test_a_missing_folder_fails_the_pass_with_one_sentence_and_keeps_the_index(
    tmp_path, index, clock, folder, scanner
):
    put(folder / "a.jpg")
    scanner().scan(RecordingConsumer())
    from agent.images.scanner import Scanner

    gone = tmp_path / "nowhere"
    result = Scanner(index, str(gone), settle_seconds=0, clock=clock).scan(RecordingConsumer())
    assert result.folder_missing and result.failed
    assert result.errors == (f"the image folder {gone} does not exist",)
    assert result.deleted == 0 and [e.path for e in index.stored_entries()] == ["a.jpg"]
    afile = put(tmp_path / "a-file", b"x")
    result = Scanner(index, str(afile), settle_seconds=0, clock=clock).scan(RecordingConsumer())
    assert result.folder_missing and result.errors == (f"the image folder {afile} is not a folder",)


def test_an_unset_or_relative_folder_is_refused_before_anything_is_read(
    index, clock, folder, scanner
):
    from agent.images.scanner import Scanner

    for value, error in [
        ("", "no image folder is set (images.dir)"),
        ("Images", "the image folder Images is not an absolute path"),
    ]:
        result = Scanner(index, value, settle_seconds=0, clock=clock).scan(RecordingConsumer())
        assert result.failed and result.errors == (error,) and result.files_seen == 0


def test_the_pacing_hook_sees_every_block_read(folder, index, scanner):
    put(folder / "a.jpg", b"a" * 10_000)
    put(folder / "b.jpg", b"b" * 100)
    paced: list[int] = []
    result = scanner(block_size=4096, pace=paced.append).scan(RecordingConsumer())
    assert paced == [4096, 4096, 1808, 100] and sum(paced) == result.bytes_read == 10_100


def test_the_first_pass_stores_old_files_at_once_and_a_fresh_one_waits(
    folder, index, scanner, clock: FakeClock
):
    # the clock a while after this test's writes: their ctime (which a test cannot date
    # back) is then older than settle_seconds, as on a folder configured long after
    clock.set(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5))
    put(folder / "2019" / "old-1.jpg", b"old one")
    put(folder / "old-2.pdf", b"old two")
    fresh = put(folder / "fresh.jpg", b"still being scanned", old=False)
    fresh_ns = int((clock.now() - dt.timedelta(seconds=10)).timestamp()) * 10**9
    os.utime(fresh, ns=(fresh_ns, fresh_ns))  # written 10 s ago by the clock
    consumer = RecordingConsumer()
    first = scanner(settle_seconds=60).scan(consumer)
    assert (first.new, first.stored) == (3, 2)
    assert sorted(consumer.stored) == ["2019/old-1.jpg", "old-2.pdf"]
    assert first.skipped == {SkipReason.SETTLING: 1}
    assert first.settle_due_at == dt.datetime.fromtimestamp(fresh_ns / 1e9, dt.UTC) + dt.timedelta(
        seconds=60
    )
    clock.advance(dt.timedelta(seconds=50))
    second = scanner(settle_seconds=60).scan(consumer)
    assert second.stored == 1 and consumer.stored[-1] == "fresh.jpg"


def test_a_copy_that_kept_an_old_mtime_waits_for_its_fresh_ctime(
    folder, index, scanner, clock: FakeClock
):
    put(folder / "copied.jpg", b"cp -p keeps the mtime, not the ctime")  # mtime in 2020
    clock.set(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20))
    first = scanner(settle_seconds=60).scan(RecordingConsumer())
    assert first.stored == 0 and first.skipped == {SkipReason.SETTLING: 1}
    clock.advance(dt.timedelta(seconds=45))
    assert scanner(settle_seconds=60).scan(RecordingConsumer()).stored == 1


def test_a_time_in_the_future_does_not_settle_a_file(folder, index, scanner, clock: FakeClock):
    # the agent's clock runs an hour behind the file system's times
    put(folder / "skewed.jpg", b"from a PC whose clock is ahead", old=False)
    clock.set(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    first = scanner(settle_seconds=60).scan(RecordingConsumer())
    assert first.stored == 0 and first.settle_due_at == clock.now() + dt.timedelta(seconds=60)
