"""The fleet status page over 10,000 sites: server time per page, goal under 300 ms.

    .venv/bin/python bench/status_page.py           # builds the data once (cached), then times
    .venv/bin/python bench/status_page.py --quick   # smoke run on 1,000 sites

The fleet is built the way bench/sites_query.py builds it (`storesafe-server init`, then
bulk inserts; the sites' facts refreshed relative to now for a fixed status mix), cached
under --cache-dir. The real `storesafe-server serve --http-listen` runs on it and the
pages are fetched over one keep-alive HTTP connection. "Server time" is the server's own
`Server-Timing: app;dur=` header (from the request reaching the handler to the response
being built: auth, fleet view, filter, sort, template); the round trip adds the transfer.
Server CPU is the process's CPU time per request (psutil).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import benchlib
import sites_query

DEFAULT_CACHE = sites_query.DEFAULT_CACHE

PAGES = [
    ("fleet page 1 (500 rows a page)", "/"),
    ("  filtered: status=failing", "/?status=failing"),
    (
        "  filtered: group + sorted by last seen, desc",
        "/?group=region-07&sort=last_seen&order=desc",
    ),
    ("  sorted by status, page 10", "/?sort=status&page=10"),
    ("site page (50 runs, 2 charts)", "/sites/shop-04242"),
]


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(samples)
    return {
        "n": len(ms),
        "min_ms": ms[0],
        "median_ms": statistics.median(ms),
        "p90_ms": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
        "max_ms": ms[-1],
    }


class Client:
    def __init__(self, port: int, token: str, pid: int) -> None:
        import psutil

        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self._headers = {"Authorization": f"Bearer {token}"}
        self._proc = psutil.Process(pid)

    def get(self, path: str) -> tuple[float, float, float, int]:
        """(server ms, round trip ms, server CPU ms, body bytes)."""
        c0 = self._proc.cpu_times()
        t0 = time.perf_counter()
        self._conn.request("GET", path, headers=self._headers)
        reply = self._conn.getresponse()
        body = reply.read()
        wall = (time.perf_counter() - t0) * 1000
        c1 = self._proc.cpu_times()
        if reply.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {reply.status}: {body[:300]!r}")
        timing = reply.headers.get("Server-Timing", "")
        server = float(timing.split("dur=")[1]) if "dur=" in timing else float("nan")
        cpu = ((c1.user + c1.system) - (c0.user + c0.system)) * 1000
        return server, wall, cpu, len(body)

    def measure(self, path: str, reps: int) -> dict[str, Any]:
        server, wall, cpu = [], [], []
        size = 0
        for _ in range(reps):
            s, w, c, size = self.get(path)
            server.append(s)
            wall.append(w)
            cpu.append(c)
        return {
            "server": _stats(server),
            "round_trip": _stats(wall),
            "cpu_median_ms": statistics.median(cpu),
            "bytes": size,
        }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sites", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=200_000, help="run rows (20 per site)")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--changed", type=int, default=1_000, help="sites changed before each call")
    p.add_argument("--churn-reps", type=int, default=8)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--goal-ms", type=float, default=300.0)
    p.add_argument("--quick", action="store_true", help="smoke run: 1,000 sites")
    args = p.parse_args()
    if args.quick:
        args.sites, args.runs, args.reps, args.churn_reps = 1_000, 20_000, 5, 2
    data_dir = args.cache_dir / f"sites-{args.sites}-runs-{args.runs}"
    meta_path = data_dir / "bench-meta.json"
    if args.rebuild or not meta_path.exists():
        print(f"building {args.sites:,} sites / {args.runs:,} runs in {data_dir} (once) ...")
        meta = sites_query.build(data_dir, args.sites, args.runs)
        print(f"  built in {meta['build_seconds']} s")
    meta = json.loads(meta_path.read_text())
    mix = sites_query.refresh_sites(data_dir)
    print(f"status_page: {meta['sites']:,} sites, {meta['runs']:,} runs; status mix {mix}")
    server = benchlib.Server(
        data_dir=data_dir, admin_token=meta["admin_token"], ca_path=Path(meta["ca_cert"])
    )
    port = benchlib.free_port()
    server.start(serve_args=["--http-listen", f"127.0.0.1:{port}"])
    results: dict[str, Any] = {}
    try:
        assert server.proc is not None
        client = Client(port, server.admin_token, server.proc.pid)
        cold = client.get("/")
        for name, path in PAGES:
            path = path if args.sites > 4242 else path.replace("04242", "00042")
            client.get(path)  # warm: first use of this template and query
            results[name] = client.measure(path, args.reps)
        churn_server, churn_cpu = [], []
        rng = random.Random(5)
        for _ in range(args.churn_reps):
            time.sleep(2.2)  # past the site cache's 2 s overlap: only these changes are new
            sites_query.touch_sites(data_dir, args.changed, rng)
            s, _, c, _ = client.get("/")
            churn_server.append(s)
            churn_cpu.append(c)
        results[f"  fleet page 1, {args.changed:,} sites changed before each call"] = {
            "server": _stats(churn_server),
            "round_trip": None,
            "cpu_median_ms": statistics.median(churn_cpu),
            "bytes": None,
            "samples_ms": churn_server,
            "cpu_samples_ms": churn_cpu,
        }
    finally:
        server.stop()

    headers = ["page", "n", "server median ms", "server p90 ms", "round trip median ms",
               "server CPU median ms", "KiB"]  # fmt: skip
    rows: list[list[Any]] = []
    for name, r in results.items():
        rt = r["round_trip"]
        rows.append(
            [
                name,
                r["server"]["n"],
                r["server"]["median_ms"],
                r["server"]["p90_ms"],
                "-" if rt is None else rt["median_ms"],
                r["cpu_median_ms"],
                "-" if r["bytes"] is None else r["bytes"] / 1024,
            ]
        )
    rows.append(["  first request after start (cold cache)", 1, cold[0], "-", cold[1], "-", "-"])
    print()
    print(benchlib.table(headers, rows))
    print()
    fleet = results[PAGES[0][0]]["server"]
    met = fleet["median_ms"] < args.goal_ms and fleet["p90_ms"] < args.goal_ms
    print(
        f"fleet page at the server: median {fleet['median_ms']:.0f} ms, p90 "
        f"{fleet['p90_ms']:.0f} ms for {meta['sites']:,} sites; goal < {args.goal_ms:g} ms: "
        f"{'met' if met else 'NOT met'}"
    )
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    if load > 2 * cores:
        print(f"warning: 1-minute load average {load:.1f} on {cores} cores: times are inflated")
    payload = {
        "benchmark": "status_page",
        "machine": benchlib.machine(),
        "data": {k: v for k, v in meta.items() if k != "admin_token"},
        "status_mix": mix,
        "pages": results,
        "cold": {"server_ms": cold[0], "round_trip_ms": cold[1]},
        "load_avg_1m": load,
        "goal_ms": args.goal_ms,
        "goal_met": met,
    }
    path = benchlib.write_json(
        "status_page-quick.json" if args.quick else "status_page.json", payload
    )
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
