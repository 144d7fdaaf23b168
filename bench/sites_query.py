"""`ListSites` over 10,000 sites with 1,000,000 run rows on SQLite, timed at the server.

    .venv/bin/python bench/sites_query.py           # builds the data once (cached), then times
    .venv/bin/python bench/sites_query.py --quick   # smoke run on 1,000 sites / 20,000 runs

The data dir is made by `storesafe-server init` (so it has the server's own schema from
migrate() and an admin token), then filled by bulk inserts straight into the tables and
cached under --cache-dir. Each run refreshes the sites' timestamps relative to now (so the
status mix stays the same however old the cache is), starts the real `storesafe-server
serve` on it and measures:

  in-process   FleetQueries.list_sites() on the same database (and its parts: SQL + rows,
               status function, proto conversion and serialisation)
  rpc          the ListSites round trip from a local client, over many repetitions
  cli          the wall time of `storesafe sites --json` (when the CLI is installed)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import benchlib
from storesafe.v1 import admin_pb2, admin_pb2_grpc

DEFAULT_CACHE = Path("/var/tmp/storesafe-bench")
KINDS = ("backup", "image-sync", "upload", "validation")


# --------------------------------------------------------------------------- data set


def build(data_dir: Path, sites: int, runs: int, seed: int = 7) -> dict[str, Any]:
    """Init a data dir and fill it with `sites` sites and `runs` run rows."""
    from sqlalchemy import insert

    from server.db.engine import make_engine, sqlite_url
    from server.state.tables import AGENTS, RUNS, SITES

    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = benchlib.init_server(data_dir)
    rng = random.Random(seed)
    engine = make_engine(sqlite_url(data_dir))
    began = time.monotonic()
    now = dt.datetime.now(dt.UTC)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(SITES),
                [
                    {
                        "id": i + 1,
                        "name": _site_name(i),
                        "group": f"region-{i % 40:02d}",
                        "created_at": now - dt.timedelta(days=120),
                    }
                    for i in range(sites)
                ],
            )
            conn.execute(
                insert(AGENTS),
                [
                    {
                        "id": f"{rng.getrandbits(64):016x}",
                        "site_id": i + 1,
                        "secret_hash": f"{rng.getrandbits(256):064x}",
                        "hostname": f"pos-{i:05d}",
                        "created_at": now - dt.timedelta(days=90),
                    }
                    for i in range(sites)
                ],
            )
        per_site = max(1, runs // sites)
        chunk: list[dict[str, Any]] = []
        written = 0
        for i in range(sites):
            count = per_site if i < sites - 1 else runs - written
            for j in range(count):
                chunk.append(_run_row(rng, i + 1, j, now))
            written += count
            if len(chunk) >= 50_000 or i == sites - 1:
                with engine.begin() as conn:
                    conn.execute(insert(RUNS), chunk)
                chunk = []
                print(f"  built {written:,}/{runs:,} runs", end="\r", flush=True)
        print()
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    meta = {
        "sites": sites,
        "runs": runs,
        "admin_token": server.admin_token,
        "ca_cert": str(server.ca_path),
        "build_seconds": round(time.monotonic() - began, 1),
    }
    (data_dir / "bench-meta.json").write_text(json.dumps(meta))
    return meta


def _site_name(i: int) -> str:
    return f"shop-{i:05d}"


def _run_row(rng: random.Random, site_id: int, j: int, now: dt.datetime) -> dict[str, Any]:
    kind = KINDS[j % len(KINDS)]
    finished = now - dt.timedelta(hours=6 * j + rng.random() * 3)
    ok = rng.random() > 0.03
    details: dict[str, Any]
    if kind == "backup":
        details = {
            "backup": {
                "method": "gbak",
                "file": f"s{site_id}-{finished:%Y%m%d-%H%M}.fbk.zst",
                "size_raw": str(3 << 30),
                "size_compressed": str(700 << 20),
                "checksum": "sha256:" + f"{rng.getrandbits(256):064x}",
                "verification": "VERIFICATION_PASSED" if ok else "VERIFICATION_FAILED",
                "verification_seconds": 41.5,
                "table_counts": {"ARTICLES": "48213", "SALES": "1204332"},
                "backup_seconds": 52.0,
            }
        }
    elif kind == "image-sync":
        details = {"image_sync": {"files_scanned": "120000", "files_copied": "42"}}
    elif kind == "validation":
        details = {"validation": {"errors": 0 if ok else 2, "summary": "" if ok else "2 errors"}}
    else:
        details = {"upload": {"file": "x.fbk.zst", "bytes": str(700 << 20)}}
    return {
        "id": f"{site_id:05d}-{j:04d}-{rng.getrandbits(64):016x}",
        "site_id": site_id,
        "kind": kind,
        "started_at": finished - dt.timedelta(seconds=95),
        "finished_at": finished,
        "outcome": "succeeded" if ok else "failed",
        "verification": ("passed" if ok else "failed") if kind == "backup" else "",
        "error_class": "" if ok else "firebird.io",
        "error_message": "" if ok else "I/O error during read of the database file",
        "trigger": "schedule",
        "received_at": finished + dt.timedelta(seconds=2),
        "details_json": json.dumps(details),
    }


def refresh_sites(data_dir: Path, seed: int = 11) -> dict[str, int]:
    """Set every site's summary facts relative to now, for a fixed mix of statuses."""
    from sqlalchemy import bindparam, func, select, update

    from server.db.engine import make_engine, migrate, sqlite_url
    from server.state.tables import SITES

    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    engine = make_engine(sqlite_url(data_dir))
    migrate(engine)  # a data set cached by an older version gets the newer schema
    mix: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            n = conn.execute(select(func.count()).select_from(SITES)).scalar_one()
            rows = []
            for i in range(n):
                kind = _pick(rng)
                mix[kind] = mix.get(kind, 0) + 1
                rows.append({"b_id": i + 1, **_facts(kind, rng, now)})
            stmt = (
                update(SITES)
                .where(SITES.c.id == bindparam("b_id"))
                .values({k: bindparam(k) for k in rows[0] if k != "b_id"})
            )
            conn.execute(stmt, rows)
    finally:
        engine.dispose()
    return mix


def _pick(rng: random.Random) -> str:
    r = rng.random()
    for kind, upto in (
        ("never", 0.02),
        ("offline", 0.06),
        ("failing", 0.10),
        ("stale", 0.14),
        ("warning", 0.20),
    ):
        if r < upto:
            return kind
    return "ok"


def _facts(kind: str, rng: random.Random, now: dt.datetime) -> dict[str, Any]:
    last_backup = now - dt.timedelta(hours=rng.uniform(1, 20))
    disks = [
        {"label": "data", "path": "C:\\", "total_bytes": 512 << 30, "free_bytes": 200 << 30},
        {"label": "backup", "path": "D:\\", "total_bytes": 1 << 40, "free_bytes": 600 << 30},
    ]
    firebird = {
        "oit": "120000",
        "oat": "120010",
        "ost": "120010",
        "next_transaction": "120020",
        "sweep_interval": "20000",
        "forced_writes": True,
        "page_size": 8192,
        "ods": "12.0",
        "size_bytes": str(3 << 30),
        "backup_state": 0,
        "server_version": "WI-V3.0.10.33601 Firebird 3.0",
    }
    facts: dict[str, Any] = {
        "enrolled_at": now - dt.timedelta(days=90),
        "last_seen_at": now - dt.timedelta(seconds=rng.uniform(0, 60)),
        "agent_version": "0.1.0",
        "hostname": "pos-host",
        "os": "Windows 10 Pro 22H2",
        "clock_skew_seconds": rng.uniform(-2, 2),
        "config_revision_applied": 3,
        "outbox_pending": 0,
        "disks_json": json.dumps(disks),
        "firebird_json": json.dumps(firebird),
        "last_backup_at": last_backup,
        "last_backup_ok": True,
        "last_backup_error": "",
        "last_backup_size": 700 << 20,
        "last_good_backup_at": last_backup,
        "last_image_sync_at": now - dt.timedelta(hours=rng.uniform(1, 20)),
        "last_image_sync_ok": True,
        "last_image_sync_error": "",
        "last_validation_at": now - dt.timedelta(days=rng.uniform(1, 6)),
        "last_validation_errors": 0,
        "last_validation_summary": "",
    }
    if kind == "never":
        facts.update(last_backup_at=None, last_backup_ok=None, last_good_backup_at=None)
    elif kind == "offline":
        facts["last_seen_at"] = now - dt.timedelta(hours=rng.uniform(1, 72))
    elif kind == "failing":
        facts.update(
            last_backup_ok=False,
            last_backup_error="I/O error during read of the database file",
            last_good_backup_at=last_backup - dt.timedelta(days=1),
        )
    elif kind == "stale":
        old = now - dt.timedelta(hours=rng.uniform(30, 200))
        facts.update(last_backup_at=old, last_good_backup_at=old)
    elif kind == "warning":
        disks[1]["free_bytes"] = 20 << 30
        facts["disks_json"] = json.dumps(disks)
    return facts


# --------------------------------------------------------------------------- measurements


def _stats(samples: list[float], cpu: list[float] | None = None) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    out = {
        "n": len(ms),
        "min_ms": ms[0],
        "median_ms": statistics.median(ms),
        "p90_ms": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
        "max_ms": ms[-1],
    }
    if cpu:
        out["cpu_median_ms"] = statistics.median(c * 1000 for c in cpu)
        out["cpu_min_ms"] = min(cpu) * 1000
    return out


class _Clock:
    """Wall and CPU time (all threads of this process) between marks."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out


def in_process(data_dir: Path, reps: int) -> dict[str, dict[str, float]]:
    """FleetQueries.list_sites and its parts, in this process on the same database."""
    from common.clock import SystemClock
    from server.db.engine import make_engine, sqlite_url
    from server.rpc.convert import admin as convert
    from server.services.auth import Authenticator
    from server.services.fleet import FleetQueries
    from server.services.push import ConfigHub
    from server.services.revocation import Revocations
    from server.services.secretbox import SecretBox
    from server.state.config_state import SqlConfigState
    from server.state.sql import SqlFleetState
    from server.state.writer import BatchWriter

    names = ("list_sites", "sql_rows", "status", "proto", "serialize", "total")

    async def run() -> dict[str, dict[str, float]]:
        engine = make_engine(sqlite_url(data_dir))
        state = SqlFleetState(engine, BatchWriter(engine))
        clock = SystemClock()
        hub = ConfigHub(SqlConfigState(state), SecretBox.for_data_dir(data_dir), clock)
        await hub.refresh()
        revocations = Revocations(state, Authenticator(state), hub, clock)
        fleet = FleetQueries(state, clock, revocations, hub)
        wall: dict[str, list[float]] = {k: [] for k in names}
        cpu: dict[str, list[float]] = {k: [] for k in names}

        def note(name: str, lap: tuple[float, float]) -> None:
            wall[name].append(lap[0])
            cpu[name].append(lap[1])

        try:
            await fleet.list_sites()  # warm the page cache and statement cache
            for _ in range(reps):
                c = _Clock()
                await fleet.list_sites()
                note("list_sites", c.lap())
                total = _Clock()
                rows = await state.list_sites()
                note("sql_rows", c.lap())
                views = [fleet.view(r) for r in rows]
                note("status", c.lap())
                msg = admin_pb2.ListSitesResponse(sites=[convert.site_summary(v) for v in views])
                note("proto", c.lap())
                msg.SerializeToString()
                note("serialize", c.lap())
                note("total", total.lap())
        finally:
            state.close()
        return {k: _stats(wall[k], cpu[k]) for k in names}

    return asyncio.run(run())


def touch_sites(data_dir: Path, count: int, rng: random.Random) -> None:
    """Mark `count` random sites as just checked in, as the server's check-ins would."""
    import sqlite3

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(" ")
    con = sqlite3.connect(data_dir / "storesafe.db", timeout=30)
    try:
        n = con.execute("SELECT count(*) FROM sites").fetchone()[0]
        ids = [(now, now, i) for i in rng.sample(range(1, n + 1), min(count, n))]
        con.executemany("UPDATE sites SET last_seen_at = ?, updated_at = ? WHERE id = ?", ids)
        con.commit()
    finally:
        con.close()


def rpc(
    server: benchlib.Server, reps: int, *, data_dir: Path | None = None, changed: int = 0
) -> tuple[dict[str, float], int, int, float]:
    """ListSites round trips; CPU is the server process's CPU time per call.

    With `changed`, that many sites are updated (as by check-ins) before each call.
    Also returns the first call's time (the cold fleet-view cache after a start).
    """
    import psutil

    assert server.proc is not None
    proc = psutil.Process(server.proc.pid)
    rng = random.Random(5)
    with benchlib.channel(
        server.address, None, [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        call = stub.ListSites.with_call
        t0 = time.perf_counter()
        resp, _ = call(admin_pb2.ListSitesRequest(), metadata=server.admin_metadata, timeout=60)
        first = time.perf_counter() - t0
        samples, cpu = [], []
        for _ in range(reps):
            if changed and data_dir is not None:
                time.sleep(2.2)  # past the cache's 2 s overlap: only these changes are new
                touch_sites(data_dir, changed, rng)
            c0 = proc.cpu_times()
            t0 = time.perf_counter()
            resp, _ = call(admin_pb2.ListSitesRequest(), metadata=server.admin_metadata, timeout=60)
            samples.append(time.perf_counter() - t0)
            c1 = proc.cpu_times()
            cpu.append((c1.user + c1.system) - (c0.user + c0.system))
        return _stats(samples, cpu), len(resp.sites), resp.ByteSize(), first


def cli(server: benchlib.Server, reps: int) -> dict[str, Any] | None:
    exe = benchlib.BIN / "storesafe"
    if not exe.exists():
        return None
    if subprocess.run([str(exe), "--help"], capture_output=True).returncode != 0:
        return None
    env = {
        **os.environ,
        "STORESAFE_SERVER": server.address,
        "STORESAFE_TOKEN": server.admin_token,
    }
    samples = []
    out = b""
    code = 0
    for _ in range(reps):
        t0 = time.perf_counter()
        done = subprocess.run(
            [str(exe), "--insecure", "sites", "--json"], env=env, capture_output=True
        )
        samples.append(time.perf_counter() - t0)
        out, code = done.stdout, done.returncode
        if not out:
            print(f"  storesafe sites failed ({code}): {done.stderr.decode()[-300:]}")
            return None
    return {**_stats(samples), "exit_code": code, "sites": len(json.loads(out))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sites", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=30, help="repetitions of each measurement")
    p.add_argument("--cli-reps", type=int, default=5)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--rebuild", action="store_true", help="build the data set again")
    p.add_argument("--goal-ms", type=float, default=300.0)
    p.add_argument(
        "--changed",
        type=int,
        default=1_000,
        help="sites changed between calls in the churn measurement (10,000 agents "
        "checking in every 60 s change 1,000 sites in 6 s)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1,000 sites, 20,000 runs")
    args = p.parse_args()
    if args.quick:
        args.sites, args.runs, args.reps, args.cli_reps = 1_000, 20_000, 5, 2
    data_dir = args.cache_dir / f"sites-{args.sites}-runs-{args.runs}"
    meta_path = data_dir / "bench-meta.json"
    if args.rebuild or not meta_path.exists():
        print(f"building {args.sites:,} sites / {args.runs:,} runs in {data_dir} (once) ...")
        meta = build(data_dir, args.sites, args.runs)
        print(f"  built in {meta['build_seconds']} s")
    meta = json.loads(meta_path.read_text())
    mix = refresh_sites(data_dir)
    db_mb = (data_dir / "storesafe.db").stat().st_size / 2**20
    print(
        f"sites_query: {meta['sites']:,} sites, {meta['runs']:,} runs, SQLite {db_mb:,.0f} MB; "
        f"status mix {mix}"
    )
    server = benchlib.Server(
        data_dir=data_dir, admin_token=meta["admin_token"], ca_path=Path(meta["ca_cert"])
    )
    parts = in_process(data_dir, args.reps)
    server.start()
    try:
        rpc_stats, n_sites, size, cold = rpc(server, args.reps)
        churn_stats, _, _, _ = rpc(
            server, min(args.reps, 10), data_dir=data_dir, changed=args.changed
        )
        cli_stats = cli(server, args.cli_reps)
    finally:
        server.stop()

    headers = ["measurement", "n", "min ms", "median ms", "p90 ms", "max ms", "CPU median ms"]
    rows: list[list[Any]] = []

    def add(name: str, s: dict[str, Any]) -> None:
        rows.append(
            [
                name,
                s["n"],
                s["min_ms"],
                s["median_ms"],
                s["p90_ms"],
                s["max_ms"],
                s.get("cpu_median_ms", "-"),
            ]
        )

    add("ListSites RPC round trip (local client)", rpc_stats)
    add(f"  same, {args.changed:,} sites changed before each call", churn_stats)
    rows.append(
        ["  first call after start (cold cache)", 1, "-", round(cold * 1000, 1), "-", "-", "-"]
    )
    add("FleetQueries.list_sites (in-process)", parts["list_sites"])
    add("  state.list_sites: SQL + rows", parts["sql_rows"])
    add("  status function, all sites", parts["status"])
    add("  proto conversion", parts["proto"])
    add("  proto serialisation", parts["serialize"])
    add("  sum of the parts", parts["total"])
    if cli_stats is not None:
        add("`storesafe sites --json` wall (process)", cli_stats)
    print()
    print(benchlib.table(headers, rows))
    print()
    at_server = rpc_stats["median_ms"]
    server_cpu = rpc_stats["cpu_median_ms"]
    met = at_server < args.goal_ms
    print(
        f"ListSites at the server: median {at_server:.0f} ms round trip, {server_cpu:.0f} ms of "
        f"server CPU, for {n_sites:,} sites ({size / 2**20:.1f} MiB response); "
        f"goal < {args.goal_ms:g} ms: {'met' if met else 'NOT met'}"
        + ("" if met or server_cpu >= args.goal_ms else " (met in server CPU time)")
    )
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if load > 2 * cores:
        print(
            f"warning: 1-minute load average {load:.1f} on {cores} cores: other processes "
            f"competed with the benchmark; wall times are inflated, CPU times are steadier"
        )
    if cli_stats is None:
        print("`storesafe sites --json`: skipped (the CLI is not installed or fails --help)")
    else:
        print(
            f"`storesafe sites --json`: median {cli_stats['median_ms']:.0f} ms wall, including "
            f"interpreter start-up and JSON output (exit code {cli_stats['exit_code']})"
        )
    payload = {
        "benchmark": "sites_query",
        "machine": benchlib.machine(),
        "data": {**{k: v for k, v in meta.items() if k != "admin_token"}, "db_mb": db_mb},
        "status_mix": mix,
        "rpc": {**rpc_stats, "sites": n_sites, "response_bytes": size},
        "in_process": parts,
        "cli": cli_stats,
        "load_avg_1m": os.getloadavg()[0],
        "goal_ms": args.goal_ms,
        "goal_met": met,
    }
    path = benchlib.write_json(
        "sites_query-quick.json" if args.quick else "sites_query.json", payload
    )
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
