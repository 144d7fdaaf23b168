"""A single writer thread that commits queued writes in batches (micro-batching).

Each caller awaits the commit of the batch its write landed in, so a write is
durable when `submit` returns. Whatever is queued when the writer becomes free
goes into the next transaction. If a batch fails, its writes are retried one by
one so a single bad write fails alone.

Group commit: a lone write commits at once, but while writes arrive together
(the last batch held more than one) a new batch starts no sooner than
`group_window` after the previous one started, so that a busy server commits
tens of writes per transaction instead of two or three. Without that pause the
writer, being free again within a millisecond, commits every few writes, and
the fixed cost of each transaction (begin, commit, fsync, and the thread
switches of handing the GIL back and forth) took about as much CPU as the
writes themselves. The pause costs a write at most `group_window` of latency.

A write may have a `prepare()`: the work of turning its input into parameters
(decoding and validating a report), run just before the batch's transaction, where the
batch runs; if it fails, that write fails alone (see server/deferred.py).

A write may also be a `Bulk` op: consecutive ones with the same `bulk_key` in a
batch run together through their `run_many` (one executemany instead of many
statements), in the same order and the same transaction; calling the op alone
does the same work for one write, and that is what the one-by-one retry uses.
Results go back with one wake-up of the event loop per batch, not one per write.

A write whose op is `portable` (a module-level class that pickles) may run in
another process: the writer hands such batches to its `runner` (see
writer_process.py) and waits for their outcomes; other writes run in this thread.

`enqueue` queues a write without waiting for its commit (config acks: the caller
answers at once, the commit follows within the same few milliseconds; a failure
is logged). Because batches commit in queue order, awaiting `barrier()` makes
every write queued before it visible to readers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[Connection], Any]
Outcome = tuple[Any, BaseException | None]
"""A write's result, or the error it failed with."""

_STOP = object()

GROUP_WINDOW = 0.005
"""Seconds between the starts of two batches while writes arrive together."""


class Bulk(Protocol):
    """A write that can run together with others of the same `bulk_key`."""

    bulk_key: Hashable

    def __call__(self, conn: Connection) -> Any: ...

    def run_many(self, conn: Connection, ops: Sequence[Any]) -> list[Any]:
        """Run `ops` (all with this op's key, in order); return their results in order."""
        ...


class BatchRunner(Protocol):
    """Runs a batch of portable ops somewhere else (another process) and returns outcomes."""

    def start(self) -> None: ...

    def run(self, ops: Sequence[Any]) -> list[Outcome]: ...

    def stop(self) -> None: ...


class BatchWriter:
    """Serialises all writes of one process through one thread and one transaction per batch."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 1024,
        group_window: float = GROUP_WINDOW,
        runner: BatchRunner | None = None,
    ) -> None:
        self._engine = engine
        self._runner = runner
        self._max_batch = max_batch
        self._group_window = group_window
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @property
    def uses_runner(self) -> bool:
        """Whether portable batches run elsewhere (a writer process), not in this thread."""
        return self._runner is not None

    def start(self) -> None:
        if self._thread is None:
            if self._runner is not None:
                self._runner.start()
            self._thread = threading.Thread(target=self._loop, name="db-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
            if self._runner is not None:
                self._runner.stop()

    async def submit(self, op: Callable[[Connection], T]) -> T:
        """Run `op` inside the next batch's transaction and return its result once committed."""
        if self._thread is None:
            raise RuntimeError("BatchWriter.submit before start")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((op, fut, loop))
        return await fut

    def enqueue(self, op: Callable[[Connection], Any]) -> None:
        """Queue `op` for the next batch without waiting for it (errors are logged)."""
        if self._thread is None:
            raise RuntimeError("BatchWriter.enqueue before start")
        self._queue.put((op, None, None))

    def backlog(self) -> int:
        """Writes queued and not yet taken by the writer thread (approximate)."""
        return self._queue.qsize()

    async def barrier(self) -> None:
        """Return once every write queued before this call has been committed (or failed)."""
        await self.submit(_NOTHING)

    def _loop(self) -> None:
        batch: list[Any] = []
        started = 0.0
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if len(batch) > 1:  # writes are arriving together: let a group gather
                pause = started + self._group_window - time.monotonic()
                if pause > 0 and self._queue.qsize() < self._max_batch:
                    time.sleep(pause)
            batch = [item]
            stopping = self._take_queued(batch)
            started = time.monotonic()
            self._run_batch(batch)
            if stopping:
                break

    def _take_queued(self, batch: list[Any]) -> bool:
        """Move what is queued into `batch` (up to max_batch); True when _STOP came."""
        while len(batch) < self._max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return False
            if nxt is _STOP:
                return True
            batch.append(nxt)
        return False

    def _run_batch(self, batch: list[Any]) -> None:
        """Run a batch (its portable stretches through the runner) and hand out outcomes."""
        outcomes: list[Outcome] = []
        ops = [op for op, _fut, _loop in batch]
        for remote, group in itertools.groupby(ops, key=self._remote):
            stretch = list(group)
            run = self._run_remote(stretch) if remote else run_batch(self._engine.begin, stretch)
            outcomes.extend(run)
        _deliver(
            [
                (fut, loop, result, exc)
                for (_op, fut, loop), (result, exc) in zip(batch, outcomes, strict=True)
            ]
        )

    def _remote(self, op: Any) -> bool:
        return self._runner is not None and getattr(op, "portable", False) is True

    def _run_remote(self, ops: list[Any]) -> list[Outcome]:
        assert self._runner is not None
        try:
            return self._runner.run(ops)
        except Exception as exc:  # noqa: BLE001 - every write of the stretch fails
            log.error("the database writer process failed: %s", str(exc) or type(exc).__name__)
            return [(None, exc)] * len(ops)


Begin = Callable[[], AbstractContextManager[Connection]]
"""Opens a transaction and yields its connection: `engine.begin`, or `HeldConnection.begin`."""


class HeldConnection:
    """One connection kept open for every batch (the writer process's): a transaction
    per batch without a pool checkout and its liveness ping. A connection that broke is
    replaced at the next batch; the batch it broke under is retried (see run_batch)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                conn.close()
            conn = self._conn = self._engine.connect()
        with conn.begin():
            yield conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def run_batch(begin: Begin, ops: Sequence[Any]) -> list[Outcome]:
    """Run `ops` in one transaction; if that fails, each alone, so a bad write fails alone.

    An op with a `prepare()` (decoding and checking its input) has it called first,
    outside the transaction; an op whose prepare fails fails alone, and the others run.
    """
    outcomes: list[Outcome | None] = [_prepared(op) for op in ops]
    ready = [op for op, outcome in zip(ops, outcomes, strict=True) if outcome is None]
    if not ready:
        return [outcome for outcome in outcomes if outcome is not None]
    done = iter(_run_ready(begin, ready))
    return [next(done) if outcome is None else outcome for outcome in outcomes]


def _prepared(op: Any) -> Outcome | None:
    """None when `op` is ready to run, or the error its prepare() failed with."""
    prepare = getattr(op, "prepare", None)
    if prepare is None:
        return None
    try:
        prepare()
    except Exception as exc:  # noqa: BLE001 - handed to the caller
        return None, exc
    return None


def _run_ready(begin: Begin, ops: list[Any]) -> list[Outcome]:
    try:
        with begin() as conn:
            return [(result, None) for result in _run_ops(conn, ops)]
    except Exception as exc:  # noqa: BLE001 - each write is retried alone below
        if len(ops) == 1 and not _connection_lost(exc):
            return [(None, exc)]
    return [_run_one(begin, op) for op in ops]


def _connection_lost(exc: Exception) -> bool:
    """The database connection broke under the batch (worth one more try on a new one)."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _run_one(begin: Begin, op: Any) -> Outcome:
    try:
        with begin() as conn:
            return op(conn), None
    except Exception as exc:  # noqa: BLE001 - handed to the caller
        return None, exc


class _Nothing:
    """The barrier's write: does nothing, in order with the others, wherever it runs."""

    portable = True

    def __call__(self, conn: Connection) -> None:
        return None


_NOTHING = _Nothing()


def _run_ops(conn: Connection, ops: list[Any]) -> list[Any]:
    """Run a batch's ops in order; consecutive Bulk ops of one key run as one group."""
    results: list[Any] = []
    i, n = 0, len(ops)
    while i < n:
        op = ops[i]
        key = getattr(op, "bulk_key", None)
        j = i + 1
        if key is not None:
            while j < n and getattr(ops[j], "bulk_key", None) == key:
                j += 1
        if j - i == 1:
            results.append(op(conn))
        else:
            done = op.run_many(conn, ops[i:j])
            if len(done) != j - i:
                raise RuntimeError("Bulk.run_many returned the wrong number of results")
            results.extend(done)
        i = j
    return results


def _deliver(
    outcomes: list[
        tuple[asyncio.Future[Any] | None, asyncio.AbstractEventLoop, Any, BaseException | None]
    ],
) -> None:
    """Resolve a batch's futures with one wake-up per event loop; log unawaited failures."""
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
    ] = {}
    for fut, loop, result, exc in outcomes:
        if fut is None:  # queued with enqueue(): nobody waits
            if exc is not None:
                log.error("a queued write failed and was dropped: %s", exc)
            continue
        by_loop.setdefault(loop, []).append((fut, result, exc))
    for loop, items in by_loop.items():
        loop.call_soon_threadsafe(_resolve_all, items)


def _resolve_all(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, exc in items:
        _resolve(fut, result, exc)


def _resolve(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
