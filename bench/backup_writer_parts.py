"""Diagnosis: which part of a streamed backup slows the shop writer's commits?

    flock /tmp/storesafe-bench.lock .venv/bin/python bench/backup_writer_parts.py --rounds 6

One shop writer (tests/support/shopsim.py) commits throughout; the contenders run
in rounds, in an order that rotates from round to round, each after sync() and a
short settle, and every commit counts for the window it started in:

  idle        nothing, as long as a raw gbak takes
  raw         `gbak -b -g -se localhost:service_mgr db file` (the server writes a file)
  pipe        the same into a named pipe that `cat` drains: what the pipe costs
  fdb_pipe    the backup started through fdb's services API, its verbose log read to
              the end as the agent does, into a pipe that `cat` drains
  pipe_copy   the same as `pipe`, drained by `tee` into a file and `sha256sum`, then
              fsynced: a backup without compression
  pipe_zstd   the same as `pipe`, drained by `zstd -1` (nice 10) into a file
  agent       the agent's own streaming (agent.firebird.gbak.backup: services gbak
              into a pipe, zstd -1 in Python, sha256, writes, fsync)

It prints each contender's median duration, the writer's p99 (pooled and median of
rounds) and p50. Uses the cached database of bench/firebird_backup.py (run that once
first). Linux only; root (the server writes into the pipes as the firebird user).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import fdb  # noqa: E402
import firebird_backup as fb  # noqa: E402

from agent.firebird import gbak  # noqa: E402
from agent.firebird.files import prepare_spool  # noqa: E402
from common.firebird.connection import FirebirdTarget  # noqa: E402
from tests.support.shopsim import ShopWriter  # noqa: E402


class Parts:
    def __init__(self, database: Path, pw: str) -> None:
        self.db, self.pw = str(database), pw
        self.target = FirebirdTarget("localhost", self.db, "SYSDBA", pw)
        self.env = {**os.environ, "ISC_USER": "SYSDBA", "ISC_PASSWORD": pw}
        self.work = fb.CACHE / "writer-parts"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir()
        user = pwd.getpwnam("firebird")
        os.chown(self.work, user.pw_uid, user.pw_gid)
        self.out, self.fifo, self.zst = (self.work / n for n in ("o.fbk", "p.fifo", "o.zst"))

    def clean(self) -> None:
        for path in (self.out, self.fifo, self.zst):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.work / "agent", ignore_errors=True)

    def raw(self) -> None:
        cmd = ["gbak", "-b", "-g", "-se", "localhost:service_mgr", self.db, str(self.out)]
        subprocess.run(cmd, env=self.env, check=True, stdout=subprocess.DEVNULL)

    def _drained(self, reader: str, start: Callable[[], None]) -> None:
        os.mkfifo(self.fifo)
        os.chmod(self.fifo, 0o666)  # the server writes as the firebird user
        proc = subprocess.Popen(reader, shell=True)
        try:
            start()
        finally:
            proc.wait(timeout=120)

    def _gbak_into_fifo(self) -> None:
        cmd = ["gbak", "-b", "-g", "-se", "localhost:service_mgr", self.db, str(self.fifo)]
        subprocess.run(cmd, env=self.env, check=True, stdout=subprocess.DEVNULL)

    def _fdb_into_fifo(self) -> None:
        svc = fdb.services.connect(host="localhost", user="SYSDBA", password=self.pw)
        try:
            svc.backup(self.db, str(self.fifo), collect_garbage=0)
            for _line in svc:
                pass
        finally:
            svc.close()

    def pipe(self) -> None:
        self._drained(f"cat {self.fifo} > /dev/null", self._gbak_into_fifo)

    def fdb_pipe(self) -> None:
        self._drained(f"cat {self.fifo} > /dev/null", self._fdb_into_fifo)

    def pipe_copy(self) -> None:
        reader = f"tee {self.out} < {self.fifo} | sha256sum > /dev/null && sync {self.out}"
        self._drained(reader, self._gbak_into_fifo)

    def pipe_zstd(self) -> None:
        reader = f"nice -n 10 zstd -q -1 -c {self.fifo} > {self.zst}"
        self._drained(reader, self._gbak_into_fifo)

    def agent(self) -> None:
        (self.work / "agent").mkdir(exist_ok=True)
        spool = prepare_spool(self.work / "agent")
        partial = spool.partial("parts.fbk.zst")
        gbak.backup(self.target, spool, partial)
        partial.unlink()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--only", default="", help="comma-separated contenders to run (default: all)"
    )
    args = parser.parse_args()
    pw = fb.password()
    database = fb.CACHE / f"shop-{args.size_mb}mb.fdb"
    if not database.exists():
        raise SystemExit(f"{database} is missing: run bench/firebird_backup.py once first")
    parts = Parts(database, pw)
    parts.raw()  # warm the cache like the other contenders will find it
    started = time.monotonic()
    parts.raw()
    idle_seconds = time.monotonic() - started
    contenders: dict[str, Callable[[], None]] = {
        "idle": lambda: time.sleep(idle_seconds),
        "raw": parts.raw,
        "pipe": parts.pipe,
        "fdb_pipe": parts.fdb_pipe,
        "pipe_copy": parts.pipe_copy,
        "pipe_zstd": parts.pipe_zstd,
        "agent": parts.agent,
    }
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(contenders))
        if unknown:
            raise SystemExit(f"unknown contenders: {', '.join(unknown)}")
        contenders = {name: contenders[name] for name in wanted}
    windows: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    writer = ShopWriter(parts.target).start()
    time.sleep(1.0)  # the writer's own start-up is nobody's window
    try:
        for i in range(args.rounds):
            order = names[i % len(names) :] + names[: i % len(names)]
            print(f"round {i + 1}/{args.rounds}: {', '.join(order)}", flush=True)
            for name in order:
                parts.clean()
                os.sync()
                time.sleep(0.5)
                t0 = time.monotonic()
                contenders[name]()
                windows[name].append((t0, time.monotonic()))
    finally:
        stats = writer.stop()
        parts.clean()
    if stats.errors:
        raise SystemExit(f"the writer saw errors: {stats.errors[:3]}")
    print(f"\n{'contender':<10}  {'median s':>8}  {'p99 pooled':>10}  {'p99 rounds':>10}  "
          f"{'p50':>5}  commits")  # fmt: skip
    for name, spans in windows.items():
        per_round = [stats.between([span]) for span in spans]
        pooled = sorted(x for r in per_round for x in r)
        seconds = statistics.median(t1 - t0 for t0, t1 in spans)
        rounds_p99 = statistics.median(p99(r) for r in per_round)
        print(
            f"{name:<10}  {seconds:>8.2f}  {p99(pooled):>8.1f}ms  {rounds_p99:>8.1f}ms  "
            f"{pooled[len(pooled) // 2]:>5.1f}  {len(pooled)}"
        )


if __name__ == "__main__":
    main()
