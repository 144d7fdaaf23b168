"""The hot writes' database work in a child process of its own.

A busy server spends as much of its one core on the writer's database work as on
gRPC: the SQLite and psycopg drivers release and retake the GIL around every
statement step, and each hand-over also stalls the event loop. Measured under the
RPC benchmark, the same server that acknowledged writes without a database ran at
0.75x a bare gRPC server, and with its writer thread at 0.54-0.62x (SQLite) and
0.43-0.52x (PostgreSQL).

So the writer thread hands every batch of *portable* ops (check-ins, reports, the
barrier: module-level classes that pickle) to this child process over a pipe and
waits for the outcomes; the event loop keeps the GIL to itself. Check-ins and reports
travel undecoded (server/deferred.py): the child also turns them from protobuf into
rows and validates them, which is most of their Python work. The writer thread
still decides what goes into which batch and in which order, and it waits for each
batch to commit before it starts the next, so ordering, the barrier and the
one-by-one retry of a failing batch mean exactly what they meant in one process.
Other writes (admin actions, config) are rare and run in the writer thread itself.

The child has its own engine on the same database URL, and holds one connection of
it for every batch (no pool checkout and ping per batch); it ignores SIGINT and
SIGTERM (the server shuts down gracefully and finishes its queue first) and exits
when its pipe closes, so it never outlives the server. If it dies, the batch it
was running is sent again to a new child: a batch the child died in was rolled
back, and one it committed before dying is harmless to run again, because check-ins
are heartbeats and reports are stored by id.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import pickle
import signal
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from common.errors import StoreSafeError
from server.db.engine import make_engine
from server.state.writer import BatchWriter, HeldConnection, Outcome, run_batch

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
"""Seconds a new child may take to import the server code and open its engine."""


class WriterProcess:
    """A child process that runs batches of portable ops against its own engine."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._conn: multiprocessing.connection.Connection | None = None

    def start(self) -> None:
        """Start the child and wait until its engine is ready (raises if it cannot start)."""
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_main, args=(self._url, child), name="storesafe-db-writer", daemon=True
        )
        proc.start()
        child.close()
        if not parent.poll(START_TIMEOUT):
            proc.kill()
            raise RuntimeError("the database writer process did not start")
        ready = parent.recv()
        if ready is not True:
            proc.join()
            raise RuntimeError(f"the database writer process could not start: {ready}")
        self._proc, self._conn = proc, parent
        log.debug("database writer process %d started", proc.pid)

    def run(self, ops: Sequence[Any]) -> list[Outcome]:
        """Run a batch in the child; one new child and one more try if it dies meanwhile."""
        try:
            return self._exchange(ops)
        except (EOFError, OSError) as exc:
            log.error(
                "the database writer process stopped (%s); starting a new one and "
                "running its last batch of %d write(s) again",
                str(exc) or type(exc).__name__,
                len(ops),
            )
            self.stop()
            self.start()
            return self._exchange(ops)

    def _exchange(self, ops: Sequence[Any]) -> list[Outcome]:
        if self._conn is None:
            self.start()
        assert self._conn is not None
        self._conn.send(list(ops))
        outcomes: list[Outcome] = self._conn.recv()
        return outcomes

    def stop(self) -> None:
        """Close the pipe (the child finishes nothing more and exits) and reap it."""
        conn, proc = self._conn, self._proc
        self._conn = self._proc = None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else int(self._proc.pid)


def _main(url: str, conn: multiprocessing.connection.Connection) -> None:
    """The child: run each batch that arrives until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        engine = make_engine(url)
        held = HeldConnection(engine)
        with held.begin():
            pass
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        conn.send(f"{type(exc).__name__}: {exc}")
        return
    conn.send(True)
    try:
        while True:
            try:
                ops = conn.recv()
            except EOFError:
                break
            conn.send([_portable(outcome) for outcome in run_batch(held.begin, ops)])
    finally:
        held.close()
        engine.dispose()


def _portable(outcome: Outcome) -> Outcome:
    """An outcome that survives pickling: a driver's error becomes a RuntimeError with
    its text, and a result that does not pickle becomes an error saying so."""
    result, exc = outcome
    if exc is not None and not isinstance(exc, StoreSafeError):
        return None, RuntimeError(f"{type(exc).__name__}: {exc}")
    if exc is None and not isinstance(result, _PLAIN):
        try:
            pickle.dumps(result)
        except Exception as error:  # noqa: BLE001 - a bug in the op, reported to its caller
            return None, RuntimeError(f"the write's result cannot be sent back: {error}")
    return result, exc


_PLAIN = (type(None), bool, int, str)


def usable(engine: Engine) -> bool:
    """True when a second process can open the same database (not in-memory SQLite)."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return True
    return bool(url.database) and url.database != ":memory:" and "mode=memory" not in str(url)


def batch_writer(engine: Engine, *, child: bool) -> BatchWriter:
    """The writer for `engine`: with `child`, one that hands the hot writes to a
    WriterProcess (`serve` does, unless told --writer-thread); without it, or for an
    in-memory SQLite database that a second process cannot open, a thread alone."""
    runner = None
    if child and usable(engine):
        runner = WriterProcess(engine.url.render_as_string(hide_password=False))
    return BatchWriter(engine, runner=runner)
