"""A simulated shop: a demo database and a writer process that moves money between accounts.

A test and demo tool, kept out of the agent package so it never ships to shop
PCs; run it from the clone. Used by the integration tests (every restored copy must keep the balance total
exactly), by the benchmark (commit latency during backups) and by the README
demo. The writer runs in its own process with its own connection, commits
each transfer and records how long each took.

    python -m tests.support.shopsim create DB [--accounts N] [--filler-mb M]
    python -m tests.support.shopsim write DB --seconds S
    python -m tests.support.shopsim total DB

The password comes from STORESAFE_FB_PASSWORD (never from the command line).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import string
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import fdb

from common.firebird.connection import FirebirdTarget, attach, ensure_client_loaded

OPENING_BALANCE = 10_000
THINK_SECONDS = 0.003

_SCHEMA = (
    "CREATE TABLE CUSTOMERS (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(80) NOT NULL,"
    " PHONE VARCHAR(20))",
    "CREATE TABLE ACCOUNTS (ID INTEGER NOT NULL PRIMARY KEY, CUSTOMER_ID INTEGER NOT NULL"
    " REFERENCES CUSTOMERS(ID), BALANCE BIGINT NOT NULL)",
    "CREATE TABLE TRANSFERS (ID BIGINT NOT NULL PRIMARY KEY, FROM_ID INTEGER NOT NULL,"
    " TO_ID INTEGER NOT NULL, AMOUNT INTEGER NOT NULL, CREATED_AT TIMESTAMP NOT NULL)",
    "CREATE SEQUENCE TRANSFER_SEQ",
    "CREATE TABLE ITEMS (ID INTEGER NOT NULL PRIMARY KEY, NAME VARCHAR(100) NOT NULL,"
    " NOTES VARCHAR(900), PRICE NUMERIC(12,2))",
    "CREATE INDEX ITEMS_NAME ON ITEMS (NAME)",
)


def create_shop(
    target: FirebirdTarget, *, accounts: int = 200, filler_mb: int = 0, page_size: int = 8192
) -> None:
    """Create the shop database at target.database (the server must be able to write there)."""
    ensure_client_loaded(target.client_library)
    con = fdb.create_database(
        f"CREATE DATABASE '{target.dsn}' USER '{target.user}' PASSWORD '{target.password}'"
        f" PAGE_SIZE {page_size} DEFAULT CHARACTER SET UTF8"
    )
    try:
        for ddl in _SCHEMA:
            con.execute_immediate(ddl)
        con.commit()
        cur = con.cursor()
        cur.executemany(
            "INSERT INTO CUSTOMERS VALUES (?, ?, ?)",
            [(i, f"Customer {i}", f"555-{i:06d}") for i in range(1, accounts + 1)],
        )
        cur.executemany(
            "INSERT INTO ACCOUNTS VALUES (?, ?, ?)",
            [(i, i, OPENING_BALANCE) for i in range(1, accounts + 1)],
        )
        con.commit()
        _fill(con, filler_mb)
    finally:
        con.close()


def _fill(con: Any, filler_mb: int) -> None:
    """About `filler_mb` MB of item rows with text that compresses like real data."""
    rng = random.Random(42)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(2000)]
    rows = filler_mb * 1024  # ~1 KB per row on disk
    cur = con.cursor()
    batch: list[tuple[int, str, str, float]] = []
    for i in range(1, rows + 1):
        notes = " ".join(rng.choices(words, k=110))[:900]
        batch.append((i, f"Item {i} {rng.choice(words)}", notes, round(rng.random() * 500, 2)))
        if len(batch) == 2000:
            cur.executemany("INSERT INTO ITEMS VALUES (?, ?, ?, ?)", batch)
            con.commit()
            batch.clear()
    if batch:
        cur.executemany("INSERT INTO ITEMS VALUES (?, ?, ?, ?)", batch)
        con.commit()


def total_balance(target: FirebirdTarget, database: str | None = None) -> tuple[int, int]:
    """(number of accounts, sum of balances) in `database` (default: the target's)."""
    with attach(target, database, what="reading the balance total") as con:
        cur = con.cursor()
        cur.execute("SELECT COUNT(*), SUM(BALANCE) FROM ACCOUNTS")
        count, total = cur.fetchone()
        con.commit()
    return int(count), int(total or 0)


@dataclasses.dataclass(frozen=True)
class WriterStats:
    transfers: int
    errors: list[str]
    latencies_ms: list[float]
    # time.monotonic() at the start of each transfer (same clock in every process)
    started: list[float] = dataclasses.field(default_factory=list)

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def between(self, windows: list[tuple[float, float]]) -> list[float]:
        """Latencies of the transfers that started inside any of `windows` (monotonic)."""
        return [
            ms
            for t, ms in zip(self.started, self.latencies_ms, strict=True)
            if any(lo <= t < hi for lo, hi in windows)
        ]


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (1-99) of `values`, 0.0 for none."""
    if not values:
        return 0.0
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


class ShopWriter:
    """A process moving money between accounts, one committed transaction per transfer."""

    def __init__(self, target: FirebirdTarget, *, think_seconds: float = THINK_SECONDS) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._ready = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_write_loop,
            daemon=True,
            args=(target, think_seconds, self._stop, self._ready, send),
        )

    @property
    def pid(self) -> int | None:
        """The writer process's id once started."""
        return self._proc.pid

    def start(self, timeout: float = 30.0) -> ShopWriter:
        self._proc.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the shop writer did not start")
        return self

    def stop(self, timeout: float = 30.0) -> WriterStats:
        self._stop.set()
        if not self._recv.poll(timeout):
            self._proc.kill()
            raise RuntimeError("the shop writer did not report")
        stats: WriterStats = self._recv.recv()
        self._proc.join(timeout)
        return stats


def _write_loop(
    target: FirebirdTarget, think: float, stop: Any, ready: Any, send: Connection
) -> None:
    rng = random.Random(os.getpid())
    latencies: list[float] = []
    started: list[float] = []
    errors: list[str] = []
    transfers = 0
    with attach(target, what="the shop writer") as con:
        cur = con.cursor()
        cur.execute("SELECT MAX(ID) FROM ACCOUNTS")
        accounts = int(cur.fetchone()[0])
        con.commit()
        ready.set()
        while not stop.is_set():
            a, b = rng.sample(range(1, accounts + 1), 2)
            amount = rng.randint(1, 100)
            started.append(time.monotonic())
            t0 = time.perf_counter()
            try:
                cur.execute("UPDATE ACCOUNTS SET BALANCE = BALANCE - ? WHERE ID = ?", (amount, a))
                cur.execute("UPDATE ACCOUNTS SET BALANCE = BALANCE + ? WHERE ID = ?", (amount, b))
                cur.execute(
                    "INSERT INTO TRANSFERS VALUES (NEXT VALUE FOR TRANSFER_SEQ, ?, ?, ?,"
                    " CURRENT_TIMESTAMP)",
                    (a, b, amount),
                )
                con.commit()
                transfers += 1
            except Exception as exc:  # noqa: BLE001 - the writer records every failure
                errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                con.rollback()
            latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(think)
    send.send(
        WriterStats(
            transfers=transfers, errors=errors[:20], latencies_ms=latencies, started=started
        )
    )


def _target_from_env(database: str) -> FirebirdTarget:
    return FirebirdTarget(
        host=os.environ.get("STORESAFE_FB_HOST", "localhost"),
        database=database,
        user=os.environ.get("STORESAFE_FB_USER", "SYSDBA"),
        password=os.environ.get("STORESAFE_FB_PASSWORD", ""),
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _server_writable_folder(folder: Path) -> None:
    """Create the database folder; as root, hand it to the server's OS user (Linux)."""
    if folder.exists() or sys.platform == "win32":
        return
    folder.mkdir(parents=True)
    if os.geteuid() == 0:
        with contextlib.suppress(KeyError, OSError):
            shutil.chown(folder, "firebird", "firebird")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.shopsim")
    parser.add_argument("command", choices=("create", "write", "total"))
    parser.add_argument("database")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--filler-mb", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60.0, help="0: until Ctrl-C")
    args = parser.parse_args(argv)
    target = _target_from_env(args.database)
    if args.command == "create":
        _server_writable_folder(Path(args.database).parent)
        create_shop(target, accounts=args.accounts, filler_mb=args.filler_mb)
        print(f"created {args.database}")
    elif args.command == "total":
        count, total = total_balance(target)
        print(f"{count} accounts, balance total {total}")
    else:
        signal.signal(signal.SIGTERM, _interrupt)
        writer = ShopWriter(target).start()
        deadline = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
        with contextlib.suppress(KeyboardInterrupt):
            while time.monotonic() < deadline:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        stats = writer.stop()
        print(
            f"{stats.transfers} transfers, {len(stats.errors)} errors, "
            f"p99 {stats.percentile(99):.1f} ms"
        )


if __name__ == "__main__":
    main()
