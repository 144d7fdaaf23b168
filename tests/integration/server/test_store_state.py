"""The off-site store's index in SQL (SQLite and PostgreSQL): create-only rows, one site's
rows invisible to another, newest-first snapshot lists."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import Engine, insert, select, update

from common.errors import NotFound
from server.db.engine import make_engine, migrate
from server.domain.offsite import ChunkRecord, SiteKeyRecord, SnapshotRecord
from server.state.store_state import SqlStoreState
from server.state.tables import CHUNKS, SITES

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def snap(snapshot_id: str, created: dt.datetime, kind: str = "images") -> SnapshotRecord:
    return SnapshotRecord(
        snapshot_id=snapshot_id,
        kind=kind,
        created_at=created,
        committed_at=created,
        entries=3,
        size=300,
        data_key_id="0" * 16,
        backup_run_id="",
        chunks=2,
        stored_bytes=200,
        record_sha256="f" * 64,
    )


def _two_sites(db_url: str) -> tuple[Engine, SqlStoreState]:
    """A migrated database holding the sites st-a and st-b, and the store state on it."""
    engine = make_engine(db_url)
    migrate(engine)
    with engine.begin() as conn:
        for name in ("st-a", "st-b"):
            conn.execute(insert(SITES).values(name=name, group="default", created_at=T0))
    return engine, SqlStoreState(engine)


def test_rows_are_create_only_and_per_site(db_url: str) -> None:
    engine, state = _two_sites(db_url)

    async def body() -> None:
        a, b = await state.site_id("st-a"), await state.site_id("st-b")
        key = SiteKeyRecord("1" * 16, "ssdk1:x", "ab-cd", T0)
        assert await state.add_site_key(a, key) is True
        assert await state.add_site_key(a, dataclass_replace(key, sealed_key="ssdk1:y")) is False
        assert await state.site_key(a, "1" * 16) == key
        assert await state.site_key(b, "1" * 16) is None
        assert await state.site_keys("st-a") == [key]
        assert await state.site_keys("st-b") == []

        c1 = ChunkRecord("a" * 64, 10, "0" * 64)
        assert await state.add_chunk(a, c1, T0) is True
        assert await state.add_chunk(a, ChunkRecord("a" * 64, 11, "1" * 64), T0) is False
        assert await state.chunks(a, ["a" * 64, "b" * 64]) == {"a" * 64: c1}
        assert await state.chunks(b, ["a" * 64]) == {}
        many = [f"{i:064x}" for i in range(1200)]  # past one IN batch
        for one in many[:3]:
            await state.add_chunk(a, ChunkRecord(one, 1, "0" * 64), T0)
        assert set(await state.chunks(a, many)) == set(many[:3])
        assert await state.indexed(a, ["b" * 64, *many, "a" * 64]) == {"a" * 64, *many[:3]}
        assert await state.indexed(b, many) == set()
        assert await state.indexed(a, []) == set()
        # a batch insert answers the rows it added: not those indexed already, nor another
        # site's; past one page of the driver's multi-row inserts
        rows = [ChunkRecord(one, 2, "1" * 64) for one in many]
        assert await state.add_chunks(a, rows, T0) == set(many[3:])
        assert await state.add_chunks(a, rows[:5], T0) == set()
        assert await state.add_chunks(b, rows[:2], T0) == set(many[:2])
        assert (await state.chunks(a, many[:1]))[many[0]].size == 1  # never replaced
        assert (await state.chunks(a, many[-1:]))[many[-1]].size == 2
        assert await state.add_chunks(a, [], T0) == set()

        old, new = snap("1" * 64, T0), snap("2" * 64, T0 + dt.timedelta(days=1))
        db = snap("3" * 64, T0 + dt.timedelta(days=2), kind="database")
        for one in (old, new, db):
            assert await state.add_snapshot(a, one) is True
        assert await state.add_snapshot(a, old) is False
        listed = await state.list_snapshots("st-a", kind="images", limit=10)
        assert [x.snapshot_id for x in listed] == [new.snapshot_id, old.snapshot_id]
        every = await state.list_snapshots("st-a", kind="", limit=2)
        assert [x.snapshot_id for x in every] == [db.snapshot_id, new.snapshot_id]
        assert await state.snapshot(a, old.snapshot_id) == old
        assert await state.snapshot(b, old.snapshot_id) is None
        assert await state.find_snapshot("st-a", new.snapshot_id) == new
        with pytest.raises(NotFound):
            await state.find_snapshot("st-b", new.snapshot_id)
        with pytest.raises(NotFound):
            await state.list_snapshots("nosuch", kind="", limit=5)

    try:
        asyncio.run(body())
    finally:
        engine.dispose()


def dataclass_replace(key: SiteKeyRecord, **changes: str) -> SiteKeyRecord:
    import dataclasses

    return dataclasses.replace(key, **changes)


def test_a_copy_committed_while_its_upload_run_is_stored_counts_that_run(pg_url: str) -> None:
    """PostgreSQL, two transactions at once: an upload run stored (not yet committed) and
    the database snapshot it made committed meanwhile. Each locks the site row before it
    reads the other's rows, so the site's last off-site copy counts the run's bytes
    whichever commits first (without the lock the snapshot's transaction misses the
    uncommitted run and the run's transaction reads the site before the copy)."""
    import dataclasses
    import threading

    from server.domain.records import RunRecord
    from server.state import bulk, offsite_facts
    from server.state.tables import RUNS

    engine = make_engine(pg_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(SITES).values(name="st-race", group="default", created_at=T0))
    state = SqlStoreState(engine)
    site_id = asyncio.run(state.site_id("st-race"))
    upload = {"backup_run_id": "b-1", "bytes_sent": "700", "backup_size": "900"}
    run = RunRecord(
        id="u-1",
        kind="upload",
        started_at=T0,
        finished_at=T0,
        outcome="succeeded",
        verification="",
        error_class="",
        error_message="",
        trigger="",
        details={"upload": upload},
    )
    copy = dataclasses.replace(snap("c" * 64, T0, kind="database"), backup_run_id="b-1")
    committed = threading.Event()

    def commit_copy() -> None:
        asyncio.run(state.add_snapshot(site_id, copy))
        committed.set()

    with engine.begin() as conn:  # the report's transaction
        conn.execute(
            insert(RUNS).values(
                id=run.id,
                site_id=site_id,
                kind=run.kind,
                started_at=T0,
                finished_at=T0,
                outcome=run.outcome,
                received_at=T0,
                details_json=bulk.json_text(run.details),
                backup_run_id="b-1",
            )
        )
        offsite_facts.after_report(conn, site_id, run)  # locks the site row
        worker = threading.Thread(target=commit_copy)
        worker.start()
        assert not committed.wait(1.0)  # the commit waits for the site row
    worker.join(30)
    assert committed.is_set()
    with engine.connect() as conn:
        row = conn.execute(
            select(SITES.c.last_offsite_backup_run_id, SITES.c.last_offsite_bytes_sent).where(
                SITES.c.id == site_id
            )
        ).one()
    engine.dispose()
    assert tuple(row) == ("b-1", 700)


def test_a_commit_checks_every_reference_past_one_batch_and_rescues_condemned_ones(
    db_url: str,
) -> None:
    """`unstored` and `commit_snapshot` over 1,200 references (three IN batches): a missing
    or `deleting` chunk in any batch is named, in the order given, and nothing is written
    (not even the rescue of a condemned chunk); once all are stored, the condemned ones are
    rescued and the snapshot counts the bytes of the distinct references."""
    engine, state = _two_sites(db_url)
    refs = [f"{i:064x}" for i in range(1200)]
    lost, going, condemned = refs[1100], refs[7], refs[650]

    async def body() -> None:
        a, b = await state.site_id("st-a"), await state.site_id("st-b")
        stored = [ChunkRecord(one, 3, "0" * 64) for one in refs if one != lost]
        assert len(await state.add_chunks(a, stored, T0)) == 1199
        await state.add_chunks(b, [ChunkRecord(lost, 3, "0" * 64)], T0)  # another site's
        with engine.begin() as conn:
            conn.execute(update(CHUNKS).where(CHUNKS.c.chunk_id == going).values(state="deleting"))
            conn.execute(
                update(CHUNKS)
                .where(CHUNKS.c.site_id == a, CHUNKS.c.chunk_id == condemned)
                .values(condemned_at=T0)
            )
        assert await state.unstored(a, [*refs, refs[0]]) == [going, lost]
        assert await state.unstored(a, refs[100:300]) == []
        assert await state.unstored(a, []) == []

        one = snap("4" * 64, T0)
        assert await state.commit_snapshot(a, one, refs) == (False, [going, lost])
        assert await state.snapshot(a, one.snapshot_id) is None
        assert _condemned_at(engine, a, condemned) is not None  # rolled back with the rest

        with engine.begin() as conn:
            conn.execute(update(CHUNKS).where(CHUNKS.c.chunk_id == going).values(state="stored"))
        await state.add_chunks(a, [ChunkRecord(lost, 5, "0" * 64)], T0)
        assert await state.commit_snapshot(a, one, [*refs, refs[0]]) == (True, [])
        committed = await state.snapshot(a, one.snapshot_id)
        assert committed is not None and committed.stored_bytes == 1199 * 3 + 5
        assert _condemned_at(engine, a, condemned) is None  # rescued
        assert await state.commit_snapshot(a, one, refs) == (False, [])  # had it already

    try:
        asyncio.run(body())
    finally:
        engine.dispose()


def _condemned_at(engine: Engine, site_id: int, chunk_id: str) -> dt.datetime | None:
    with engine.connect() as conn:
        value: dt.datetime | None = conn.execute(
            select(CHUNKS.c.condemned_at).where(
                CHUNKS.c.site_id == site_id, CHUNKS.c.chunk_id == chunk_id
            )
        ).scalar_one()
    return value
