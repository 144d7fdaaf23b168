"""One image-sync pass (agent.images.sync) over real temp folders into an in-memory store."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from agent.images.index import INDEX_FILE, ImageIndex
from agent.images.result import SkipReason
from agent.images.scanner import Scanner
from agent.images.sync import SyncOutcome, SyncSettings, run_sync
from agent.images.uploader import ImageUploader
from agent.offsite.bandwidth import TokenBucket
from agent.offsite.uploader import Uploader
from common.vault import IMAGES, SiteKeys, new_data_key, open_chunk, open_snapshot
from common.vault.chunking import chunk_bytes
from common.window import UploadWindow
from tests.support.clock import FakeClock
from tests.support.offsitestore import MemoryStore

MIB = 1 << 20
EACH_FILE = 128 << 10
"""A SEND_AFTER_FILE for tests whose files of a few hundred KB each go in a batch of their
own as the file ends (the default waits for a full batch of 6 MiB)."""


@pytest.fixture
def keys() -> SiteKeys:
    return SiteKeys.derive("shop-1", new_data_key())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC))


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def sync(
    folder: Path, state: Path, keys: SiteKeys, store: MemoryStore, clock: FakeClock
) -> SyncOutcome:
    clock.advance(dt.timedelta(minutes=30))
    settings = SyncSettings(folder=str(folder), settle_seconds=0, bandwidth_kbps=0)
    return run_sync(state, settings, keys, store, clock=clock, sleep=lambda s: None)


def chunk_ids(keys: SiteKeys, data: bytes) -> set[str]:
    """The keyed ids of `data`'s chunks as the site's image chunker cuts it."""
    return {keys.chunk_id(c) for c in chunk_bytes(data, IMAGES, keys.chunker_seed)}


def opened(store: MemoryStore, keys: SiteKeys, snapshot_id: str) -> dict[str, bytes]:
    """path -> content of every file of a committed snapshot, rebuilt from the store."""
    commit = store.snapshots[snapshot_id]
    snap = open_snapshot(keys, snapshot_id, commit.record, store.fetch)
    return {
        e.path: b"".join(open_chunk(keys, cid, store.fetch(cid)) for cid, _ in e.chunks)
        for e in snap.entries
    }


def test_first_pass_uploads_and_commits_a_snapshot_that_opens_to_the_files(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    files = {
        "a.jpg": os.urandom(300_000),
        "scans/b.pdf": os.urandom(2 * MIB + 123),
        "scans/empty.txt": b"",
        "Zoë/ünïcode.tif": b"x" * 70_000,
    }
    for name, data in files.items():
        write(folder / name, data)
    out = sync(folder, state, keys, store, clock)
    assert not out.result.failed and out.error == ""
    assert out.result.stored == 4
    assert out.snapshot_id in store.snapshots
    assert opened(store, keys, out.snapshot_id) == files
    assert out.sent.chunks_sent == len(store.chunks)
    assert store.snapshots[out.snapshot_id].entries == 4


def test_nothing_changed_sends_no_chunk_and_a_changed_file_only_its_new_chunks(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    big = bytearray(os.urandom(6 * MIB))
    write(folder / "big.bin", bytes(big))
    write(folder / "small.jpg", os.urandom(50_000))
    first = sync(folder, state, keys, store, clock)
    total = len(store.chunks)
    assert first.sent.chunks_sent == total > 3

    again = sync(folder, state, keys, store, clock)
    assert again.result.unchanged == 2 and again.result.bytes_read == 0
    assert again.sent.chunks_sent == 0
    # the folder is as the last snapshot lists it: no new snapshot, that one stays current
    assert again.snapshot_id == "" and not again.error and again.unchanged
    assert again.current_snapshot_id == first.snapshot_id
    assert again.summary == f"unchanged since snapshot {first.snapshot_id[:12]}"
    assert list(store.snapshots) == [first.snapshot_id]

    old_ids = chunk_ids(keys, bytes(big))
    big[-1000:] = os.urandom(1000)
    write(folder / "big.bin", bytes(big))
    new_ids = chunk_ids(keys, bytes(big))
    changed = sync(folder, state, keys, store, clock)
    assert changed.result.changed == 1
    # exactly the file's new chunks (its tail) and the changed manifest part
    assert 1 <= len(new_ids - old_ids) < len(new_ids)
    assert changed.sent.chunks_sent == len(new_ids - old_ids) + 1
    assert opened(store, keys, changed.snapshot_id)["big.bin"] == bytes(big)


@pytest.mark.parametrize("change", ["touched", "deleted", "renamed", "added", "none"])
def test_a_pass_commits_a_snapshot_exactly_when_the_manifest_would_differ(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock, change: str
) -> None:
    """The no-change check digests the index rows the manifest is made of: every change a
    manifest shows (an mtime alone, a deletion, a rename, a new file) commits a snapshot."""
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    for n in range(5):
        write(folder / f"d{n % 2}" / f"f{n}.jpg", os.urandom(1000 + n))
    first = sync(folder, state, keys, store, clock)
    target = folder / "d0" / "f2.jpg"
    if change == "touched":  # same bytes, new mtime: a new stored version, same chunks
        os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    elif change == "deleted":
        target.unlink()
    elif change == "renamed":
        target.rename(folder / "d1" / "moved.jpg")
    elif change == "added":
        write(folder / "d1" / "new.jpg", b"new")
    out = sync(folder, state, keys, store, clock)
    assert not out.error and not out.result.failed
    if change == "none":
        assert out.unchanged and out.current_snapshot_id == first.snapshot_id
        assert list(store.snapshots) == [first.snapshot_id]
        return
    assert out.snapshot_id and out.snapshot_id != first.snapshot_id
    assert len(opened(store, keys, out.snapshot_id)) == 5 - (change == "deleted") + (
        change == "added"
    )
    again = sync(folder, state, keys, store, clock)
    assert again.unchanged and again.current_snapshot_id == out.snapshot_id


def test_an_unchanged_pass_still_counts_the_files_no_manifest_can_list(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    write(folder / "ok.jpg", b"fine")
    write(folder / "bad\nname.jpg", b"a name a manifest cannot hold")
    first = sync(folder, state, keys, store, clock)
    again = sync(folder, state, keys, store, clock)
    assert first.unlisted == 1 and first.snapshot_id
    assert again.unchanged and again.unlisted == 1


def test_a_cut_connection_commits_nothing_and_the_next_pass_sends_only_what_is_missing(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.images.uploader.SEND_AFTER_FILE", EACH_FILE)
    folder, state = tmp_path / "img", tmp_path / "state"
    state.mkdir()
    for n in range(6):
        write(folder / f"f{n}.bin", os.urandom(1 * MIB + n))
    store = MemoryStore(fail_put_call=3, keep=0)
    cut = sync(folder, state, keys, store, clock)
    assert cut.result.aborted and cut.snapshot_id == ""
    assert store.snapshots == {}
    arrived = len(store.chunks)
    assert arrived > 0

    resumed = sync(folder, state, keys, store, clock)
    assert not resumed.result.failed and resumed.snapshot_id
    # no chunk that arrived before the cut is sent again
    assert store.chunks_received == len(store.chunks)
    assert resumed.sent.chunks_sent == len(store.chunks) - arrived
    assert sorted(opened(store, keys, resumed.snapshot_id)) == [f"f{n}.bin" for n in range(6)]


def test_a_file_rewritten_during_its_read_is_not_in_the_snapshot(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, store = tmp_path / "img", MemoryStore()
    write(folder / "stable.jpg", os.urandom(10_000))
    target = folder / "torn.bin"
    write(target, os.urandom(3 * MIB))
    blocks = 0

    def rewrite(size: int) -> None:
        nonlocal blocks
        blocks += 1
        if blocks == 2:  # stable.jpg is one block; this is torn.bin's first
            with target.open("r+b") as fh:
                fh.write(os.urandom(4096))
            os.utime(target, ns=(1, 1_000_000_000))

    with ImageIndex(tmp_path / INDEX_FILE) as index:
        scanner = Scanner(
            index, str(folder), settle_seconds=0, clock=clock, block_size=MIB, pace=rewrite
        )
        uploader = Uploader(keys, store, TokenBucket(0, clock=clock, sleep=lambda s: None))
        result = scanner.scan(ImageUploader(uploader))
        assert result.skipped.get(SkipReason.CHANGED_WHILE_READ) == 1
        assert result.stored == 1
        assert [e.path for e in index.stored_entries()] == ["stable.jpg"]


def test_memory_holds_one_batch_whatever_the_file_size(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, store = tmp_path / "img", MemoryStore()
    write(folder / "large.bin", os.urandom(12 * MIB))
    largest: list[int] = []
    real_put = store.put

    def put(chunks):  # type: ignore[no-untyped-def]
        largest.append(sum(len(c.data) for c in chunks))
        return real_put(chunks)

    store.put = put  # type: ignore[method-assign]
    with ImageIndex(tmp_path / INDEX_FILE) as index:
        scanner = Scanner(index, str(folder), settle_seconds=0, clock=clock)
        uploader = Uploader(
            keys, store, TokenBucket(0, clock=clock, sleep=lambda s: None), batch_bytes=2 * MIB
        )
        assert scanner.scan(ImageUploader(uploader)).stored == 1
    assert len(largest) >= 4
    assert max(largest) <= 4 * MIB + 1024  # a 2 MiB batch, or one chunk (4 MiB at most)


def test_a_missing_folder_fails_the_pass_and_commits_nothing(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    store = MemoryStore()
    (tmp_path / "state").mkdir()
    out = sync(tmp_path / "nope", tmp_path / "state", keys, store, clock)
    assert out.result.folder_missing and out.snapshot_id == "" and store.snapshots == {}


def test_chunks_the_server_lost_are_read_and_sent_again_after_a_refused_commit(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    write(folder / "a.jpg", os.urandom(40_000))
    write(folder / "b.jpg", os.urandom(40_000))
    first = sync(folder, state, keys, store, clock)
    entries = open_snapshot(
        keys, first.snapshot_id, store.snapshots[first.snapshot_id].record, store.fetch
    ).entries
    lost = next(e for e in entries if e.path == "b.jpg").chunks[0][0]
    del store.chunks[lost]  # gone from the server's store
    write(folder / "c.jpg", os.urandom(40_000))  # a change, so the pass commits

    refused = sync(folder, state, keys, store, clock)
    assert refused.snapshot_id == ""
    assert "lacks 1 chunks of 1 files stored earlier" in refused.error

    repaired = sync(folder, state, keys, store, clock)
    assert repaired.error == "" and repaired.result.stored == 1
    assert lost in store.chunks
    assert set(opened(store, keys, repaired.snapshot_id)) == {"a.jpg", "b.jpg", "c.jpg"}


def test_a_new_data_key_reads_and_sends_every_file_again(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    write(folder / "a.jpg", os.urandom(40_000))
    sync(folder, state, keys, store, clock)
    other = SiteKeys.derive("shop-1", new_data_key())
    again = sync(folder, state, other, store, clock)
    assert again.result.stored == 1 and again.sent.chunks_sent >= 2
    assert set(opened(store, other, again.snapshot_id)) == {"a.jpg"}


def test_upload_bandwidth_paces_the_pass_in_small_batches(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    # 8 MiB: at least 3 chunks whatever the keyed cut points (a chunk is at most 4 MiB and
    # two maximal chunks in a row are practically impossible); 3 MiB could be 2 chunks
    write(folder / "a.bin", os.urandom(8 * MIB))
    puts: list[tuple[int, int]] = []  # (chunks, sealed bytes) of each PutChunks
    real_put = store.put

    def put(chunks):  # type: ignore[no-untyped-def]
        puts.append((len(chunks), sum(len(c.data) for c in chunks)))
        return real_put(chunks)

    store.put = put  # type: ignore[method-assign]
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the clock moves only while the uploader waits
        slept.append(seconds)
        clock.advance(dt.timedelta(seconds=seconds))

    settings = SyncSettings(folder=str(folder), settle_seconds=0, bandwidth_kbps=800)
    out = run_sync(state, settings, keys, store, clock=clock, sleep=sleep)
    assert out.snapshot_id and out.sent.chunks_sent >= 3
    rate, burst = 100_000, 100_000  # 800 kbit/s in bytes, one second of burst
    assert sum(slept) == pytest.approx((out.sent.bytes_sent - burst) / rate)
    # under the limit a batch holds about 4 s of sending (400,000 bytes), or one chunk;
    # sealing adds well under 1 KiB a chunk
    assert len(puts) >= 3
    assert all(n == 1 or size <= 400_000 + 1024 * n for n, size in puts)


def budget_sync(
    folder: Path,
    state: Path,
    keys: SiteKeys,
    store: MemoryStore,
    clock: FakeClock,
    **settings: object,
) -> SyncOutcome:
    return run_sync(
        state,
        SyncSettings(folder=str(folder), settle_seconds=0, bandwidth_kbps=0, **settings),  # type: ignore[arg-type]
        keys,
        store,
        clock=clock,
        sleep=lambda s: None,
    )


def slow_batches(
    store: MemoryStore,
    clock: FakeClock,
    minutes: float,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> list[int]:
    """Each batch takes `minutes` by the clock as it goes out (a slow uplink), counted when
    the uploader takes it from its queue to ask MissingChunks about it: in the pass's
    thread, right after the stop check before the batch, so the stop checks see the clock
    in a fixed order (the question itself runs in the background, and counting there let
    a stop check see the clock before or after it, by chance). The sizes of the PutChunks
    calls."""
    real_put, calls = store.put, []

    def put(chunks):  # type: ignore[no-untyped-def]
        calls.append(len(chunks))
        return real_put(chunks)

    store.put = put  # type: ignore[method-assign]
    if minutes:
        assert monkeypatch is not None, "a slow uplink patches the uploader's ask"
        real_ask = Uploader._ask

        def ask(self, pending):  # type: ignore[no-untyped-def]
            clock.advance(dt.timedelta(minutes=minutes))
            return real_ask(self, pending)

        monkeypatch.setattr(Uploader, "_ask", ask)
    return calls


def test_a_pass_stops_at_its_time_budget_and_the_next_completes_without_reading_or_sending_again(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.images.uploader.SEND_AFTER_FILE", EACH_FILE)
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    files = {f"f{n}.bin": os.urandom(300_000 + n) for n in range(6)}
    for name, data in files.items():
        write(folder / name, data)
    slow_batches(store, clock, minutes=10, monkeypatch=monkeypatch)  # one batch per file

    cut = budget_sync(folder, state, keys, store, clock, max_pass_minutes=30)
    assert not cut.result.failed and cut.error == ""
    assert cut.incomplete == "the pass used its time budget of 30 min (images.max_pass_minutes)"
    assert cut.result.stored == 3 and cut.snapshot_id == cut.current_snapshot_id == ""
    assert store.snapshots == {}  # a partial manifest would look like mass deletion
    assert cut.summary.startswith("incomplete: the pass used its time budget of 30 min")
    assert cut.result.deleted == 0
    arrived = len(store.chunks)
    with ImageIndex(state / INDEX_FILE) as index:  # stored files are remembered, with ids
        assert sorted(e.path for e in index.stored_entries()) == ["f0.bin", "f1.bin", "f2.bin"]

    done = budget_sync(folder, state, keys, store, clock, max_pass_minutes=120)
    assert done.incomplete == "" and done.snapshot_id and not done.result.failed
    # f0-f2 stored, f3 seen when the budget ran out, f4 and f5 not reached
    assert (done.result.stored, done.result.unchanged, done.result.new) == (3, 4, 2)
    assert done.result.bytes_read == sum(len(files[f"f{n}.bin"]) for n in (3, 4, 5))
    assert store.chunks_received == len(store.chunks)  # nothing was sent twice
    assert done.sent.chunks_sent == len(store.chunks) - arrived
    assert opened(store, keys, done.snapshot_id) == files


def test_a_cut_mid_file_keeps_its_sent_chunks_and_the_next_pass_does_not_send_them_again(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock
) -> None:
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    data = os.urandom(8 * MIB)
    write(folder / "big.bin", data)
    calls = slow_batches(store, clock, minutes=0)
    reason = "the upload window (test) closed"
    with ImageIndex(state / INDEX_FILE) as index:
        scanner = Scanner(index, str(folder), settle_seconds=0, clock=clock)
        uploader = Uploader(
            keys,
            store,
            TokenBucket(0, clock=clock, sleep=lambda s: None),
            batch_bytes=1,  # every chunk its own batch
            should_stop=lambda: reason if store.asked >= 2 else "",  # after two batches
        )
        result = scanner.scan(ImageUploader(uploader))
        assert result.cut_short == reason and not result.failed and result.stored == 0
        assert list(index.stored_entries()) == []
    assert len(calls) == 2 and len(store.chunks) == 2  # two batches went before the stop

    done = sync(folder, state, keys, store, clock)
    assert done.snapshot_id and done.result.stored == 1
    assert store.chunks_received == len(store.chunks)  # the two were not sent again
    assert done.sent.chunks_present == 2
    assert opened(store, keys, done.snapshot_id) == {"big.bin": data}


def test_a_pass_stops_when_the_upload_window_closes_and_goes_on_when_it_opens(
    tmp_path: Path, keys: SiteKeys, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.images.uploader.SEND_AFTER_FILE", EACH_FILE)
    folder, state, store = tmp_path / "img", tmp_path / "state", MemoryStore()
    state.mkdir()
    for n in range(4):
        write(folder / f"f{n}.bin", os.urandom(200_000 + n))
    slow_batches(store, clock, minutes=10, monkeypatch=monkeypatch)
    window = UploadWindow.parse("08:00-09:45", tz=dt.UTC)
    clock.set(dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC))

    cut = budget_sync(folder, state, keys, store, clock, window=window)
    assert cut.incomplete == "the upload window (08:00-09:45 local time) closed"
    assert cut.result.stored == 2 and store.snapshots == {} and not cut.result.failed

    clock.set(dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC))  # the next evening's window
    done = budget_sync(folder, state, keys, store, clock, window=window)
    assert done.incomplete == "" and done.snapshot_id and done.result.stored == 2
    assert store.chunks_received == len(store.chunks)
