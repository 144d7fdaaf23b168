"""The off-site store's maintenance against the database itself (SQLite and PostgreSQL):
the lease (one owner), the row locks between a commit's rescue and a sweep's move to
`deleting`, the clock check, orphan blobs, and database copies kept by their runs."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from common.clock import SystemClock
from common.errors import FailedPrecondition
from server.db.engine import make_engine, migrate
from server.domain import offsite as rules
from server.domain.offsite import SnapshotRecord
from server.domain.store_gc import LEASE_NAME
from server.domain.store_retention import RetentionKeys
from server.services.store_gc import StoreMaintenance
from server.state.store_gc_state import SqlStoreGcState
from server.state.store_state import SqlStoreState
from server.state.tables import CHUNKS, DAMAGE, RUNS, SITES
from server.storage import BlobStore, Digest, open_store
from tests.support.clock import FakeClock

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
OLD = NOW - dt.timedelta(days=3)
MARGIN = dt.timedelta(hours=24)
SITE = "gcs-a"


def cid(n: int) -> str:
    return f"{n:064x}"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    made = make_engine(db_url)
    migrate(made)
    with made.begin() as conn:
        conn.execute(insert(SITES).values(name=SITE, group="default", created_at=OLD))
    try:
        yield made
    finally:
        made.dispose()


def site_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(SITES.c.id).where(SITES.c.name == SITE)).scalar_one())


def add_chunk(engine: Engine, n: int, *, condemned: dt.datetime | None = None) -> str:
    with engine.begin() as conn:
        conn.execute(
            insert(CHUNKS).values(
                site_id=site_id(engine),
                chunk_id=cid(n),
                size=10,
                sha256="0" * 64,
                stored_at=OLD,
                condemned_at=condemned,
            )
        )
    return cid(n)


def state_of(engine: Engine, chunk_id: str) -> tuple[str, dt.datetime | None] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(CHUNKS.c.state, CHUNKS.c.condemned_at).where(CHUNKS.c.chunk_id == chunk_id)
        ).first()
    return None if row is None else (row.state, row.condemned_at)


def snap(n: int, *, days_ago: float = 0, kind: str = "images", run: str = "") -> SnapshotRecord:
    when = NOW - dt.timedelta(days=days_ago)
    return SnapshotRecord(cid(n), kind, when, when, 1, 1, "0" * 16, run, 1, 0, "0" * 64)


def _one_lease_owner_at_a_time(engine: Engine) -> None:
    state = SqlStoreGcState(engine)
    until = NOW + dt.timedelta(minutes=10)

    def take(owner: str) -> bool:
        return asyncio.run(state.take_lease(LEASE_NAME, owner, now=NOW, until=until))

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(take, [f"r{i}" for i in range(8)]))
    assert won.count(True) == 1
    owner = f"r{won.index(True)}"

    async def body() -> None:
        assert await state.take_lease(LEASE_NAME, owner, now=NOW, until=until)  # ours: again
        assert not await state.take_lease(LEASE_NAME, "other", now=NOW, until=until)
        later = until + dt.timedelta(seconds=1)  # expired: taken over
        assert await state.take_lease(LEASE_NAME, "other", now=later, until=later + MARGIN)
        assert not await state.renew_lease(LEASE_NAME, owner, until=later + MARGIN)
        await state.release_lease(LEASE_NAME, owner)  # not ours: nothing changes
        assert not await state.take_lease(LEASE_NAME, "third", now=later, until=later + MARGIN)
        await state.release_lease(LEASE_NAME, "other")
        assert await state.take_lease(LEASE_NAME, "third", now=later, until=later + MARGIN)

    asyncio.run(body())


def _maintenance(engine: Engine, store: BlobStore, owner: str) -> StoreMaintenance:
    return StoreMaintenance(
        SqlStoreGcState(engine),
        store,
        FakeClock(NOW),
        lambda site, group: RetentionKeys(),
        margin=MARGIN,
        owner=owner,
        wall_clock=SystemClock(),
    )


def _a_second_runner_is_refused_while_the_first_holds_the_lease(
    engine: Engine, tmp_path: Path
) -> None:
    async def body() -> None:
        store = open_store(str(tmp_path / "store"), tmp_path)
        first, second = _maintenance(engine, store, "one"), _maintenance(engine, store, "two")
        state = SqlStoreGcState(engine)
        wall = dt.datetime.now(dt.UTC)
        assert await state.take_lease(LEASE_NAME, "one", now=wall, until=wall + MARGIN)
        with pytest.raises(FailedPrecondition, match="another server is running"):
            await second.run()
        assert (await second.run(dry_run=True)).ok  # a dry run changes nothing: no lease
        assert (await first.run()).ok  # the owner runs, and releases the lease
        assert (await second.run()).ok
        runs = await state.last_runs(5)
        assert [(r.owner, r.dry_run, r.outcome) for r in runs] == [
            ("two", False, "succeeded"),
            ("one", False, "succeeded"),
            ("two", True, "succeeded"),
        ]
        await store.close()

    asyncio.run(body())


def _a_server_whose_clock_is_off_refuses_to_run(engine: Engine, tmp_path: Path) -> None:
    async def body() -> None:
        store = open_store(str(tmp_path / "store"), tmp_path)
        skewed = StoreMaintenance(
            SqlStoreGcState(engine),
            store,
            FakeClock(NOW),
            lambda site, group: RetentionKeys(),
            margin=MARGIN,
            wall_clock=FakeClock(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)),
        )
        if engine.dialect.name == "postgresql":
            with pytest.raises(FailedPrecondition, match=r"differ by 6\d\d s"):
                await skewed.run()
        else:  # SQLite has no clock of its own: nothing to compare
            assert (await skewed.run()).ok
        await store.close()

    asyncio.run(body())


def _hold(engine: Engine, statement: object, started: threading.Event, go: threading.Event) -> None:
    """Run `statement` in a transaction and keep it open until `go`."""
    with engine.begin() as conn:
        conn.execute(statement)  # type: ignore[call-overload]
        started.set()
        go.wait(30)


def _wait_blocked(engine: Engine) -> None:
    """Give the other transaction time to reach the lock (PostgreSQL: until it waits)."""
    if engine.dialect.name != "postgresql":
        time.sleep(0.5)
        return
    from sqlalchemy import text

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.05)


def _a_sweep_that_moved_the_chunk_first_makes_the_commit_fail(engine: Engine) -> None:
    chunk = add_chunk(engine, 1, condemned=OLD)
    sid = site_id(engine)
    started, go = threading.Event(), threading.Event()
    move = (
        update(CHUNKS)
        .where(CHUNKS.c.chunk_id == chunk, CHUNKS.c.condemned_at.is_not(None))
        .values(state="deleting")
    )
    sweeper = threading.Thread(target=_hold, args=(engine, move, started, go))
    sweeper.start()
    assert started.wait(10)
    with ThreadPoolExecutor(1) as pool:
        commit = pool.submit(
            asyncio.run, SqlStoreState(engine).commit_snapshot(sid, snap(9), [chunk])
        )
        _wait_blocked(engine)
        go.set()
        sweeper.join()
        assert commit.result(30) == (False, [chunk])  # waited for the sweep, saw `deleting`
    assert asyncio.run(SqlStoreState(engine).snapshot(sid, cid(9))) is None


def _a_commit_that_rescued_the_chunk_first_makes_the_sweep_skip_it(engine: Engine) -> None:
    chunk = add_chunk(engine, 2, condemned=OLD)
    sid = site_id(engine)
    started, go = threading.Event(), threading.Event()
    rescue = (  # what the commit's transaction does first
        update(CHUNKS)
        .where(CHUNKS.c.chunk_id == chunk, CHUNKS.c.state == "stored")
        .values(condemned_at=None)
    )
    committer = threading.Thread(target=_hold, args=(engine, rescue, started, go))
    committer.start()
    assert started.wait(10)
    with ThreadPoolExecutor(1) as pool:
        sweep = pool.submit(
            asyncio.run, SqlStoreGcState(engine).begin_deleting(sid, [chunk], condemned_before=NOW)
        )
        _wait_blocked(engine)
        go.set()
        committer.join()
        assert sweep.result(30) == []  # waited for the commit, found the chunk rescued
    assert state_of(engine, chunk) == ("stored", None)


def _orphan_blobs_older_than_the_margin_are_deleted(engine: Engine, tmp_path: Path) -> None:
    indexed = add_chunk(engine, 3)  # old, unreferenced, no snapshot: condemned, not deleted

    async def body() -> None:
        store = open_store(str(tmp_path / "store"), tmp_path)
        names = {
            "indexed": rules.chunk_name(SITE, indexed),
            "orphan": rules.chunk_name(SITE, cid(4)),
            "young": rules.chunk_name(SITE, cid(5)),
            "record": rules.snapshot_name(SITE, cid(6)),
            "refs": rules.refs_name(SITE, cid(6)),
        }
        for name in names.values():
            await store.save(name, b"x", Digest.of(b"x", "blake3"))
        old = (NOW - dt.timedelta(days=2)).timestamp()
        for what in ("indexed", "orphan", "record", "refs"):
            os.utime(tmp_path / "store" / names[what], (old, old))
        report = await _maintenance(engine, store, "orphans").run()
        (mine,) = [s for s in report.sites if s.site == SITE]
        assert (mine.orphans_deleted, mine.chunks_condemned, mine.error) == (3, 1, "")
        left = await store.stat(list(names.values()))
        assert {k for k, v in names.items() if left[v] is not None} == {"indexed", "young"}
        assert state_of(engine, cid(4)) is None  # its tombstone row went with the blob
        await store.close()

    asyncio.run(body())


def _database_copies_follow_their_backup_runs(engine: Engine, tmp_path: Path) -> None:
    sid = site_id(engine)
    with engine.begin() as conn:
        for run, verification in (("good-old", "passed"), ("failed-new", "failed")):
            conn.execute(
                insert(RUNS).values(
                    id=run,
                    site_id=sid,
                    kind="backup",
                    started_at=OLD,
                    finished_at=OLD,
                    outcome="succeeded",
                    verification=verification,
                    received_at=OLD,
                )
            )

    async def body() -> None:
        store = open_store(str(tmp_path / "store"), tmp_path)
        state = SqlStoreState(engine)
        copies = [
            snap(20, days_ago=1, kind="database", run="failed-new"),
            snap(21, days_ago=30, kind="database", run="good-old"),
            snap(22, days_ago=60, kind="database", run="good-older-unknown"),
        ]
        for one in copies:
            assert await state.add_snapshot(sid, one)
            refs = b""
            packed = __import__("zstandard").ZstdCompressor().compress(refs)
            await store.save(
                rules.refs_name(SITE, one.snapshot_id), packed, Digest.of(packed, "blake3")
            )
        gc = StoreMaintenance(
            SqlStoreGcState(engine),
            store,
            FakeClock(NOW),
            lambda site, group: RetentionKeys(keep_daily=0, keep_weekly=0, keep_monthly=0),
            margin=MARGIN,
            wall_clock=SystemClock(),
        )
        report = await gc.run()
        (mine,) = [s for s in report.sites if s.site == SITE]
        assert (mine.snapshots_forgotten, mine.error) == (1, "")
        kept = await state.list_snapshots(SITE, kind="database", limit=10)
        # the newest copy (its run failed) and the newest good one stay
        assert [s.snapshot_id for s in kept] == [cid(20), cid(21)]
        await store.close()

    asyncio.run(body())


# One database per test (and backend) is the slow part, so related cases share one.


def test_one_maintenance_owner_at_a_time_and_only_with_clocks_that_agree(
    engine: Engine, tmp_path: Path
) -> None:
    _one_lease_owner_at_a_time(engine)
    asyncio.run(SqlStoreGcState(engine).release_lease(LEASE_NAME, "third"))
    _a_second_runner_is_refused_while_the_first_holds_the_lease(engine, tmp_path)
    _a_server_whose_clock_is_off_refuses_to_run(engine, tmp_path)


def test_the_row_locks_order_a_commit_and_a_sweep_either_way(engine: Engine) -> None:
    """Whichever of the two transactions takes the row first, the other sees its result:
    a sweep first makes the commit fail naming the chunk; a rescue first makes the sweep
    skip it."""
    _a_sweep_that_moved_the_chunk_first_makes_the_commit_fail(engine)
    _a_commit_that_rescued_the_chunk_first_makes_the_sweep_skip_it(engine)


def test_orphans_go_and_database_copies_follow_their_runs(engine: Engine, tmp_path: Path) -> None:
    _orphan_blobs_older_than_the_margin_are_deleted(engine, tmp_path)
    _database_copies_follow_their_backup_runs(engine, tmp_path / "second")
    _damage_rows_go_with_the_chunks_gc_deletes(engine, tmp_path / "second")  # same store


def test_a_runner_whose_lease_was_taken_over_stops_before_deleting(tmp_path: Path) -> None:
    """The lease is renewed while a run lasts; once another runner owns it, the first
    stops before its next deletion (the next run finishes its work)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(SITES).values(name=SITE, group="default", created_at=OLD))
    first, second = add_chunk(engine, 30, condemned=OLD), add_chunk(engine, 31, condemned=OLD)
    removing = asyncio.Event()
    stolen = asyncio.Event()

    class SlowStore(BlobStore):
        async def remove(self, key: str) -> None:
            removing.set()
            await stolen.wait()  # the other runner owns the lease now
            await asyncio.sleep(0.5)  # and our renewal (every 0.1 s) has found out
            await super().remove(key)

    async def body() -> None:
        fs = open_store(str(tmp_path / "store"), tmp_path)
        store = SlowStore(fs.backend)
        state = SqlStoreGcState(engine)
        gc = StoreMaintenance(
            state,
            store,
            FakeClock(NOW),
            lambda site, group: RetentionKeys(),
            margin=MARGIN,
            owner="slow",
            lease_seconds=0.3,
            wall_clock=SystemClock(),
        )

        async def steal() -> None:
            await removing.wait()
            later = dt.datetime.now(dt.UTC) + MARGIN  # as if ours had expired
            assert await state.take_lease(LEASE_NAME, "thief", now=later, until=later + MARGIN)
            stolen.set()

        thief = asyncio.create_task(steal())
        report = await gc.run()
        await thief
        assert "lease was lost" in report.error
        # one blob deleted, the other not: both rows stay `deleting` for the next run
        rows = [state_of(engine, c) for c in (first, second)]
        assert [row[0] if row else None for row in rows] == ["deleting", "deleting"]
        await store.close()

    try:
        asyncio.run(body())
    finally:
        engine.dispose()


def _damage(engine: Engine) -> tuple[set[str], int, str]:
    """The site's damage rows, and its count and summary as status shows them."""
    with engine.connect() as conn:
        rows = conn.execute(select(DAMAGE.c.chunk_id).where(DAMAGE.c.site_id == site_id(engine)))
        site = conn.execute(
            select(SITES.c.store_damaged_chunks, SITES.c.store_damage_summary).where(
                SITES.c.name == SITE
            )
        ).one()
    return {r.chunk_id for r in rows}, site.store_damaged_chunks, site.store_damage_summary


def _damage_rows_go_with_the_chunks_gc_deletes(engine: Engine, tmp_path: Path) -> None:
    """A damaged chunk that garbage collection deletes (its snapshot was forgotten, nothing
    references it) is no problem any more: its damage row goes in the deletion's
    transaction and the site's count follows; the summary goes with the last row."""
    sid = site_id(engine)
    first, second = add_chunk(engine, 40, condemned=OLD), add_chunk(engine, 41, condemned=OLD)
    kept = add_chunk(engine, 42)
    summary = "1 image snapshot(s) cannot be fully restored"

    async def body() -> None:
        store = open_store(str(tmp_path / "store"), tmp_path)
        state = SqlStoreState(engine)
        await state.record_check(
            sid,
            damage={first: "damaged", second: "missing", kept: "damaged"},
            summary=summary,
            cursor="",
            now=NOW,
        )
        assert _damage(engine) == ({first, second, kept}, 3, summary)
        gc_state = SqlStoreGcState(engine)
        assert await gc_state.begin_deleting(sid, [first], condemned_before=NOW) == [first]
        assert await gc_state.drop_deleting(sid, [first, kept]) == 1  # `kept` is not deleting
        assert _damage(engine) == ({second, kept}, 2, summary)  # the others stay named
        with engine.begin() as conn:  # the last damaged chunk goes the same way
            conn.execute(update(CHUNKS).where(CHUNKS.c.chunk_id == kept).values(condemned_at=OLD))
        report = await _maintenance(engine, store, "damage").run()  # no snapshot: all swept
        (mine,) = [s for s in report.sites if s.site == SITE]
        assert mine.error == ""
        assert state_of(engine, second) is None and state_of(engine, kept) is None
        assert _damage(engine) == (set(), 0, "")
        await store.close()

    asyncio.run(body())
