"""Raw write throughput of each blob store backend: the reference for server ingest.

    .venv/bin/python bench/store_write.py                  # 1,000 blobs of 256 KiB per backend
    .venv/bin/python bench/store_write.py --quick          # smoke run: 200 blobs of 64 KiB
    .venv/bin/python bench/store_write.py --count 5000 --size 16384 --backends filesystem

For each backend (filesystem under --dir, moto's server and SeaweedFS started on
loopback as the tests start them) it writes --count distinct blobs of --size bytes
with --concurrency writes in flight (default 10, as 10 agents uploading at once), two
ways, each into its own fresh prefix:

  backend   Backend.create straight from --concurrency threads: the bytes into the
            backend and nothing else (the "same bytes straight into the same backend"
            figure that the issue-13 ingest benchmark must reach at least 0.5x of)
  store     BlobStore.save from asyncio tasks: key check, BLAKE3 of what arrived (the
            digest agents state for chunks), create-only write, through the store's
            bounded thread pool (--workers)
  batch     BlobStore.save_many of --batch blobs at a time from --concurrency tasks, as
            the server stores a PutChunks stream (filesystem: one syncfs for the batch's
            bytes and one for its names, instead of two fsyncs a blob)

Each mode runs --rounds times (default 3), the order alternating between rounds (the
second writer into a filesystem is often slower than the first on this shared box);
the table shows the median run per mode. Columns: MiB/s and blobs/s over the wall time
of the writes; `client CPU s` is this process's CPU; `server CPU s` that of the S3
server process (none for filesystem). Prints a table and writes every run and the
medians to bench/results/store_write[-quick].json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchlib
import psutil

sys.path.insert(0, str(benchlib.ROOT))

from server.storage import BlobStore, Digest, open_store
from tests.support.s3servers import (
    S3Server,
    start_moto,
    start_seaweedfs,
    use_test_credentials,
)

BACKENDS = ("filesystem", "moto", "seaweedfs")


def blobs(count: int, size: int, seed: bytes) -> tuple[bytes, list[tuple[str, Digest]]]:
    """One random buffer; blob i is buffer[i : i + size] (distinct, cheap to hold)."""
    buffer = os.urandom(size + count)
    names = []
    for i in range(count):
        hexed = hashlib.sha256(seed + buffer[i : i + size]).hexdigest()
        names.append((f"{hexed[:2]}/{hexed}", Digest.of(buffer[i : i + size], "blake3")))
    return buffer, names


def write_backend(
    store: BlobStore, prefix: str, buffer: bytes, names: list[Any], size: int, concurrency: int
) -> None:
    backend = store.backend

    def one(i: int) -> None:
        key = f"{prefix}/{names[i][0]}"
        if not backend.create(key, buffer[i : i + size]):
            raise RuntimeError(f"{key} existed already")

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(len(names))))


def write_store(
    store: BlobStore, prefix: str, buffer: bytes, names: list[Any], size: int, concurrency: int
) -> None:
    async def main() -> None:
        slots = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with slots:
                key, digest = names[i]
                saved = await store.save(f"{prefix}/{key}", buffer[i : i + size], digest)
                if not saved.created:
                    raise RuntimeError(f"{key} existed already")

        await asyncio.gather(*(one(i) for i in range(len(names))))

    asyncio.run(main())


def write_batches(
    store: BlobStore,
    prefix: str,
    buffer: bytes,
    names: list[Any],
    size: int,
    concurrency: int,
    batch: int,
) -> None:
    async def main() -> None:
        slots = asyncio.Semaphore(concurrency)

        async def some(start: int) -> None:
            async with slots:
                blobs = [
                    (f"{prefix}/{names[i][0]}", buffer[i : i + size], names[i][1])
                    for i in range(start, min(start + batch, len(names)))
                ]
                saved, error = await store.save_many(blobs)
                if error is not None or not all(s.created for s in saved):
                    raise RuntimeError(f"a batch at {start} was not created: {error}")

        await asyncio.gather(*(some(i) for i in range(0, len(names), batch)))

    asyncio.run(main())


def measure(
    name: str, url: str, server: S3Server | None, args: argparse.Namespace, work_dir: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every (round, mode) run of one backend, and per mode the run of median throughput."""
    store = open_store(url, work_dir, workers=args.workers)
    asyncio.run(store.check())
    server_proc = psutil.Process(server.proc.pid) if server else None
    runs: list[dict[str, Any]] = []
    try:
        for round_ in range(args.rounds):
            order = args.modes if round_ % 2 == 0 else list(reversed(args.modes))
            for mode in order:
                runs.append(one_run(store, name, mode, round_, server_proc, args))
                print(
                    f"  {name:<10} {mode:<8} round {round_ + 1}: {runs[-1]['mib_per_s']:>7} MiB/s",
                    flush=True,
                )
    finally:
        asyncio.run(store.close())
    medians = []
    for mode in args.modes:
        mine = sorted((r for r in runs if r["mode"] == mode), key=lambda r: r["mib_per_s"])
        medians.append(mine[len(mine) // 2])
    return runs, medians


def one_run(
    store: BlobStore,
    name: str,
    mode: str,
    round_: int,
    server_proc: psutil.Process | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    buffer, names = blobs(args.count, args.size, f"{name}-{mode}-{round_}".encode())
    prefix = f"sites/bench-{mode}-{round_}/chunks"
    srv_before = _cpu(server_proc)
    cpu_before = time.process_time()
    began = time.perf_counter()
    if mode == "batch":
        write_batches(store, prefix, buffer, names, args.size, args.concurrency, args.batch)
    else:
        writer = write_backend if mode == "backend" else write_store
        writer(store, prefix, buffer, names, args.size, args.concurrency)
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu_before
    srv = _cpu(server_proc) - srv_before if server_proc else None
    total = args.count * args.size
    return {
        "backend": name,
        "mode": mode,
        "round": round_ + 1,
        "blobs": args.count,
        "blob_bytes": args.size,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "seconds": round(wall, 3),
        "mib_per_s": round(total / wall / 2**20, 1),
        "blobs_per_s": round(args.count / wall, 1),
        "client_cpu_s": round(cpu, 2),
        "server_cpu_s": round(srv, 2) if srv is not None else None,
    }


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return 0.0
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--count", type=int, default=1000, help="blobs per backend and mode")
    parser.add_argument("--size", type=int, default=256 * 1024, help="bytes per blob")
    parser.add_argument("--concurrency", type=int, default=10, help="writes in flight")
    parser.add_argument("--workers", type=int, default=8, help="BlobStore thread pool size")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/var/tmp"),
        help="where the filesystem store and the S3 servers' data go",
    )
    parser.add_argument(
        "--modes",
        default="backend,store,batch",
        help="which writes, in this order (backend, store, batch)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="runs per mode, the order alternating; the median is shown",
    )
    parser.add_argument("--batch", type=int, default=32, help="blobs a save_many call (mode batch)")
    parser.add_argument("--quick", action="store_true", help="200 blobs of 64 KiB")
    args = parser.parse_args()
    if args.quick:
        args.count, args.size, args.rounds = 200, 64 * 1024, 1
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or set(args.modes) - {"backend", "store", "batch"}:
        parser.error("--modes takes backend, store and/or batch")
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(chosen) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")

    use_test_credentials()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="storesafe-bench-store-", dir=args.dir))
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    print(f"{args.count} blobs of {args.size:,} bytes, {args.concurrency} in flight, per mode")
    try:
        for name in chosen:
            server = None
            if name == "moto":
                server = start_moto(work)
            elif name == "seaweedfs":
                server = start_seaweedfs(work)
            try:
                url = server.url("bench") if server else str(work / "fs-store")
                backend_runs, medians = measure(name, url, server, args, work)
                runs += backend_runs
                rows += medians
            finally:
                if server:
                    server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    print()
    print(
        benchlib.table(
            ["backend", "mode", "MiB/s", "blobs/s", "seconds", "client CPU s", "server CPU s"],
            [
                [
                    r["backend"],
                    r["mode"],
                    r["mib_per_s"],
                    r["blobs_per_s"],
                    r["seconds"],
                    r["client_cpu_s"],
                    "-" if r["server_cpu_s"] is None else r["server_cpu_s"],
                ]
                for r in rows
            ],
        )
    )
    print(
        f"\n1-minute load average: {load_before:.2f} before, {load_after:.2f} after"
        + (
            "  (high: wall-clock figures are inflated)"
            if max(load_before, load_after) > 1.5
            else ""
        )
    )
    payload = {
        "machine": benchlib.machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "load": [load_before, load_after],
        "medians": rows,
        "runs": runs,
    }
    path = benchlib.write_json(f"store_write{'-quick' if args.quick else ''}.json", payload)
    print(f"JSON: {path}")


if __name__ == "__main__":
    main()
