import datetime as dt

import pytest

from common.vault.backupset import (
    PART_CHUNKS,
    BackupInfo,
    StreamInfo,
    stream_entries,
    stream_refs,
)
from common.vault.errors import BadManifest
from common.vault.manifest import EntryOrder

WHEN = dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)
SHA = "ab" * 32


def refs(count: int, length: int = 4096) -> list[tuple[str, int]]:
    return [(f"{n:064x}", length) for n in range(count)]


def info(*sizes: int, method: str = "nbackup") -> BackupInfo:
    streams = tuple(
        StreamInfo(i, f"shop-L{i}.nbk.zst", size, SHA, level=i) for i, size in enumerate(sizes)
    )
    return BackupInfo("run-1", method, "/data/shop.fdb", SHA, 123, streams)


def test_tags_round_trip() -> None:
    original = info(10, 20)
    snap = original.snapshot_info("shop-1", WHEN)
    assert snap.source == "firebird" and snap.tags["run"] == "run-1"
    assert BackupInfo.from_snapshot_info(snap) == original


def test_streams_split_into_parts_and_back() -> None:
    first, second = refs(PART_CHUNKS * 2 + 5), refs(3, 100)
    entries = list(stream_entries(0, first)) + list(stream_entries(1, second))
    assert [e.path for e in entries] == [
        "stream-00/part-000000",
        "stream-00/part-000001",
        "stream-00/part-000002",
        "stream-01/part-000000",
    ]
    order = EntryOrder()
    for entry in entries:
        order.add(entry.check())  # sorted, no duplicates: a valid manifest
    back = stream_refs(info(len(first) * 4096, 300), entries)
    assert back == [first, second]


def test_empty_stream_is_one_empty_part() -> None:
    entries = list(stream_entries(0, []))
    assert [e.path for e in entries] == ["stream-00/part-000000"]
    assert stream_refs(info(0, method="gbak"), entries) == [[]]


def test_a_missing_part_is_refused() -> None:
    entries = list(stream_entries(0, refs(PART_CHUNKS * 3)))
    del entries[1]
    with pytest.raises(BadManifest, match="out of sequence"):
        stream_refs(info(PART_CHUNKS * 3 * 4096, method="gbak"), entries)


def test_a_size_unlike_the_record_is_refused() -> None:
    entries = list(stream_entries(0, refs(3)))
    with pytest.raises(BadManifest, match="recorded"):
        stream_refs(info(5, method="gbak"), entries)


def test_a_missing_stream_is_refused() -> None:
    entries = list(stream_entries(0, refs(1)))
    with pytest.raises(BadManifest, match="no parts"):
        stream_refs(info(4096, 10), entries)


def test_other_snapshots_are_not_database_ones() -> None:
    snap = info(1).snapshot_info("shop-1", WHEN)
    other = type(snap)(site="shop-1", created=WHEN, source="images", tags={})
    with pytest.raises(BadManifest, match="not a database backup"):
        BackupInfo.from_snapshot_info(other)
    bad = type(snap)(site="shop-1", created=WHEN, source="firebird", tags={"run": "x"})
    with pytest.raises(BadManifest, match="no tag"):
        BackupInfo.from_snapshot_info(bad)


@pytest.mark.parametrize(
    "change",
    [
        {"run_id": "bad id with spaces"},
        {"method": "copy"},
        {"backup_sha256": "xyz"},
        {"streams": ()},
    ],
)
def test_bad_backup_info_is_refused(change: dict[str, object]) -> None:
    import dataclasses

    with pytest.raises(BadManifest):
        dataclasses.replace(info(1), **change).check()  # type: ignore[arg-type]
