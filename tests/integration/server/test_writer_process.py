"""The writer's child process on a real SQLite file: portable writes run there, in
order with the writes that stay in the thread; a bad write fails alone with its own
error; a child that dies is replaced and its batch runs again; it stops with the
writer and never outlives the server."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import Connection, Engine, create_engine, text

from common.errors import PermissionDenied
from server.state.writer import BatchWriter
from server.state.writer_process import WriterProcess, usable
from tests.support.agent import wait_for
from tests.support.server import create_enrollment_token, start_server
from tests.support.writes import Deny, Insert, Unsendable, WhereAmI


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, BatchWriter]]:
    """One table and one writer with its process for the module (a spawn costs ~1 s)."""
    path = tmp_path_factory.mktemp("wp") / "w.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    writer = BatchWriter(engine, runner=WriterProcess(str(engine.url)))
    writer.start()
    try:
        yield engine, writer
    finally:
        writer.stop()
        engine.dispose()


def _local(k: int) -> Callable[[Connection], int]:
    """A write that cannot leave the process (a closure)."""

    def op(conn: Connection) -> int:
        conn.execute(text("INSERT INTO t (k, v) VALUES (:k, 'local')"), {"k": k})
        return k

    return op


def _rows(engine: Engine, lo: int, hi: int) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT k, v FROM t WHERE k >= :lo AND k < :hi ORDER BY k"), {"lo": lo, "hi": hi}
        )
        return [(int(r[0]), str(r[1])) for r in rows]


def _runner(writer: BatchWriter) -> WriterProcess:
    runner = writer._runner
    assert isinstance(runner, WriterProcess)
    return runner


def test_portable_writes_run_in_the_child_and_the_rest_here(
    db: tuple[Engine, BatchWriter],
) -> None:
    engine, writer = db

    async def body() -> list[Any]:
        calls: list[Any] = [writer.submit(WhereAmI())]
        for i in range(100, 160):
            calls.append(writer.submit(_local(i) if i % 10 == 0 else Insert(i, "child")))
        calls.insert(30, writer.submit(Insert(1000, None)))  # NOT NULL: fails alone
        calls.insert(40, writer.submit(Insert(101)))  # duplicate key: fails alone
        return list(await asyncio.gather(*calls, return_exceptions=True))

    results = asyncio.run(body())
    child = _runner(writer).pid
    assert results[0] == child and child != os.getpid()
    assert "NOT NULL" in str(results[30]) and "UNIQUE" in str(results[40])
    assert isinstance(results[30], RuntimeError)  # the driver's error, carried across
    rest = [r for i, r in enumerate(results) if i not in (0, 30, 40)]
    assert rest == list(range(100, 160))
    expected = [(i, "local" if i % 10 == 0 else "child") for i in range(100, 160)]
    assert _rows(engine, 100, 2000) == expected


def test_typed_errors_keep_their_class_across_the_process(
    db: tuple[Engine, BatchWriter],
) -> None:
    _engine, writer = db
    outcomes = _runner(writer).run([Deny()])
    assert isinstance(outcomes[0][1], PermissionDenied)
    assert str(outcomes[0][1]) == "not yours"


def test_enqueued_portable_writes_are_visible_after_the_barrier(
    db: tuple[Engine, BatchWriter], caplog: pytest.LogCaptureFixture
) -> None:
    engine, writer = db

    async def body() -> None:
        for i in range(2000, 2300):
            writer.enqueue(Insert(i))
        writer.enqueue(Insert(2005))  # duplicate: logged, dropped
        await writer.barrier()

    asyncio.run(body())
    assert len(_rows(engine, 2000, 3000)) == 300
    assert "a queued write failed and was dropped" in caplog.text


def test_a_killed_child_is_replaced_and_its_batch_runs_again(
    db: tuple[Engine, BatchWriter], caplog: pytest.LogCaptureFixture
) -> None:
    engine, writer = db
    first = _runner(writer).pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    psutil.Process(first).wait(10)

    async def body() -> list[int]:
        return list(await asyncio.gather(*(writer.submit(Insert(i)) for i in range(3000, 3050))))

    assert asyncio.run(body()) == list(range(3000, 3050))
    assert len(_rows(engine, 3000, 4000)) == 50
    second = _runner(writer).pid
    assert second is not None and second != first
    assert "starting a new one" in caplog.text


def test_the_child_ignores_sigterm_and_exits_with_its_writer(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)"))
    writer = BatchWriter(engine, runner=WriterProcess(str(engine.url)))
    writer.start()
    pid = _runner(writer).pid
    assert pid is not None
    child = psutil.Process(pid)
    os.kill(pid, signal.SIGTERM)  # as a service manager signals the whole group
    try:
        assert asyncio.run(writer.submit(Insert(1))) == 1
        assert child.is_running() and _runner(writer).pid == pid
    finally:
        writer.stop()
    child.wait(10)  # stop() reaped it already
    assert not child.is_running()
    engine.dispose()


def test_a_child_that_cannot_open_the_database_says_why(tmp_path: Path) -> None:
    runner = WriterProcess(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with pytest.raises(RuntimeError, match="could not start: OperationalError"):
        runner.start()


def test_in_memory_sqlite_keeps_its_writes_in_the_thread() -> None:
    assert not usable(create_engine("sqlite://"))
    assert not usable(create_engine("sqlite:///:memory:"))
    assert usable(create_engine("sqlite:////tmp/x.db"))


def test_a_result_that_cannot_be_sent_back_fails_that_write_alone(
    db: tuple[Engine, BatchWriter],
) -> None:
    _engine, writer = db
    pid = _runner(writer).pid
    outcomes = _runner(writer).run([Unsendable(), WhereAmI()])
    assert outcomes[0][0] is None and "cannot be sent back" in str(outcomes[0][1])
    assert outcomes[1] == (pid, None)


def _writer_children(pid: int) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(pid).children(recursive=True)
        if "spawn_main" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_the_server_writes_through_its_child_which_ends_with_it(tmp_path: Path, sig: int) -> None:
    """`serve --writer-process` starts one writer process and works; however the server
    ends (a graceful SIGTERM or a SIGKILL), its writer process is gone soon after."""
    handle = start_server(tmp_path, extra_args=("--writer-process",))
    try:
        assert handle.proc is not None
        children = _writer_children(handle.proc.pid)
        assert len(children) == 1
        token = create_enrollment_token(handle, "wp-site")
        assert token
    finally:
        handle.stop(sig)
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive


def test_by_default_writes_go_through_a_child_and_the_log_says_so(
    tmp_path: Path, db_url: str
) -> None:
    url = "" if db_url.startswith("sqlite") else db_url
    handle = start_server(tmp_path, db_url=url)
    try:
        assert handle.proc is not None
        assert len(_writer_children(handle.proc.pid)) == 1
        said = "written by a child process"
        wait_for(lambda: said in handle.log(), timeout=10, what=f"{said!r} in the log")
    finally:
        handle.stop()


def test_writer_thread_on_request(tmp_path: Path) -> None:
    handle = start_server(tmp_path, extra_args=("--writer-thread",))
    try:
        assert handle.proc is not None
        assert _writer_children(handle.proc.pid) == []
        said = "written by a thread"
        wait_for(lambda: said in handle.log(), timeout=10, what=f"{said!r} in the log")
    finally:
        handle.stop()
