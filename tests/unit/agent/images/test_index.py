"""The local index: schema version, batches, tombstones, a damaged file."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest

from agent.images.errors import IndexUnusable
from agent.images.identity import FileState
from agent.images.index import INDEX_FILE, ImageIndex, StoredRows

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
A = FileState(10, 123_456_789_012_345_678, "803:1f")


def test_store_then_read_back_exactly(tmp_path):
    with ImageIndex(tmp_path / INDEX_FILE) as index:
        index.observe(b"x\0a.jpg", A, since=T0)
        assert index.get(b"x\0a.jpg").content_ids is None
        index.store(b"x\0a.jpg", A, ["c1", "c2"], since=T0, at=T0 + dt.timedelta(seconds=1))
    with ImageIndex(tmp_path / INDEX_FILE) as index:
        entry = index.get(b"x\0a.jpg")
        assert entry.path == "x/a.jpg" and entry.seen == entry.stored == A
        assert entry.content_ids == ("c1", "c2") and entry.current
        assert entry.unchanged_since == T0 and entry.stored_at == T0 + dt.timedelta(seconds=1)
        assert sqlite3.connect(tmp_path / INDEX_FILE).execute("PRAGMA journal_mode").fetchone() == (
            "wal",
        )


def test_writes_are_committed_in_small_batches(tmp_path):
    path = tmp_path / INDEX_FILE
    index = ImageIndex(path)
    other = sqlite3.connect(path)
    index.observe(b"pending", A, since=T0)
    index.store(b"stored", A, ["c"], since=T0, at=T0)
    assert other.execute("SELECT count(*) FROM files").fetchone() == (0,)
    for i in range(300):
        index.observe(f"{i}".encode(), A, since=T0)
    assert other.execute("SELECT count(*) FROM files").fetchone() == (256,)
    index.commit()
    assert other.execute("SELECT count(*) FROM files").fetchone() == (302,)
    index.close()


class Tickets:
    """The uploader's side of `Confirmations`, scripted: what is handed on and confirmed."""

    def __init__(self) -> None:
        self.handed = 0
        self.stored = 0
        self.arrives = True  # confirm_all gets everything handed on stored
        self.waited = 0

    def ticket(self) -> int:
        return self.handed

    def confirmed(self) -> int:
        return self.stored

    def confirm_all(self) -> int:
        self.waited += 1
        if self.arrives:
            self.stored = self.handed
        return self.stored


def stored_paths(path):
    rows = sqlite3.connect(path).execute("SELECT key FROM files WHERE content IS NOT NULL")
    return sorted(bytes(k).decode() for (k,) in rows)


def test_a_stored_row_waits_for_its_chunks_and_batches_commit_without_waiting(tmp_path):
    """A row is written once its ticket is confirmed; the 256-row commits never wait."""
    path = tmp_path / INDEX_FILE
    tickets = Tickets()
    with ImageIndex(path) as index:
        index.confirmations = tickets
        tickets.handed = 1
        index.store(b"first", A, ["c"], since=T0, at=T0)  # its batch is on the wire
        for i in range(300):
            index.observe(f"seen{i}".encode(), A, since=T0)
        assert tickets.waited == 0  # the batch commit did not wait for the upload
        assert stored_paths(path) == []  # committed: the observations, not the held row
        tickets.stored = 1
        tickets.handed = 2
        index.store(b"second", A, ["d"], since=T0, at=T0)  # writes "first" on its way
        for i in range(300):
            index.observe(f"more{i}".encode(), A, since=T0)
        assert stored_paths(path) == ["first"] and tickets.waited == 0
        index.commit()  # waits for what is held
        assert tickets.waited == 1 and stored_paths(path) == ["first", "second"]
        assert index.rolled_back == StoredRows()
        index.confirmations = None


def test_rows_whose_chunks_never_arrived_are_dropped_and_counted(tmp_path):
    """The pass's figures subtract what was dropped (a failed send); the rest is kept."""
    B = FileState(2_000, 123_456_789_012_345_679, "803:20")
    path = tmp_path / INDEX_FILE
    tickets = Tickets()
    with ImageIndex(path) as index:
        index.confirmations = tickets
        tickets.handed = 1
        index.store(b"kept", A, ["c"], since=T0, at=T0)
        tickets.stored = 1  # batch 1 landed; batches 2 and 3 fail
        tickets.arrives = False
        index.observe(b"seen", A, since=T0)  # not a stored row: kept, not counted
        tickets.handed = 2
        index.store(b"lost1", A, ["c"], since=T0, at=T0)
        tickets.handed = 3
        index.store(b"lost2", B, ["d"], since=T0, at=T0)
        index.commit()
        assert index.rolled_back == StoredRows(2, 10 + 2_000)
        assert [e.path for e in index.stored_entries()] == ["kept"]
        assert index.get(b"seen") is not None
        index.confirmations = None
        index.store(b"later", A, ["c"], since=T0, at=T0)
        index.commit()
        assert index.rolled_back == StoredRows(2, 2_010)  # a commit drops nothing more
    assert stored_paths(path) == ["kept", "later"]


def test_retire_keeps_stored_files_as_tombstones_and_drops_the_rest(tmp_path):
    with ImageIndex(tmp_path / INDEX_FILE) as index:
        index.observe(b"never-stored", A, since=T0)
        index.store(b"stored", A, ["c"], since=T0, at=T0)
        index.retire([b"never-stored", b"stored"], at=T0 + dt.timedelta(hours=1), last_seen=T0)
        assert index.get(b"never-stored") is None
        tomb = index.get(b"stored")
        assert not tomb.live and tomb.last_seen == T0 and tomb.content_ids == ("c",)
        assert index.count_live() == 0 and list(index.stored_entries()) == []
        assert index.prune_tombstones(T0 + dt.timedelta(hours=2)) == 1


def test_an_index_from_a_newer_agent_is_refused(tmp_path):
    path = tmp_path / INDEX_FILE
    ImageIndex(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(IndexUnusable, match="newer agent"):
        ImageIndex(path)


def test_a_damaged_index_is_moved_aside_and_started_anew(tmp_path):
    path = tmp_path / INDEX_FILE
    path.write_bytes(b"this is not a database" * 100)
    with ImageIndex(path) as index:
        assert index.rebuilt and index.count_live() == 0
    assert (tmp_path / (INDEX_FILE + ".corrupt")).exists()


def test_an_unwritable_place_is_one_clear_error(tmp_path):
    with pytest.raises(IndexUnusable, match="cannot open the image index"):
        ImageIndex(tmp_path / "no-such-dir" / INDEX_FILE)
