"""The off-site store's index (site keys, blob index, snapshots) in SQL.

These writes run in their own short transactions in worker threads, never in the
batch writer's queue: a chunk upload never holds up check-ins and reports, and a
burst of uploads is not slowed by the group-commit pause of the hot path.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from common.clock import utc
from common.errors import NotFound
from server.domain.offsite import ChunkRecord, SiteKeyRecord, SnapshotRecord
from server.domain.store_gc import STORED
from server.state import offsite_facts
from server.state.sites import insert_ignore, site_id_of
from server.state.snapshot_refs import batches, rescue, tally
from server.state.store_base import StoreState
from server.state.tables import CHUNKS, DAMAGE, SITE_KEYS, SITES, SNAPSHOTS
from server.state.threaded import ThreadedSql

# The statements of every upload batch, built once: a statement built per call cost more
# Python than running it (expressions, then their cache key, every time).
_CHUNK_ROWS = select(
    CHUNKS.c.chunk_id,
    CHUNKS.c.size,
    CHUNKS.c.sha256,
    CHUNKS.c.state,
    CHUNKS.c.digest_algorithm,
).where(
    CHUNKS.c.site_id == bindparam("site_id"),
    CHUNKS.c.chunk_id.in_(bindparam("ids", expanding=True)),
)


@functools.cache
def _add_chunk_rows(dialect: str) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING chunk_id on chunks, for `dialect`."""
    return insert_ignore(dialect, CHUNKS).returning(CHUNKS.c.chunk_id)


class SqlStoreState(ThreadedSql, StoreState):
    """StoreState on the fleet's database (SQLite or PostgreSQL)."""

    async def _insert(
        self,
        table: Any,
        values: dict[str, Any],
        *,
        after: Callable[[Connection, int], None] | None = None,
    ) -> bool:
        """Insert the row unless its key is stored; `after(conn, site_id)` runs in the same
        transaction when it was inserted."""

        def fn(conn: Connection) -> bool:
            try:
                stmt = insert_ignore(conn, table).values(**values).returning(table.c.site_id)
                # RETURNING, not rowcount: through SQLAlchemy on PostgreSQL the rowcount
                # of a conflicting insert here was not 0 (test_store_state caught it)
                inserted = conn.execute(stmt).first() is not None
            except IntegrityError:  # the site row is gone: a foreign key refused it
                raise NotFound("the site of this agent no longer exists") from None
            if inserted and after is not None:
                after(conn, values["site_id"])
            return inserted

        return await self._write(fn)

    async def site_id(self, site: str) -> int:
        return await self._read(lambda conn: site_id_of(conn, site))

    async def add_site_key(self, site_id: int, key: SiteKeyRecord) -> bool:
        return await self._insert(
            SITE_KEYS,
            {
                "site_id": site_id,
                "data_key_id": key.data_key_id,
                "sealed_key": key.sealed_key,
                "recovery_key_fingerprint": key.recovery_key_fingerprint,
                "created_at": key.created_at,
            },
        )

    async def site_key(self, site_id: int, data_key_id: str) -> SiteKeyRecord | None:
        def fn(conn: Connection) -> SiteKeyRecord | None:
            row = conn.execute(
                select(SITE_KEYS).where(
                    SITE_KEYS.c.site_id == site_id, SITE_KEYS.c.data_key_id == data_key_id
                )
            ).first()
            return None if row is None else _key(row)

        return await self._read(fn)

    async def site_keys(self, site: str) -> list[SiteKeyRecord]:
        def fn(conn: Connection) -> list[SiteKeyRecord]:
            site_id = site_id_of(conn, site)
            rows = conn.execute(
                select(SITE_KEYS)
                .where(SITE_KEYS.c.site_id == site_id)
                .order_by(SITE_KEYS.c.created_at, SITE_KEYS.c.data_key_id)
            )
            return [_key(r) for r in rows]

        return await self._read(fn)

    async def chunks(self, site_id: int, ids: Sequence[str]) -> dict[str, ChunkRecord]:
        wanted = list(dict.fromkeys(ids))

        def fn(conn: Connection) -> dict[str, ChunkRecord]:
            found: dict[str, ChunkRecord] = {}
            for batch in batches(wanted):
                rows = conn.execute(_CHUNK_ROWS, {"site_id": site_id, "ids": batch})
                for r in rows:
                    found[r.chunk_id] = ChunkRecord(
                        r.chunk_id, int(r.size), r.sha256, r.state, r.digest_algorithm
                    )
            return found

        return await self._read(fn) if wanted else {}

    async def indexed(self, site_id: int, ids: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(ids))

        def fn(conn: Connection) -> set[str]:
            found: set[str] = set()
            for batch in batches(wanted):
                query = select(CHUNKS.c.chunk_id).where(
                    CHUNKS.c.site_id == site_id, CHUNKS.c.chunk_id.in_(batch)
                )
                found.update(conn.execute(query).scalars().all())
            return found

        return await self._read(fn) if wanted else set()

    async def add_chunk(self, site_id: int, chunk: ChunkRecord, now: dt.datetime) -> bool:
        return await self._insert(
            CHUNKS,
            {
                "site_id": site_id,
                "chunk_id": chunk.chunk_id,
                "size": chunk.size,
                "sha256": chunk.digest,
                "digest_algorithm": chunk.algorithm,
                "stored_at": now,
            },
        )

    async def add_chunks(
        self, site_id: int, chunks: Sequence[ChunkRecord], now: dt.datetime
    ) -> set[str]:
        rows = [
            {
                "site_id": site_id,
                "chunk_id": c.chunk_id,
                "size": c.size,
                "sha256": c.digest,
                "digest_algorithm": c.algorithm,
                "stored_at": now,
            }
            for c in chunks
        ]

        def fn(conn: Connection) -> set[str]:
            # the rows apart from the statement (executemany): it is compiled once, where
            # rows inside it (.values(rows)) had it compiled again for every batch
            try:
                return set(conn.execute(_add_chunk_rows(conn.dialect.name), rows).scalars())
            except IntegrityError:  # the site row is gone: a foreign key refused it
                raise NotFound("the site of this agent no longer exists") from None

        return await self._write(fn) if rows else set()

    async def rescue_chunks(self, site_id: int, ids: Sequence[str]) -> set[str]:
        def fn(conn: Connection) -> set[str]:
            acquit_chunks(conn, site_id, ids)
            stored: set[str] = set()
            for batch in batches(ids):
                rows = conn.execute(
                    select(CHUNKS.c.chunk_id).where(
                        CHUNKS.c.site_id == site_id,
                        CHUNKS.c.chunk_id.in_(batch),
                        CHUNKS.c.state == STORED,
                    )
                )
                stored.update(r.chunk_id for r in rows)
            return stored

        return await self._write(fn) if ids else set()

    async def rescue_chunk(self, site_id: int, chunk_id: str) -> bool:
        def fn(conn: Connection) -> bool:
            acquit_chunks(conn, site_id, [chunk_id])
            state = conn.execute(
                select(CHUNKS.c.state).where(
                    CHUNKS.c.site_id == site_id, CHUNKS.c.chunk_id == chunk_id
                )
            ).scalar()
            return state == STORED

        return await self._write(fn)

    async def unstored(self, site_id: int, ids: Sequence[str]) -> list[str]:
        def fn(conn: Connection) -> list[str]:
            return tally(conn, site_id, ids).missing

        return await self._read(fn) if ids else []

    async def commit_snapshot(
        self, site_id: int, snap: SnapshotRecord, references: Sequence[str]
    ) -> tuple[bool, list[str]]:
        def fn(conn: Connection) -> tuple[bool, list[str]]:
            # the insert first: on SQLite it takes the write lock before anything is read,
            # so no sweep runs between the check and the commit. On PostgreSQL the rescue
            # locks the condemned rows it clears and re-checks them (a sweep that moved one
            # to `deleting` first makes it missing); a chunk not condemned cannot reach
            # `deleting` sooner than the margin. Missing references roll the insert back.
            stmt = (
                insert_ignore(conn, SNAPSHOTS)
                .values(site_id=site_id, **_snapshot_values(snap))
                .returning(SNAPSHOTS.c.site_id)
            )
            if conn.execute(stmt).first() is None:
                return False, []  # the site has this snapshot already
            found = tally(conn, site_id, references)
            rescued = rescue(conn, site_id, found.condemned) if found.condemned else set()
            missing = found.missing + [c for c in found.condemned if c not in rescued]
            if missing:
                raise _Refused(missing)
            conn.execute(
                update(SNAPSHOTS)
                .where(SNAPSHOTS.c.site_id == site_id, SNAPSHOTS.c.snapshot_id == snap.snapshot_id)
                .values(stored_bytes=found.stored_bytes)
            )
            if snap.kind == "database":
                # the site's last off-site copy moves in the same transaction
                _refresh_offsite(conn, site_id)
            return True, []

        try:
            return await self._write(fn)
        except _Refused as refused:
            return False, refused.missing

    async def snapshot(self, site_id: int, snapshot_id: str) -> SnapshotRecord | None:
        def fn(conn: Connection) -> SnapshotRecord | None:
            row = conn.execute(
                select(SNAPSHOTS).where(
                    SNAPSHOTS.c.site_id == site_id, SNAPSHOTS.c.snapshot_id == snapshot_id
                )
            ).first()
            return None if row is None else snapshot_of(row)

        return await self._read(fn)

    async def add_snapshot(self, site_id: int, snap: SnapshotRecord) -> bool:
        # a database copy moves the site's last off-site copy, in the same transaction
        after = _refresh_offsite if snap.kind == "database" else None
        return await self._insert(
            SNAPSHOTS, {"site_id": site_id, **_snapshot_values(snap)}, after=after
        )

    async def find_snapshot(self, site: str, snapshot_id: str) -> SnapshotRecord:
        def fn(conn: Connection) -> SnapshotRecord:
            site_id = site_id_of(conn, site)
            row = conn.execute(
                select(SNAPSHOTS).where(
                    SNAPSHOTS.c.site_id == site_id, SNAPSHOTS.c.snapshot_id == snapshot_id
                )
            ).first()
            if row is None:
                raise NotFound(f"site {site} has no snapshot {snapshot_id}")
            return snapshot_of(row)

        return await self._read(fn)

    async def copy_of_backup(self, site: str, backup_run_id: str) -> SnapshotRecord | None:
        def fn(conn: Connection) -> SnapshotRecord | None:
            site_id = site_id_of(conn, site)
            row = conn.execute(
                select(SNAPSHOTS)
                .where(
                    SNAPSHOTS.c.site_id == site_id,
                    SNAPSHOTS.c.kind == "database",
                    SNAPSHOTS.c.backup_run_id == backup_run_id,
                )
                .order_by(SNAPSHOTS.c.created_at.desc(), SNAPSHOTS.c.committed_at.desc())
                .limit(1)
            ).first()
            return None if row is None else snapshot_of(row)

        return await self._read(fn)

    async def sites_with_chunks(self) -> list[tuple[int, str]]:
        def fn(conn: Connection) -> list[tuple[int, str]]:
            having = select(CHUNKS.c.site_id).where(CHUNKS.c.site_id == SITES.c.id).exists()
            rows = conn.execute(
                select(SITES.c.id, SITES.c.name).where(having).order_by(SITES.c.name)
            )
            return [(int(r.id), str(r.name)) for r in rows]

        return await self._read(fn)

    async def count_chunks(self, site_id: int, ranges: Sequence[tuple[str, str | None]]) -> int:
        def fn(conn: Connection) -> int:
            total = 0
            for low, high in ranges:
                query = (
                    select(func.count()).select_from(CHUNKS).where(*_in_range(site_id, low, high))
                )
                total += int(conn.execute(query).scalar_one())
            return total

        return await self._read(fn)

    async def chunk_page(
        self, site_id: int, low: str, high: str | None, after: str, limit: int
    ) -> list[ChunkRecord]:
        def fn(conn: Connection) -> list[ChunkRecord]:
            query = (
                select(CHUNKS.c.chunk_id, CHUNKS.c.size, CHUNKS.c.sha256, CHUNKS.c.digest_algorithm)
                .where(*_in_range(site_id, max(low, after), high))
                .order_by(CHUNKS.c.chunk_id)
                .limit(limit)
            )
            if after:
                query = query.where(CHUNKS.c.chunk_id > after)
            return [
                ChunkRecord(r.chunk_id, int(r.size), r.sha256, algorithm=r.digest_algorithm)
                for r in conn.execute(query)
            ]

        return await self._read(fn)

    async def all_snapshots(self, site_id: int) -> list[SnapshotRecord]:
        def fn(conn: Connection) -> list[SnapshotRecord]:
            rows = conn.execute(select(SNAPSHOTS).where(SNAPSHOTS.c.site_id == site_id))
            return [snapshot_of(r) for r in rows]

        return await self._read(fn)

    async def check_state(self, site_id: int) -> tuple[str, dict[str, str]]:
        def fn(conn: Connection) -> tuple[str, dict[str, str]]:
            cursor = conn.execute(
                select(SITES.c.store_check_cursor).where(SITES.c.id == site_id)
            ).scalar()
            rows = conn.execute(
                select(DAMAGE.c.chunk_id, DAMAGE.c.state).where(DAMAGE.c.site_id == site_id)
            )
            return str(cursor or ""), {r.chunk_id: r.state for r in rows}

        return await self._read(fn)

    async def record_check(
        self, site_id: int, *, damage: dict[str, str], summary: str, cursor: str, now: dt.datetime
    ) -> None:
        def fn(conn: Connection) -> None:
            conn.execute(
                select(SITES.c.id).where(SITES.c.id == site_id).with_for_update()
            )  # one check's findings at a time per site (PostgreSQL)
            conn.execute(delete(DAMAGE).where(DAMAGE.c.site_id == site_id))
            if damage:
                conn.execute(
                    insert(DAMAGE),
                    [
                        {"site_id": site_id, "chunk_id": c, "state": s, "found_at": now}
                        for c, s in sorted(damage.items())
                    ],
                )
            conn.execute(
                update(SITES)
                .where(SITES.c.id == site_id)
                .values(
                    store_damaged_chunks=len(damage),
                    store_damage_summary=summary,
                    store_check_cursor=cursor,
                )
            )

        await self._write(fn)

    async def list_snapshots(self, site: str, *, kind: str, limit: int) -> list[SnapshotRecord]:
        def fn(conn: Connection) -> list[SnapshotRecord]:
            site_id = site_id_of(conn, site)
            query = select(SNAPSHOTS).where(SNAPSHOTS.c.site_id == site_id)
            if kind:
                query = query.where(SNAPSHOTS.c.kind == kind)
            query = query.order_by(
                SNAPSHOTS.c.created_at.desc(), SNAPSHOTS.c.committed_at.desc()
            ).limit(limit)
            return [snapshot_of(r) for r in conn.execute(query)]

        return await self._read(fn)


def _in_range(site_id: int, low: str, high: str | None) -> list[Any]:
    where = [CHUNKS.c.site_id == site_id]
    if low:
        where.append(CHUNKS.c.chunk_id >= low)
    if high is not None:
        where.append(CHUNKS.c.chunk_id < high)
    return where


def _refresh_offsite(conn: Connection, site_id: int) -> None:
    offsite_facts.refresh(conn, site_id)


def _key(row: Row[Any]) -> SiteKeyRecord:
    return SiteKeyRecord(
        data_key_id=row.data_key_id,
        sealed_key=row.sealed_key,
        recovery_key_fingerprint=row.recovery_key_fingerprint,
        created_at=utc(row.created_at),
    )


def snapshot_of(row: Row[Any]) -> SnapshotRecord:
    return SnapshotRecord(
        snapshot_id=row.snapshot_id,
        kind=row.kind,
        created_at=utc(row.created_at),
        committed_at=utc(row.committed_at),
        entries=int(row.entries),
        size=int(row.size),
        data_key_id=row.data_key_id,
        backup_run_id=row.backup_run_id,
        chunks=int(row.chunks),
        stored_bytes=int(row.stored_bytes),
        record_sha256=row.record_sha256,
    )


class _Refused(Exception):
    """A commit's references are not all stored: its transaction is rolled back."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"{len(missing)} references missing")
        self.missing = missing


def _snapshot_values(snap: SnapshotRecord) -> dict[str, Any]:
    return {
        "snapshot_id": snap.snapshot_id,
        "kind": snap.kind,
        "created_at": snap.created_at,
        "committed_at": snap.committed_at,
        "entries": snap.entries,
        "size": snap.size,
        "data_key_id": snap.data_key_id,
        "backup_run_id": snap.backup_run_id,
        "chunks": snap.chunks,
        "stored_bytes": snap.stored_bytes,
        "record_sha256": snap.record_sha256,
    }


def acquit_chunks(conn: Connection, site_id: int, ids: Sequence[str]) -> int:
    """Clear the condemnation of those of `ids` still stored (rows locked as updated)."""
    done = 0
    for batch in batches(ids):
        done += conn.execute(
            update(CHUNKS)
            .where(
                CHUNKS.c.site_id == site_id,
                CHUNKS.c.chunk_id.in_(batch),
                CHUNKS.c.state == STORED,
                CHUNKS.c.condemned_at.is_not(None),
            )
            .values(condemned_at=None)
        ).rowcount
    return done
