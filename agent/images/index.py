"""The local image index: what the scanner last saw of every file, and what the consumer stored.

One SQLite file in the agent's state dir (WAL, one connection, schema
version in `user_version`). Per file (keyed as in agent.images.paths):

- the latest observation (size, mtime in ns, file id) and since when it has
  been unchanged, by the agent's clock (the settle rule reads this);
- the stored version: the observation the consumer stored, its content ids
  and when; NULL until a first store. A file changed since keeps its stored
  version until the new one is stored, so the last good copy stays known;
- `deleted_at`: set when a pass no longer finds a stored file. Such a
  tombstone keeps the stored version: a folder restored after it was emptied
  is recognised path by path instead of looking like thousands of new files.
- `last_seen`: written with the row. A pass that finds a file unchanged
  writes nothing for it (a no-change pass over 100,000 files writes no rows),
  so a live row was seen at `last_pass_at` in `meta`; a tombstone's
  `last_seen` is the last pass that found it.

Writes are batched in small transactions (256 rows); a pass cut short leaves
every committed row true to what was on disk when it was written, and what
was not committed (a crash, a power cut with synchronous=NORMAL) only means
those files are read again next pass. A stored row whose chunks are still on
their way to the server (`Confirmations`) is held in memory and written only
once they are confirmed stored, so the batches commit without waiting for the
upload; `commit` waits for them all, and drops (counts in `rolled_back`) the
rows whose chunks never arrived. The index is a cache of
the disk and the server's snapshots: a corrupt file is moved aside and a new
one started (`rebuilt` says so), at the cost of reading every file once more.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Protocol

from agent.images.errors import IndexUnusable
from agent.images.identity import FileState
from agent.images.paths import relpath_of

log = logging.getLogger(__name__)

INDEX_FILE = "image-index.sqlite3"
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key             BLOB PRIMARY KEY,
    size            INTEGER NOT NULL,
    mtime_ns        INTEGER NOT NULL,
    file_id         TEXT NOT NULL,
    unchanged_since INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    content         TEXT,
    stored_size     INTEGER,
    stored_mtime_ns INTEGER,
    stored_file_id  TEXT,
    stored_at       INTEGER,
    deleted_at      INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS files_by_stored_id ON files (stored_file_id)
    WHERE content IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_SELECT_BY_KEY = (
    "SELECT key, size, mtime_ns, file_id, unchanged_since, last_seen, content, stored_size, "
    "stored_mtime_ns, stored_file_id, stored_at, deleted_at FROM files WHERE key = ?"
)
_SELECT_FIRST = (
    "SELECT key, size, mtime_ns, file_id, unchanged_since, last_seen, content, stored_size, "
    "stored_mtime_ns, stored_file_id, stored_at, deleted_at FROM files ORDER BY key LIMIT ?"
)
_SELECT_AFTER = (
    "SELECT key, size, mtime_ns, file_id, unchanged_since, last_seen, content, stored_size, "
    "stored_mtime_ns, stored_file_id, stored_at, deleted_at FROM files WHERE key > ? "
    "ORDER BY key LIMIT ?"
)
_SELECT_STORED_AS = (
    "SELECT key, size, mtime_ns, file_id, unchanged_since, last_seen, content, stored_size, "
    "stored_mtime_ns, stored_file_id, stored_at, deleted_at FROM files "
    "WHERE stored_file_id = ? AND content IS NOT NULL AND stored_size = ? "
    "AND stored_mtime_ns = ? LIMIT 8"
)
_SELECT_MERGE = (
    "SELECT key, size, mtime_ns, file_id, unchanged_since, content IS NOT NULL "
    "AND size = stored_size AND mtime_ns = stored_mtime_ns AND file_id = stored_file_id, "
    "deleted_at IS NULL FROM files WHERE key > ? ORDER BY key LIMIT ?"
)
_SELECT_STORED_ROWS = (
    "SELECT key, coalesce(stored_size, -1), coalesce(stored_mtime_ns, 0), content FROM files "
    "WHERE deleted_at IS NULL AND content IS NOT NULL ORDER BY key"
)
_UPSERT_STORED = (
    "INSERT OR REPLACE INTO files (key, size, mtime_ns, file_id, unchanged_since, last_seen, "
    "content, stored_size, stored_mtime_ns, stored_file_id, stored_at, deleted_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"
)
_BATCH = 256
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def to_us(when: dt.datetime) -> int:
    return (when - _EPOCH) // _US


def from_us(us: int) -> dt.datetime:
    return _EPOCH + us * _US


@dataclasses.dataclass(frozen=True)
class IndexEntry:
    """One row of the index."""

    key: bytes
    seen: FileState
    unchanged_since: dt.datetime
    last_seen: dt.datetime
    content_ids: tuple[str, ...] | None
    stored: FileState | None
    stored_at: dt.datetime | None
    deleted_at: dt.datetime | None

    @property
    def path(self) -> str:
        return relpath_of(self.key)

    @property
    def live(self) -> bool:
        return self.deleted_at is None

    @property
    def current(self) -> bool:
        """The latest observation is the stored version."""
        return self.content_ids is not None and self.stored == self.seen

    def stable(self, before: dt.datetime) -> bool:
        """Live, stored, and unchanged since `before` or earlier."""
        return self.live and self.current and self.unchanged_since <= before


class MergeRow(NamedTuple):
    """What a scan compares a file on disk with: a row read cheaply (no JSON, no datetimes)."""

    key: bytes
    seen: FileState
    unchanged_since_us: int
    current: bool  # the latest observation is the stored version
    live: bool

    def stable(self, before_us: int) -> bool:
        return self.live and self.current and self.unchanged_since_us <= before_us


def _entry(row: tuple[Any, ...]) -> IndexEntry:
    (key, size, mtime, fid, since, seen, content, s_size, s_mtime, s_fid, s_at, deleted) = row
    stored = FileState(s_size, s_mtime, s_fid) if content is not None else None
    return IndexEntry(
        key=bytes(key),
        seen=FileState(size, mtime, fid),
        unchanged_since=from_us(since),
        last_seen=from_us(seen),
        content_ids=tuple(json.loads(content)) if content is not None else None,
        stored=stored,
        stored_at=from_us(s_at) if s_at is not None else None,
        deleted_at=from_us(deleted) if deleted is not None else None,
    )


class StoredRows(NamedTuple):
    """Rows written by `ImageIndex.store` (files stored in a pass) and their bytes."""

    files: int = 0
    size: int = 0

    def plus(self, other: StoredRows) -> StoredRows:
        return StoredRows(self.files + other.files, self.size + other.size)


class Confirmations(Protocol):
    """Which stored rows may be written: the consumer numbers what it hands on (tickets,
    rising), and a row waits until its ticket is confirmed stored on the server."""

    def ticket(self) -> int:
        """The ticket of the file the consumer stored last (its row is written now)."""
        ...

    def confirmed(self) -> int:
        """Every ticket up to this is confirmed (does not wait)."""
        ...

    def confirm_all(self) -> int:
        """Send what waits and wait for it; `confirmed` then (lower after a failure)."""
        ...


class _Held(NamedTuple):
    ticket: int
    key: bytes
    state: FileState
    content_ids: tuple[str, ...]
    since: dt.datetime
    at: dt.datetime


class ImageIndex:
    """The SQLite-backed index; one per state dir, used by one pass at a time (`pass_lock`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rebuilt = False
        self.pass_lock = threading.Lock()
        # the image sync's uploader: a stored row waits for its chunks (module doc)
        self.confirmations: Confirmations | None = None
        self._pending = 0
        self._held: collections.deque[_Held] = collections.deque()
        self.rolled_back = StoredRows()  # stored rows dropped: their chunks did not arrive
        try:
            self._db = self._open()
        except sqlite3.OperationalError as exc:
            raise IndexUnusable(f"cannot open the image index {path} ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            self._db = self._rebuild(exc)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            (check,) = db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > _SCHEMA_VERSION:
                raise IndexUnusable(
                    f"the image index {self.path} was written by a newer agent (schema {version})"
                )
            if version < _SCHEMA_VERSION:
                db.executescript(
                    f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={_SCHEMA_VERSION};COMMIT;"
                )
        except BaseException:
            db.close()
            raise
        return db

    def _rebuild(self, cause: sqlite3.DatabaseError) -> sqlite3.Connection:
        aside = self.path.with_name(self.path.name + ".corrupt")
        log.error("image index %s is damaged (%s); moved to %s, anew", self.path, cause, aside)
        try:
            self.path.replace(aside)
            for suffix in ("-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            db = self._open()
        except (OSError, sqlite3.Error) as exc:
            raise IndexUnusable(
                f"cannot rebuild the damaged image index {self.path} ({exc})"
            ) from exc
        self.rebuilt = True
        return db

    def close(self) -> None:
        self.commit()
        self._db.close()

    def __enter__(self) -> ImageIndex:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writes, batched -------------------------------------------------------------

    def _write(self, sql: str, params: Iterable[object]) -> None:
        self._execute(sql, params)
        if self._pending >= _BATCH:
            self._commit_written()

    def _execute(self, sql: str, params: Iterable[object]) -> None:
        try:
            if self._pending == 0:
                self._db.execute("BEGIN")
            self._db.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise IndexUnusable(f"cannot write the image index {self.path} ({exc})") from exc
        self._pending += 1

    def commit(self) -> None:
        """Make every write so far durable (up to synchronous=NORMAL), the held stored rows
        too once their chunks are confirmed (waiting for them); those whose chunks did
        not arrive are dropped and counted in `rolled_back`."""
        if self._held:
            confirmations = self.confirmations
            self._release(confirmations.confirm_all() if confirmations is not None else 0)
            dropped = StoredRows(len(self._held), sum(h.state.size for h in self._held))
            self.rolled_back = self.rolled_back.plus(dropped)
            self._held.clear()
        self._commit_written()

    def _commit_written(self) -> None:
        """Commit what is written, the held rows confirmed by now included (no waiting)."""
        if self._held and self.confirmations is not None:
            self._release(self.confirmations.confirmed())
        if self._pending == 0:
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise IndexUnusable(f"cannot write the image index {self.path} ({exc})") from exc
        self._pending = 0

    def _release(self, confirmed: int) -> None:
        """Write the held rows whose tickets are confirmed (the oldest first)."""
        held = self._held
        while held and held[0].ticket <= confirmed:
            row = held.popleft()
            self._upsert_stored(
                row.key,
                row.state,
                row.content_ids,
                since=row.since,
                stored_at=row.at,
                at=row.at,
                write=self._execute,
            )

    def observe(self, key: bytes, state: FileState, *, since: dt.datetime) -> None:
        """Record `state` as the latest observation of `key`, unchanged since `since`."""
        self._write(
            "INSERT INTO files (key, size, mtime_ns, file_id, unchanged_since, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET size=excluded.size, "
            "mtime_ns=excluded.mtime_ns, file_id=excluded.file_id, "
            "unchanged_since=excluded.unchanged_since, last_seen=excluded.last_seen, "
            "deleted_at=NULL",
            (key, state.size, state.mtime_ns, state.file_id, to_us(since), to_us(since)),
        )

    def store(
        self,
        key: bytes,
        state: FileState,
        content_ids: Iterable[str],
        *,
        since: dt.datetime,
        at: dt.datetime,
    ) -> None:
        """Record that the consumer stored `key` as `state` with `content_ids` (batched; held
        until the consumer confirms the chunks stored)."""
        ids = tuple(content_ids)
        confirmations = self.confirmations
        if confirmations is not None:
            ticket = confirmations.ticket()
            if self._held or ticket > confirmations.confirmed():
                self._held.append(_Held(ticket, key, state, ids, since, at))
                self._release(confirmations.confirmed())
                return
        self._upsert_stored(key, state, ids, since=since, stored_at=at, at=at)

    def adopt(self, key: bytes, source: IndexEntry, *, at: dt.datetime) -> None:
        """Give `key` the stored version of `source` (the same file under another name)."""
        assert source.stored is not None and source.content_ids is not None
        self._upsert_stored(
            key,
            source.stored,
            source.content_ids,
            since=source.unchanged_since,
            stored_at=source.stored_at or at,
            at=at,
        )

    def _upsert_stored(
        self,
        key: bytes,
        state: FileState,
        content_ids: tuple[str, ...],
        *,
        since: dt.datetime,
        stored_at: dt.datetime,
        at: dt.datetime,
        write: Callable[[str, Iterable[object]], None] | None = None,
    ) -> None:
        s = (state.size, state.mtime_ns, state.file_id)
        (write or self._write)(
            _UPSERT_STORED,
            (key, *s, to_us(since), to_us(at), json.dumps(list(content_ids)), *s, to_us(stored_at)),
        )

    def retire(self, keys: Iterable[bytes], *, at: dt.datetime, last_seen: dt.datetime) -> None:
        """`keys` are gone from disk: stored ones become tombstones, the others are dropped."""
        for key in keys:
            self._write("DELETE FROM files WHERE key = ? AND content IS NULL", (key,))
            self._write(
                "UPDATE files SET deleted_at = ?, last_seen = ? WHERE key = ? "
                "AND deleted_at IS NULL",
                (to_us(at), to_us(last_seen), key),
            )

    def forget(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            self._write("DELETE FROM files WHERE key = ?", (key,))

    def prune_tombstones(self, before: dt.datetime) -> int:
        """Drop tombstones older than `before`; how many."""
        self.commit()
        try:
            cur = self._db.execute(
                "DELETE FROM files WHERE deleted_at IS NOT NULL AND deleted_at < ?",
                (to_us(before),),
            )
        except sqlite3.Error as exc:
            raise IndexUnusable(f"cannot write the image index {self.path} ({exc})") from exc
        return cur.rowcount

    def set_meta(self, name: str, value: str) -> None:
        self._write(
            "INSERT INTO meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    # -- reads -----------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise IndexUnusable(f"cannot read the image index {self.path} ({exc})") from exc

    def meta(self, name: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def get(self, key: bytes) -> IndexEntry | None:
        rows = self._rows(_SELECT_BY_KEY, (key,))
        return _entry(rows[0]) if rows else None

    def page(self, after: bytes | None, limit: int = 512) -> list[IndexEntry]:
        """Up to `limit` rows (tombstones too) with keys above `after`, in key order."""
        if after is None:
            rows = self._rows(_SELECT_FIRST, (limit,))
        else:
            rows = self._rows(_SELECT_AFTER, (after, limit))
        return [_entry(row) for row in rows]

    def merge_page(self, after: bytes, limit: int = 512) -> list[MergeRow]:
        """Up to `limit` rows (tombstones too) with keys above `after`, in key order."""
        return [
            MergeRow(bytes(k), FileState(size, mtime, fid), since, bool(current), bool(live))
            for k, size, mtime, fid, since, current, live in self._rows(
                _SELECT_MERGE, (after, limit)
            )
        ]

    def with_stored(self, state: FileState) -> list[IndexEntry]:
        """Rows (tombstones too) whose stored version is exactly `state`."""
        rows = self._rows(_SELECT_STORED_AS, (state.file_id, state.size, state.mtime_ns))
        return [_entry(row) for row in rows]

    def has_stored(self) -> bool:
        """Whether any row (a tombstone too) has a stored version."""
        return bool(self._rows("SELECT 1 FROM files WHERE content IS NOT NULL LIMIT 1"))

    def count_live(self) -> int:
        return int(self._rows("SELECT count(*) FROM files WHERE deleted_at IS NULL")[0][0])

    def count_stable(self, before: dt.datetime) -> tuple[int, int]:
        """Live files, and those stored and unchanged since `before` or earlier (see
        IndexEntry.stable): one read of the table."""
        rows = self._rows(
            "SELECT count(*), coalesce(sum(content IS NOT NULL AND size = stored_size "
            "AND mtime_ns = stored_mtime_ns AND file_id = stored_file_id "
            "AND unchanged_since <= ?), 0) FROM files WHERE deleted_at IS NULL",
            (to_us(before),),
        )
        return int(rows[0][0]), int(rows[0][1])

    def stored_rows(self) -> Iterator[tuple[bytes, int, int, str]]:
        """What `stored_entries` lists, raw and in one query: (key, stored size, stored mtime
        in ns, content ids as stored) of every live file with a stored version, in key
        order. Nothing may write to the index while this is read."""
        try:
            cursor = self._db.execute(_SELECT_STORED_ROWS)
            while rows := cursor.fetchmany(1024):
                yield from rows
        except sqlite3.Error as exc:
            raise IndexUnusable(f"cannot read the image index {self.path} ({exc})") from exc

    def stored_entries(self) -> Iterator[IndexEntry]:
        """Every live file with a stored version, in key order: what a snapshot lists."""
        after: bytes | None = None
        while page := self.page(after):
            after = page[-1].key
            yield from (e for e in page if e.live and e.content_ids is not None)
