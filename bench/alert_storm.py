"""An alert storm: 10,000 sites, 1,000 of them turning stale at once, while agents check in.

    .venv/bin/python bench/alert_storm.py            # SQLite, about 3 minutes
    .venv/bin/python bench/alert_storm.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/alert_storm.py --quick    # smoke run, about 1 minute

One real `storesafe-server serve` holds `--sites` sites (seeded straight into its
database: enrolled, seen, backed up an hour ago) plus `--agents` enrolled agents that
drive CheckIn load (the client processes of rpc_throughput.py). The fleet's
alerts.webhook_url points at a loopback aiohttp receiver in this process. The storm:
one transaction makes the last verified backup of the `--storm` sites 27 h old (the
limit is 26 h), so they all turn stale at the next evaluation. Measured:

- storm seconds: from that transaction to the last of the storm's alerts arriving at the
  receiver (goal: under 60 s), and that each arrived exactly once;
- CheckIn calls/s of a bare echo server (before and after, mean), of the real server
  without a storm ("calm") and during one ("storm", the window opening with the
  transaction); `storm/calm` is the ratio of the two ratios against echo (goal: >= 0.9),
  and `CPU storm/calm` the same from the server's CPU per call (steadier on a busy box).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchlib
import rpc_throughput as rt
from aiohttp import web
from storesafe.v1 import admin_pb2, admin_pb2_grpc


class Receiver:
    """A webhook receiver on loopback in its own thread and event loop."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str, str]] = []  # (monotonic, event, site, status)
        self.port = benchlib.free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def handle(request: web.Request) -> web.Response:
            body = await request.json()
            self.events.append((time.monotonic(), body["event"], body["site"], body["status"]))
            return web.Response(text="ok")

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/hook", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    def count(self, event: str, status: str, prefix: str) -> int:
        return sum(
            1 for e in self.events if e[1] == event and e[3] == status and e[2].startswith(prefix)
        )


def seed_sites(db_url: str, n: int, storm: int) -> None:
    """`n` healthy sites, the first `storm` of them in group "storm", straight into the DB."""
    from sqlmodel import Session

    from server.db.engine import make_engine
    from server.db.models import Site

    now = dt.datetime.now(dt.UTC)
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            for i in range(n):
                session.add(
                    Site(
                        name=f"shop-{i:05d}",
                        group="storm" if i < storm else "calm",
                        created_at=now - dt.timedelta(days=30),
                        enrolled_at=now - dt.timedelta(days=30),
                        last_seen_at=now,
                        last_backup_at=now - dt.timedelta(hours=1),
                        last_backup_ok=True,
                        last_good_backup_at=now - dt.timedelta(hours=1),
                        last_backup_size=50_000_000,
                    )
                )
            session.commit()
    finally:
        engine.dispose()


def age_out(db_url: str) -> None:
    """The storm: the storm group's last verified backups become 27 h old in one
    transaction (limit 26 h), as if time had passed them all by at once."""
    from sqlalchemy import update

    from server.db.engine import make_engine
    from server.state.tables import SITES

    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=27)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(SITES).where(SITES.c.group == "storm").values(last_good_backup_at=old)
            )
    finally:
        engine.dispose()


def set_config(server: benchlib.Server, scope: int, target: str, values: dict[str, str]) -> None:
    with benchlib.channel(server.address, server.credentials()) as ch:
        admin_pb2_grpc.AdminServiceStub(ch).SetConfig(
            admin_pb2.SetConfigRequest(scope=scope, target=target, values=values),
            metadata=server.admin_metadata,
            timeout=60,
        )


def alert_totals(server: benchlib.Server) -> admin_pb2.ListAlertsResponse:
    with benchlib.channel(server.address, server.credentials()) as ch:
        return admin_pb2_grpc.AdminServiceStub(ch).ListAlerts(
            admin_pb2.ListAlertsRequest(limit=1), metadata=server.admin_metadata, timeout=60
        )


def wait_until(cond: Any, timeout: float, what: str) -> float:
    began = time.monotonic()
    while not cond():
        if time.monotonic() - began > timeout:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - began


def echo_phase(args: argparse.Namespace, work: Path, tag: str) -> dict[str, Any]:
    address, proc = rt.start_echo(args, "", work / "echo.log")
    try:
        agents = [
            {"site": f"bench-{i:05d}", "credential": f"ssa_{i:016x}_echo"}
            for i in range(args.agents)
        ]
        row = rt.run_phase(
            args,
            label="echo",
            address=address,
            ca="",
            method="checkin",
            agents=agents,
            server_pid=proc.pid,
            workdir=work,
        )
    finally:
        rt.stop_proc(proc)
    row["round"] = tag
    print(f"  echo ({tag}): {row['calls_per_s']:,.0f} check-ins/s", flush=True)
    return row


def run(args: argparse.Namespace, work: Path, db_url: str) -> int:
    from server.db.engine import sqlite_url

    rows = [echo_phase(args, work, "before")]
    server = benchlib.init_server(work / "server", db_url=db_url)
    began = time.monotonic()
    seed_sites(db_url or sqlite_url(server.data_dir), args.sites, args.storm)
    print(f"  seeded {args.sites:,} sites in {time.monotonic() - began:.1f} s", flush=True)
    receiver = Receiver()
    receiver.start()
    server.start(serve_args=["--alert-interval", str(args.alert_interval)])
    fleet = admin_pb2.CONFIG_SCOPE_FLEET
    checks: dict[str, Any] = {}
    try:
        set_config(
            server,
            fleet,
            "",
            {
                "alerts.webhook_url": f"http://127.0.0.1:{receiver.port}/hook",
                "alerts.digest_time": "",
                "status.offline_after_minutes": "43200",
            },
        )
        agents = asyncio.run(rt.enroll_agents(server, args.agents))
        # the enrolled agents' sites have no backup yet: each alerts `never` once first
        waited = wait_until(
            lambda: receiver.count("transition", "never", "bench-") >= args.agents,
            120,
            "the agents' own 'never' alerts",
        )
        print(f"  enrolled {len(agents)} agents; their alerts arrived in {waited:.1f} s")
        assert server.proc is not None

        def phase(label: str) -> dict[str, Any]:
            row = rt.run_phase(
                args,
                label=label,
                address=server.address,
                ca="",
                method="checkin",
                agents=agents,
                server_pid=server.proc.pid,  # type: ignore[union-attr]
                workdir=work,
            )
            print(f"  {label}: {row['calls_per_s']:,.0f} check-ins/s", flush=True)
            return row

        rows.append(phase("calm"))
        fired: dict[str, float] = {}

        def storm() -> None:  # at the opening of the measured window
            time.sleep(args.client_startup + args.warmup)
            fired["at"] = time.monotonic()
            age_out(db_url or sqlite_url(server.data_dir))

        trigger = threading.Thread(target=storm)
        trigger.start()
        rows.append(phase("storm"))
        trigger.join()
        wait_until(
            lambda: receiver.count("transition", "stale", "shop-") >= args.storm,
            max(0.0, fired["at"] + 120 - time.monotonic()),
            "the storm's alerts",
        )
        stale = [e for e in receiver.events if e[1] == "transition" and e[3] == "stale"]
        sites = [e[2] for e in stale]
        checks["storm_alerts"] = len(sites)
        checks["storm_duplicates"] = len(sites) - len(set(sites))
        checks["storm_seconds"] = max(e[0] for e in stale) - fired["at"]
        checks["first_alert_seconds"] = min(e[0] for e in stale) - fired["at"]
        checks["storm_inside_window"] = checks["storm_seconds"] < args.duration
        checks["other_alerts_during_storm"] = sum(
            1 for e in receiver.events if e[0] >= fired["at"] and e[3] != "stale"
        )
        totals = alert_totals(server)
        checks["server_totals"] = {
            "delivered": totals.delivered,
            "pending": totals.pending,
            "failed": totals.failed,
            "errors": totals.errors,
        }
    finally:
        server.stop()
    rows.append(echo_phase(args, work, "after"))
    return report(args, rows, checks)


def report(args: argparse.Namespace, rows: list[dict[str, Any]], checks: dict[str, Any]) -> int:
    echo = statistics.mean(r["calls_per_s"] for r in rows if r["target"] == "echo")
    for r in rows:
        r["ratio"] = r["calls_per_s"] / echo if echo else 0.0
    calm = next(r for r in rows if r["target"] == "calm")
    storm = next(r for r in rows if r["target"] == "storm")
    relative = storm["ratio"] / calm["ratio"] if calm["ratio"] else 0.0
    cpu_cost = storm["server_cpu_ms_per_call"]
    cpu_relative = calm["server_cpu_ms_per_call"] / cpu_cost if cpu_cost else 0.0
    print()
    print(
        benchlib.table(
            [
                "target",
                "check-ins/s",
                "ratio",
                "p50 ms",
                "p99 ms",
                "srv CPU ms/call",
                "srv cores",
                "load avg",
            ],
            [
                [
                    r["target"] + (f" ({r['round']})" if "round" in r else ""),
                    r["calls_per_s"],
                    "-" if r["target"] == "echo" else f"{r['ratio']:.2f}",
                    r["p50_ms"],
                    r["p99_ms"],
                    r["server_cpu_ms_per_call"],
                    r["server_cpu_cores"],
                    r["load_avg_1m"],
                ]
                for r in rows
            ],
        )
    )
    delivered_ok = (
        checks["storm_alerts"] == args.storm
        and checks["storm_duplicates"] == 0
        and checks["storm_seconds"] < 60
    )
    print(
        f"\nstorm: {checks['storm_alerts']:,} alerts for {args.storm:,} sites turning stale "
        f"(of {args.sites:,}), {checks['storm_duplicates']} duplicate(s); first after "
        f"{checks['first_alert_seconds']:.1f} s, last after {checks['storm_seconds']:.1f} s "
        f"(goal < 60 s, evaluation every {args.alert_interval:g} s; "
        f"{'inside' if checks['storm_inside_window'] else 'NOT inside'} the "
        f"{args.duration:g} s window): "
        f"{'ok' if delivered_ok else 'MISSED'}"
    )
    print(
        f"agent RPC ratio against echo: calm {calm['ratio']:.2f}, storm {storm['ratio']:.2f}; "
        f"storm/calm {relative:.2f} (goal >= 0.9): {'ok' if relative >= 0.9 else 'MISSED'}; "
        f"CPU storm/calm {cpu_relative:.2f}"
    )
    print(f"server's alert totals: {checks['server_totals']}")
    load = max(r["load_avg_1m"] for r in rows)
    if load > 3:
        print(f"warning: the 1-minute load average reached {load:.1f}; figures are inflated")
    name = "alert-storm" + ("-quick" if args.quick else "") + (".pg" if args.pg else "") + ".json"
    path = benchlib.write_json(
        name,
        {
            "machine": benchlib.machine(),
            "args": {k: v for k, v in vars(args).items() if k != "py_spy"},
            "rows": rows,
            "checks": checks,
            "storm_over_calm": relative,
            "cpu_storm_over_calm": cpu_relative,
        },
    )
    print(f"results in {path}")
    return 0 if delivered_ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sites", type=int, default=10_000, help="sites in the fleet")
    p.add_argument("--storm", type=int, default=1_000, help="sites turning stale at once")
    p.add_argument("--agents", type=int, default=200, help="agents driving CheckIn load")
    p.add_argument(
        "--alert-interval",
        type=float,
        default=5.0,
        help="serve --alert-interval (the storm then starts within it, inside the window)",
    )
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--channels", type=int, default=8, help="channels (TCP connections) each")
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight per channel")
    p.add_argument("--pg", default="", help="PostgreSQL server URL: run on a fresh database")
    p.add_argument("--quick", action="store_true", help="smoke run: 2,000 sites, short phases")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    args = p.parse_args()
    # what rpc_throughput's phases read
    args.client_startup, args.profile, args.profile_gil, args.tls = 5.0, False, False, False
    args.echo_await = "none"
    if args.quick:
        args.sites, args.storm, args.agents = 2_000, 200, 50
        args.clients, args.channels, args.concurrency = 1, 4, 16
    print(
        f"alert_storm: {args.sites:,} sites, {args.storm:,} turning stale at once; "
        f"{args.clients} client processes x {args.channels} channels x {args.concurrency} "
        f"check-ins in flight as {args.agents} agents; {args.duration:g} s per phase; "
        f"{'PostgreSQL' if args.pg else 'SQLite'}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="storesafe-alertstorm-", dir="/var/tmp"))
    try:
        if args.pg:
            with benchlib.fresh_pg_database(args.pg) as url:
                return run(args, work, url)
        return run(args, work, "")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
