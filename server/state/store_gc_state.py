"""The off-site store's maintenance in SQL (SQLite and PostgreSQL).

The transition of condemned chunks to `deleting` is one UPDATE whose WHERE repeats
the conditions: on PostgreSQL the UPDATE locks each row and re-checks them after
waiting for a commit that rescued the chunk (READ COMMITTED re-evaluation); on SQLite
the database's write lock orders the two whole transactions.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy import Connection, delete, func, insert, or_, select, text, update

from common.clock import utc
from server.domain.offsite import SnapshotRecord
from server.domain.store_gc import DELETING, STORED, ChunkRow, MaintenanceRunRecord
from server.state.sites import insert_ignore
from server.state.snapshot_refs import batches
from server.state.store_gc_base import StoreGcState
from server.state.store_state import acquit_chunks, snapshot_of
from server.state.tables import CHUNKS, DAMAGE, LEASES, MAINTENANCE_RUNS, RUNS, SITES, SNAPSHOTS
from server.state.threaded import ThreadedSql


class SqlStoreGcState(ThreadedSql, StoreGcState):
    """StoreGcState on the fleet's database."""

    async def sites(self) -> list[tuple[int, str, str]]:
        def fn(conn: Connection) -> list[tuple[int, str, str]]:
            used = or_(
                select(CHUNKS.c.site_id).where(CHUNKS.c.site_id == SITES.c.id).exists(),
                select(SNAPSHOTS.c.site_id).where(SNAPSHOTS.c.site_id == SITES.c.id).exists(),
            )
            rows = conn.execute(
                select(SITES.c.id, SITES.c.name, SITES.c.group).where(used).order_by(SITES.c.name)
            )
            return [(int(r.id), str(r.name), str(r.group)) for r in rows]

        return await self._read(fn)

    async def snapshots_of(self, site_id: int) -> list[SnapshotRecord]:
        def fn(conn: Connection) -> list[SnapshotRecord]:
            rows = conn.execute(select(SNAPSHOTS).where(SNAPSHOTS.c.site_id == site_id))
            return [snapshot_of(r) for r in rows]

        return await self._read(fn)

    async def good_runs(self, site_id: int, run_ids: Sequence[str]) -> dict[str, bool]:
        wanted = [r for r in dict.fromkeys(run_ids) if r]

        def fn(conn: Connection) -> dict[str, bool]:
            found: dict[str, bool] = {}
            for batch in batches(wanted):
                rows = conn.execute(
                    select(RUNS.c.id, RUNS.c.outcome, RUNS.c.verification).where(
                        RUNS.c.site_id == site_id,
                        RUNS.c.kind == "backup",
                        RUNS.c.id.in_(batch),
                    )
                )
                for r in rows:
                    found[r.id] = r.outcome == "succeeded" and r.verification == "passed"
            return found

        return await self._read(fn) if wanted else {}

    async def snapshot_exists(self, site_id: int, snapshot_id: str) -> bool:
        def fn(conn: Connection) -> bool:
            found = conn.execute(
                select(SNAPSHOTS.c.snapshot_id).where(
                    SNAPSHOTS.c.site_id == site_id, SNAPSHOTS.c.snapshot_id == snapshot_id
                )
            ).first()
            return found is not None

        return await self._read(fn)

    async def known_chunks(self, site_id: int, ids: Sequence[str]) -> set[str]:
        def fn(conn: Connection) -> set[str]:
            found: set[str] = set()
            for batch in batches(ids):
                rows = conn.execute(
                    select(CHUNKS.c.chunk_id).where(
                        CHUNKS.c.site_id == site_id, CHUNKS.c.chunk_id.in_(batch)
                    )
                )
                found.update(r.chunk_id for r in rows)
            return found

        return await self._read(fn) if ids else set()

    async def forget_snapshot(self, site_id: int, snapshot_id: str) -> bool:
        def fn(conn: Connection) -> bool:
            gone = conn.execute(
                delete(SNAPSHOTS).where(
                    SNAPSHOTS.c.site_id == site_id, SNAPSHOTS.c.snapshot_id == snapshot_id
                )
            )
            return bool(gone.rowcount)

        return await self._write(fn)

    async def chunk_page(self, site_id: int, *, after: str, limit: int) -> list[ChunkRow]:
        def fn(conn: Connection) -> list[ChunkRow]:
            rows = conn.execute(
                select(CHUNKS)
                .where(CHUNKS.c.site_id == site_id, CHUNKS.c.chunk_id > after)
                .order_by(CHUNKS.c.chunk_id)
                .limit(limit)
            )
            return [
                ChunkRow(
                    chunk_id=r.chunk_id,
                    size=int(r.size),
                    stored_at=utc(r.stored_at),
                    condemned_at=None if r.condemned_at is None else utc(r.condemned_at),
                    state=r.state,
                )
                for r in rows
            ]

        return await self._read(fn)

    async def condemn(
        self, site_id: int, ids: Sequence[str], *, now: dt.datetime, stored_before: dt.datetime
    ) -> int:
        def fn(conn: Connection) -> int:
            done = 0
            for batch in batches(ids):
                done += conn.execute(
                    update(CHUNKS)
                    .where(
                        CHUNKS.c.site_id == site_id,
                        CHUNKS.c.chunk_id.in_(batch),
                        CHUNKS.c.state == STORED,
                        CHUNKS.c.condemned_at.is_(None),
                        CHUNKS.c.stored_at < stored_before,
                    )
                    .values(condemned_at=now)
                ).rowcount
            return done

        return await self._write(fn) if ids else 0

    async def acquit(self, site_id: int, ids: Sequence[str]) -> int:
        def fn(conn: Connection) -> int:
            return acquit_chunks(conn, site_id, ids)

        return await self._write(fn) if ids else 0

    async def begin_deleting(
        self, site_id: int, ids: Sequence[str], *, condemned_before: dt.datetime
    ) -> list[str]:
        def fn(conn: Connection) -> list[str]:
            moved: list[str] = []
            for batch in batches(ids):
                rows = conn.execute(
                    update(CHUNKS)
                    .where(
                        CHUNKS.c.site_id == site_id,
                        CHUNKS.c.chunk_id.in_(batch),
                        CHUNKS.c.state == STORED,
                        CHUNKS.c.condemned_at.is_not(None),
                        CHUNKS.c.condemned_at < condemned_before,
                    )
                    .values(state=DELETING)
                    .returning(CHUNKS.c.chunk_id)
                )
                moved.extend(r.chunk_id for r in rows)
            return moved

        return await self._write(fn) if ids else []

    async def tombstone(self, site_id: int, chunk_id: str, now: dt.datetime) -> bool:
        def fn(conn: Connection) -> bool:
            stmt = (
                insert_ignore(conn, CHUNKS)
                .values(
                    site_id=site_id,
                    chunk_id=chunk_id,
                    size=0,
                    sha256="",
                    stored_at=now,
                    condemned_at=now,
                    state=DELETING,
                )
                .returning(CHUNKS.c.chunk_id)
            )
            return conn.execute(stmt).first() is not None

        return await self._write(fn)

    async def drop_deleting(self, site_id: int, ids: Sequence[str]) -> int:
        def fn(conn: Connection) -> int:
            done = cleared = 0
            for batch in batches(ids):
                rows = conn.execute(
                    delete(CHUNKS)
                    .where(
                        CHUNKS.c.site_id == site_id,
                        CHUNKS.c.chunk_id.in_(batch),
                        CHUNKS.c.state == DELETING,
                    )
                    .returning(CHUNKS.c.chunk_id)
                )
                gone = [r.chunk_id for r in rows]
                done += len(gone)
                if gone:
                    cleared += conn.execute(
                        delete(DAMAGE).where(
                            DAMAGE.c.site_id == site_id, DAMAGE.c.chunk_id.in_(gone)
                        )
                    ).rowcount
            if cleared:
                _recount_damage(conn, site_id)
            return done

        return await self._write(fn) if ids else 0

    async def take_lease(
        self, name: str, owner: str, *, now: dt.datetime, until: dt.datetime
    ) -> bool:
        def fn(conn: Connection) -> bool:
            taken = conn.execute(
                update(LEASES)
                .where(
                    LEASES.c.name == name,
                    or_(LEASES.c.owner == owner, LEASES.c.owner == "", LEASES.c.expires_at < now),
                )
                .values(owner=owner, expires_at=until)
            ).rowcount
            if taken:
                return True
            stmt = (
                insert_ignore(conn, LEASES)
                .values(name=name, owner=owner, expires_at=until)
                .returning(LEASES.c.name)
            )
            return conn.execute(stmt).first() is not None

        return await self._write(fn)

    async def renew_lease(self, name: str, owner: str, *, until: dt.datetime) -> bool:
        def fn(conn: Connection) -> bool:
            return bool(
                conn.execute(
                    update(LEASES)
                    .where(LEASES.c.name == name, LEASES.c.owner == owner)
                    .values(expires_at=until)
                ).rowcount
            )

        return await self._write(fn)

    async def release_lease(self, name: str, owner: str) -> None:
        def fn(conn: Connection) -> None:
            conn.execute(
                update(LEASES)
                .where(LEASES.c.name == name, LEASES.c.owner == owner)
                .values(owner="")
            )

        await self._write(fn)

    async def database_now(self) -> dt.datetime | None:
        if self._engine.dialect.name != "postgresql":
            return None

        def fn(conn: Connection) -> dt.datetime:
            found: dt.datetime = conn.execute(text("SELECT now()")).scalar_one()
            return utc(found)

        return await self._read(fn)

    async def record_run(self, run: MaintenanceRunRecord) -> None:
        def fn(conn: Connection) -> None:
            conn.execute(
                insert(MAINTENANCE_RUNS).values(
                    started_at=run.started_at,
                    finished_at=run.finished_at,
                    owner=run.owner[:128],
                    dry_run=run.dry_run,
                    outcome=run.outcome,
                    summary_json=json.dumps(run.summary),
                    error=run.error,
                )
            )

        await self._write(fn)

    async def last_runs(self, limit: int) -> list[MaintenanceRunRecord]:
        def fn(conn: Connection) -> list[MaintenanceRunRecord]:
            rows = conn.execute(
                select(MAINTENANCE_RUNS)
                .order_by(MAINTENANCE_RUNS.c.started_at.desc(), MAINTENANCE_RUNS.c.id.desc())
                .limit(limit)
            )
            return [
                MaintenanceRunRecord(
                    started_at=utc(r.started_at),
                    finished_at=utc(r.finished_at),
                    owner=r.owner,
                    dry_run=bool(r.dry_run),
                    outcome=r.outcome,
                    summary=json.loads(r.summary_json),
                    error=r.error,
                )
                for r in rows
            ]

        return await self._read(fn)


def _recount_damage(conn: Connection, site_id: int) -> None:
    """The site's count of damaged or missing chunks after some of their rows went with
    their chunks; the check's summary of what the damage breaks goes once none is left
    (while some is, it stays until the next check)."""
    left = conn.execute(
        select(func.count()).select_from(DAMAGE).where(DAMAGE.c.site_id == site_id)
    ).scalar_one()
    values: dict[str, object] = {"store_damaged_chunks": int(left)}
    if not left:
        values["store_damage_summary"] = ""
    conn.execute(update(SITES).where(SITES.c.id == site_id).values(**values))
