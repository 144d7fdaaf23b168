"""The micro-batching writer on a real SQLite file: results, isolation of a failing
write, queued writes without waiting, the barrier that makes them visible, and
group commit (writes arriving together share a transaction; a lone write does not wait)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text

from server.state.writer import BatchWriter, HeldConnection, run_batch


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    try:
        yield eng
    finally:
        eng.dispose()


def _insert(k: int, v: str | None = "x") -> Callable[[Connection], int]:
    def op(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t (k, v) VALUES (:k, :v)"), {"k": k, "v": v})
        return k

    return op


@contextlib.contextmanager
def running(engine: Engine, **options: Any) -> Iterator[BatchWriter]:
    """A started writer, stopped on the way out."""
    writer = BatchWriter(engine, **options)
    writer.start()
    try:
        yield writer
    finally:
        writer.stop()


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_submit_returns_results_and_a_bad_write_fails_alone(engine: Engine) -> None:
    with running(engine) as writer:

        async def body() -> list[object]:
            calls: list[Any] = [writer.submit(_insert(i)) for i in range(50)]
            calls.insert(10, writer.submit(_insert(1000, None)))
            return list(await asyncio.gather(*calls, return_exceptions=True))

        results = asyncio.run(body())
    assert isinstance(results[10], Exception)
    assert [r for i, r in enumerate(results) if i != 10] == list(range(50))
    assert _count(engine) == 50


def test_enqueued_writes_are_visible_after_the_barrier(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with running(engine) as writer:

        async def body() -> int:
            for i in range(200):
                writer.enqueue(_insert(i))
            writer.enqueue(_insert(5))  # duplicate key: fails alone
            await writer.barrier()
            return _count(engine)

        with caplog.at_level(logging.ERROR):
            seen = asyncio.run(body())
    assert seen == 200
    assert "a queued write failed" in caplog.text


def test_enqueue_before_start_is_refused(engine: Engine) -> None:
    writer = BatchWriter(engine)
    with pytest.raises(RuntimeError):
        writer.enqueue(_insert(1))
    assert writer.backlog() == 0


def _commits(engine: Engine) -> list[int]:
    seen: list[int] = []
    event.listen(engine, "commit", lambda _conn: seen.append(1))
    return seen


def test_writes_arriving_together_are_grouped_into_few_commits(engine: Engine) -> None:
    commits = _commits(engine)
    with running(engine, group_window=0.3) as writer:

        async def body() -> None:
            pending: list[Any] = []
            for burst in range(10):  # 10 bursts of 5 writes, 20 ms apart: about 0.2 s
                pending += [
                    asyncio.ensure_future(writer.submit(_insert(burst * 10 + i))) for i in range(5)
                ]
                await asyncio.sleep(0.02)
            await asyncio.gather(*pending)

        asyncio.run(body())
    assert _count(engine) == 50
    # without the group window the writer, idle between bursts, commits once per burst
    assert len(commits) <= 4


def test_a_lone_write_does_not_wait_for_the_group_window(engine: Engine) -> None:
    commits = _commits(engine)
    with running(engine, group_window=30.0) as writer:

        async def body() -> None:
            for i in range(5):  # one after another: each batch holds one write
                await asyncio.wait_for(writer.submit(_insert(i)), timeout=10)

        asyncio.run(body())
    assert len(commits) == 5


def test_a_held_connection_that_the_database_dropped_is_replaced(pg_url: str) -> None:
    """The writer process's one connection, killed by the server between batches: the
    next batch (alone or with others) reconnects and commits, nothing fails."""
    eng = create_engine(pg_url)
    with eng.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    held = HeldConnection(eng)
    try:

        def drop_held() -> None:
            with held.begin() as conn:
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with eng.begin() as other:
                other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})

        assert run_batch(held.begin, [_insert(1)]) == [(1, None)]
        drop_held()
        assert run_batch(held.begin, [_insert(2)]) == [(2, None)]
        drop_held()
        assert run_batch(held.begin, [_insert(3), _insert(4)]) == [(3, None), (4, None)]
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 4
    finally:
        held.close()
        eng.dispose()
