"""Agent RPCs per second of the real server against a bare grpc.aio echo server.

One command, one run, one machine, one client load for every target:

    .venv/bin/python bench/rpc_throughput.py            # SQLite, about 2 minutes
    .venv/bin/python bench/rpc_throughput.py --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/rpc_throughput.py --quick    # smoke run, about 40 s

Targets, each its own process:
  echo      a trivial AgentService (CheckIn/ReportRun answer at once) with the real
            server's gRPC options; measured before and after the real server, the
            mean is the baseline
  sqlite    `storesafe-server serve` on its embedded SQLite (WAL, synchronous=FULL)
  postgres  the same with `--db` on a fresh database (only with --pg URL)

The load generator is separate client processes (grpc.aio, several channels each with
its own TCP connection, many calls in flight per channel), sending CheckIn and then
ReportRun (a unique report id per call) as N enrolled agents, round robin over sites.
Calls completing inside the measured window (after a warm-up) are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import benchlib
import grpc
import psutil
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc, types_pb2

CHECKIN = "/storesafe.v1.AgentService/CheckIn"
REPORT = "/storesafe.v1.AgentService/ReportRun"
METHODS = {"checkin": CHECKIN, "report": REPORT}

# The real server's options (server/app.py, serve()), so the echo server is configured alike.
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.server.max_pending_requests", 20000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
]
CLIENT_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
]


# --------------------------------------------------------------------------- echo server


class _Handoff:
    """A thread that resolves futures in batches, like the server's writer minus the DB."""

    def __init__(self) -> None:
        import queue
        import threading

        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        import queue

        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            loop = batch[0][1]
            loop.call_soon_threadsafe(_resolve_all, [f for f, _ in batch])

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((fut, loop))
        await fut


def _resolve_all(futs: list[Any]) -> None:
    for f in futs:
        if not f.done():
            f.set_result(None)


class EchoAgentService(agent_pb2_grpc.AgentServiceServicer):
    """Answers at once: the cost of grpc.aio itself with the same messages.

    Diagnostic modes (--echo-await): "yield" suspends each call once (await
    asyncio.sleep(0)); "thread" awaits a future resolved by another thread in batches.
    """

    def __init__(self, mode: str = "none") -> None:
        self._mode = mode
        self._handoff = _Handoff() if mode == "thread" else None

    async def _pause(self) -> None:
        if self._mode == "yield":
            await asyncio.sleep(0)
        elif self._handoff is not None:
            await self._handoff.wait()

    async def CheckIn(self, request: Any, context: Any) -> agent_pb2.CheckInResponse:
        await self._pause()
        now = Timestamp()
        now.GetCurrentTime()
        return agent_pb2.CheckInResponse(
            server_time=now, desired_config_revision=0, checkin_interval_seconds=60
        )

    async def ReportRun(self, request: Any, context: Any) -> agent_pb2.ReportRunResponse:
        await self._pause()
        return agent_pb2.ReportRunResponse(duplicate=False)


async def echo_server(listen: str, tls_dir: str, mode: str) -> None:
    import signal

    server = grpc.aio.server(options=SERVER_OPTIONS)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(EchoAgentService(mode), server)
    if tls_dir:
        d = Path(tls_dir)
        creds = grpc.ssl_server_credentials(
            [((d / "server.key").read_bytes(), (d / "server.pem").read_bytes())]
        )
        server.add_secure_port(listen, creds)
    else:
        server.add_insecure_port(listen)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


# --------------------------------------------------------------------------- client worker


def _checkin_bytes(site: str) -> bytes:
    now = Timestamp()
    now.GetCurrentTime()
    return agent_pb2.CheckInRequest(
        agent_version="0.1.0",
        hostname=f"pos-{site}",
        os="Windows 10 Pro 22H2 (10.0.19045)",
        agent_time=now,
        config_revision=3,
        disks=[
            types_pb2.DiskUsage(
                label="data", path="C:\\", total_bytes=512 << 30, free_bytes=201 << 30
            ),
            types_pb2.DiskUsage(
                label="backup", path="D:\\", total_bytes=1 << 40, free_bytes=700 << 30
            ),
        ],
        firebird=types_pb2.FirebirdHealth(
            oit=120_000,
            oat=120_010,
            ost=120_010,
            next_transaction=120_020,
            sweep_interval=20_000,
            forced_writes=True,
            page_size=8192,
            ods="12.0",
            size_bytes=3 << 30,
            server_version="WI-V3.0.10.33601 Firebird 3.0",
        ),
        outbox_pending=0,
        site=site,
    ).SerializeToString()


def _report_template(site: str) -> bytes:
    """A ReportRunRequest without report.id; the id is appended per call (proto merge)."""
    finished = Timestamp()
    finished.GetCurrentTime()
    started = Timestamp(seconds=finished.seconds - 95)
    return agent_pb2.ReportRunRequest(
        site=site,
        report=types_pb2.RunReport(
            kind=types_pb2.RUN_KIND_BACKUP,
            started_at=started,
            finished_at=finished,
            outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
            trigger="schedule",
            backup=types_pb2.BackupDetails(
                method="gbak",
                file=f"{site}-20261126-0200.fbk.zst",
                size_raw=3 << 30,
                size_compressed=700 << 20,
                checksum="sha256:" + "ab" * 32,
                verification=types_pb2.VERIFICATION_PASSED,
                verification_seconds=41.5,
                table_counts={"ARTICLES": 48_213, "SALES": 1_204_332, "CUSTOMERS": 9_120},
                firebird_version="WI-V3.0.10.33601 Firebird 3.0",
                database="C:\\Shop\\SHOP.FDB",
                backup_seconds=52.0,
            ),
        ),
    ).SerializeToString()


def _with_report_id(template: bytes, report_id: str) -> bytes:
    # field 1 (report), length-delimited, holding field 1 (id): merges into the template's report
    rid = report_id.encode()
    inner = b"\x0a" + bytes([len(rid)]) + rid
    return template + b"\x0a" + bytes([len(inner)]) + inner


async def client_worker(spec: dict[str, Any], ca_pem: bytes) -> dict[str, Any]:
    creds = grpc.ssl_channel_credentials(ca_pem) if ca_pem else None
    channels = [
        grpc.aio.secure_channel(spec["address"], creds, options=CLIENT_OPTIONS)
        if creds
        else grpc.aio.insecure_channel(spec["address"], options=CLIENT_OPTIONS)
        for _ in range(spec["channels"])
    ]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), 30)
    method = spec["method"]
    calls = [ch.unary_unary(METHODS[method]) for ch in channels]  # raw bytes both ways
    agents = spec["agents"]
    meta = [(("authorization", f"Bearer {a['credential']}"),) for a in agents]
    if method == "checkin":
        bodies = [_checkin_bytes(a["site"]) for a in agents]
    else:
        bodies = [_report_template(a["site"]) for a in agents]
        probe = agent_pb2.ReportRunRequest.FromString(_with_report_id(bodies[0], "probe-1"))
        assert probe.report.id == "probe-1" and probe.report.HasField("backup")
    prefix = f"{spec['run_id']}-{spec['worker']}"
    start, warm, dur = spec["start_at"], spec["warmup"], spec["duration"]
    t0, t1 = start + warm, start + warm + dur
    ok_window = 0
    ok_total = 0
    errors: dict[str, int] = {}
    lat: list[float] = []
    seq = 0

    async def loop_(call: Any, first: int, stride: int) -> None:
        nonlocal ok_window, ok_total, seq
        i = first
        while True:
            if time.time() >= t1:
                return
            k = i % len(agents)
            i += stride
            if method == "checkin":
                body = bodies[k]
            else:
                seq += 1
                body = _with_report_id(bodies[k], f"{prefix}-{seq}")
            began = time.perf_counter()
            try:
                await call(body, metadata=meta[k], timeout=60)
            except grpc.aio.AioRpcError as exc:
                name = exc.code().name
                errors[name] = errors.get(name, 0) + 1
                continue
            ok_total += 1
            done = time.time()
            if t0 <= done < t1:
                ok_window += 1
                lat.append(time.perf_counter() - began)

    cpu: dict[str, float] = {}

    async def cpu_meter() -> None:
        await asyncio.sleep(max(0.0, t0 - time.time()))
        r = resource.getrusage(resource.RUSAGE_SELF)
        cpu["start"] = r.ru_utime + r.ru_stime
        await asyncio.sleep(max(0.0, t1 - time.time()))
        r = resource.getrusage(resource.RUSAGE_SELF)
        cpu["end"] = r.ru_utime + r.ru_stime

    ready_at = time.time()
    await asyncio.sleep(max(0.0, start - time.time()))
    n_loops = spec["channels"] * spec["concurrency"]
    tasks = [loop_(calls[j % len(calls)], j, n_loops) for j in range(n_loops)]
    await asyncio.gather(cpu_meter(), *tasks)
    for ch in channels:
        await ch.close()
    return {
        "ok_window": ok_window,
        "ok_total": ok_total,
        "errors": errors,
        "latencies": lat,
        "cpu_s": cpu.get("end", 0.0) - cpu.get("start", 0.0),
        "late": ready_at > start,
    }


# --------------------------------------------------------------------------- orchestration


async def enroll_agents(server: benchlib.Server, n: int) -> list[dict[str, str]]:
    """Create N enrollment tokens through AdminService and enroll one agent for each site."""
    creds = server.credentials()
    ch = (
        grpc.aio.secure_channel(server.address, creds)
        if creds
        else grpc.aio.insecure_channel(server.address)
    )
    admin = admin_pb2_grpc.AdminServiceStub(ch)
    agent = agent_pb2_grpc.AgentServiceStub(ch)
    gate = asyncio.Semaphore(16)

    async def one(i: int) -> dict[str, str]:
        site = f"bench-{i:05d}"
        async with gate:
            tok = await admin.CreateEnrollmentToken(
                admin_pb2.CreateEnrollmentTokenRequest(site=site, group=f"g{i % 10}"),
                metadata=server.admin_metadata,
                timeout=60,
            )
            got = await agent.Enroll(
                agent_pb2.EnrollRequest(
                    token=tok.token, site=site, hostname=f"pos-{site}", agent_version="0.1.0"
                ),
                timeout=60,
            )
        return {"site": site, "credential": got.credential}

    try:
        return list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await ch.close()


def run_phase(
    args: argparse.Namespace,
    *,
    label: str,
    address: str,
    ca: str,
    method: str,
    agents: list[dict[str, str]],
    server_pid: int,
    workdir: Path,
) -> dict[str, Any]:
    """Start the client processes, meter the server process, collect one measurement."""
    run_id = uuid.uuid4().hex[:12]
    start_at = time.time() + args.client_startup
    procs = []
    for w in range(args.clients):
        spec = {
            "address": address,
            "ca": ca,
            "method": method,
            "agents": agents[w :: args.clients] or agents,
            "channels": args.channels,
            "concurrency": args.concurrency,
            "start_at": start_at,
            "warmup": args.warmup,
            "duration": args.duration,
            "run_id": run_id,
            "worker": w,
        }
        path = workdir / f"spec-{run_id}-{w}.json"
        path.write_text(json.dumps(spec))
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--role", "client", "--spec", str(path)],
                stdout=subprocess.PIPE,
            )
        )
    server = psutil.Process(server_pid)
    t0, t1 = start_at + args.warmup, start_at + args.warmup + args.duration
    profiler = None
    time.sleep(max(0.0, t0 - time.time()))
    cpu0, sys0, db0 = _tree_cpu(server), psutil.cpu_times(), _postgres_cpu()
    if args.profile:
        out = benchlib.RESULTS / f"profile-{label}-{method}.txt"
        profiler = subprocess.Popen(
            [
                args.py_spy,
                "record",
                "--nonblocking",
                "--threads",
                "--subprocesses",
                *(["--gil"] if args.profile_gil else []),
                "-r",
                "200",
                "-d",
                str(int(args.duration)),
                "-f",
                "raw",
                "-o",
                str(out),
                "-p",
                str(server_pid),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    time.sleep(max(0.0, t1 - time.time()))
    cpu1, sys1, db1 = _tree_cpu(server), psutil.cpu_times(), _postgres_cpu()
    results = []
    for p in procs:
        out_text, _ = p.communicate(timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"client worker failed ({p.returncode})")
        results.append(json.loads(out_text))
    if profiler is not None:
        profiler.wait(timeout=60)
    ok = sum(r["ok_window"] for r in results)
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    lat = sorted(x for r in results for x in r["latencies"])
    server_cpu = cpu1[0] - cpu0[0]
    server_sys = cpu1[1] - cpu0[1]
    child_cpu = cpu1[2] - cpu0[2]
    loop_cpu = cpu1[3] - cpu0[3]
    busy = _busy(sys0, sys1)
    load = os.getloadavg()[0]
    return {
        "target": label,
        "method": method,
        "calls_per_s": ok / args.duration,
        "calls": ok,
        "acked_total": sum(r["ok_total"] for r in results),
        "errors": errors,
        "p50_ms": _pct(lat, 0.50) * 1000,
        "p99_ms": _pct(lat, 0.99) * 1000,
        "server_cpu_ms_per_call": server_cpu * 1000 / ok if ok else 0.0,
        "server_cpu_cores": server_cpu / args.duration,
        "server_child_cpu_cores": child_cpu / args.duration,
        "postgres_cpu_cores": _cpu_delta(db0, db1) / args.duration,
        "server_loop_cpu_ms_per_call": loop_cpu * 1000 / ok if ok else 0.0,
        "server_system_ms_per_call": server_sys * 1000 / ok if ok else 0.0,
        "client_cpu_cores": sum(r["cpu_s"] for r in results) / args.duration,
        "machine_busy_pct": busy,
        "load_avg_1m": load,
        "clients_late": any(r["late"] for r in results),
    }


def _tree_cpu(proc: psutil.Process) -> tuple[float, float, float, float]:
    """CPU seconds (all, system, children's, main thread's) of a server and its child
    processes (the real server's database writer runs in one; the main thread runs the
    event loop)."""
    total = system = children = 0.0
    try:
        fields = Path(f"/proc/{proc.pid}/task/{proc.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        main = (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        main = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
        system += t.system
        if p.pid != proc.pid:
            children += t.user + t.system
    return total, system, children, main


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL server process on this machine, by pid."""
    out = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        if p.info["name"] in ("postgres", "postmaster") and p.info["cpu_times"] is not None:
            out[p.pid] = p.info["cpu_times"].user + p.info["cpu_times"].system
    return out


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two _postgres_cpu() readings (processes that ended are missed)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def _busy(a: Any, b: Any) -> float:
    total = sum(b) - sum(a)
    idle = (b.idle + getattr(b, "iowait", 0)) - (a.idle + getattr(a, "iowait", 0))
    return 100.0 * (1 - idle / total) if total > 0 else 0.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return values[min(len(values) - 1, int(q * len(values)))]


def count_runs(db_url: str) -> int:
    from sqlalchemy import text

    from server.db.engine import make_engine

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM runs")).scalar_one())
    finally:
        engine.dispose()


def start_echo(
    args: argparse.Namespace, tls_dir: str, log: Path, mode: str = "none"
) -> tuple[str, Any]:
    address = f"127.0.0.1:{benchlib.free_port()}"
    cmd = [sys.executable, __file__, "--role", "echo", "--listen", address]
    cmd += ["--echo-await", mode]
    if tls_dir:
        cmd += ["--tls-dir", tls_dir]
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    creds = (
        grpc.ssl_channel_credentials((Path(tls_dir) / "ca.pem").read_bytes()) if tls_dir else None
    )
    benchlib.wait_ready(address, proc, creds, 30)
    return address, proc


def stop_proc(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure_backend(
    args: argparse.Namespace,
    label: str,
    work: Path,
    db_url: str,
    rows: list[dict[str, Any]],
    serve_args: Sequence[str] = (),
) -> dict[str, Any]:
    from server.db.engine import sqlite_url

    data_dir = work / f"server-{label}"
    server = benchlib.init_server(data_dir, db_url=db_url, tls=args.tls)
    server.start(serve_args=serve_args)
    try:
        began = time.monotonic()
        agents = asyncio.run(enroll_agents(server, args.agents))
        enroll_s = time.monotonic() - began
        print(f"  {label}: enrolled {len(agents)} agents in {enroll_s:.1f} s", flush=True)
        ca = str(server.ca_path) if args.tls else ""
        assert server.proc is not None
        for method in args.methods:
            row = run_phase(
                args,
                label=label,
                address=server.address,
                ca=ca,
                method=method,
                agents=agents,
                server_pid=server.proc.pid,
                workdir=work,
            )
            rows.append(row)
            print(f"  {label} {method}: {row['calls_per_s']:,.0f} calls/s", flush=True)
        stored = count_runs(db_url or sqlite_url(data_dir))
    finally:
        server.stop()
    acked = sum(r["acked_total"] for r in rows if r["target"] == label and r["method"] == "report")
    return {"enroll_seconds": enroll_s, "reports_acked": acked, "reports_stored": stored}


def orchestrate(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="storesafe-rpcbench-", dir="/var/tmp"))
    (work / "spec").mkdir()
    spec_dir = work / "spec"
    transport = (
        "TLS (server certificate from init, same for all)"
        if args.tls
        else ("plaintext loopback (--insecure) for all targets")
    )
    print(
        f"rpc_throughput: {args.clients} client processes x {args.channels} channels x "
        f"{args.concurrency} in flight = {args.clients * args.channels * args.concurrency} "
        f"concurrent calls; {args.agents} agents; warm-up {args.warmup:g} s, "
        f"measured {args.duration:g} s; {transport}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    # the echo server needs a certificate for TLS: borrow a data dir's
    tls_dir = ""
    if args.tls:
        pki = benchlib.init_server(work / "echo-pki", tls=True)
        tls_dir = str(pki.data_dir)

    def echo_round(tag: str, mode: str = "none") -> None:
        label = "echo" if mode == "none" else f"echo-{mode}"
        address, proc = start_echo(args, tls_dir, work / "echo.log", mode)
        try:
            agents = [
                {"site": f"bench-{i:05d}", "credential": f"ssa_{i:016x}_echo"}
                for i in range(args.agents)
            ]
            for method in args.methods:
                row = run_phase(
                    args,
                    label=label,
                    address=address,
                    ca=str(Path(tls_dir) / "ca.pem") if tls_dir else "",
                    method=method,
                    agents=agents,
                    server_pid=proc.pid,
                    workdir=spec_dir,
                )
                if mode == "none":
                    row["round"] = tag
                rows.append(row)
                print(f"  {label} ({tag}) {method}: {row['calls_per_s']:,.0f} calls/s", flush=True)
        finally:
            stop_proc(proc)

    try:
        echo_round("before")
        if args.echo_await != "none":
            echo_round("diagnosis", args.echo_await)
        if not args.echo_only and not args.skip_sqlite:
            checks["sqlite"] = measure_backend(args, "sqlite", work, "", rows)
            if args.compare_writer:
                checks["sqlite-thread"] = measure_backend(
                    args, "sqlite-thread", work, "", rows, ["--writer-thread"]
                )
        if args.pg and not args.echo_only:
            with benchlib.fresh_pg_database(args.pg) as url:
                checks["postgres"] = measure_backend(args, "postgres", work, url, rows)
            if args.compare_writer:
                with benchlib.fresh_pg_database(args.pg) as url:
                    checks["postgres-thread"] = measure_backend(
                        args, "postgres-thread", work, url, rows, ["--writer-thread"]
                    )
        if not args.quick:
            echo_round("after")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return report(args, rows, checks, transport)


def report(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    checks: dict[str, Any],
    transport: str,
) -> int:
    echo = {
        m: statistics.mean(
            r["calls_per_s"] for r in rows if r["target"] == "echo" and r["method"] == m
        )
        for m in args.methods
    }
    echo_cpu = {
        m: statistics.mean(
            r["server_cpu_ms_per_call"] for r in rows if r["target"] == "echo" and r["method"] == m
        )
        for m in args.methods
    }
    for r in rows:
        r["ratio"] = r["calls_per_s"] / echo[r["method"]] if echo[r["method"]] else 0.0
        cpu = r["server_cpu_ms_per_call"]
        r["cpu_ratio"] = echo_cpu[r["method"]] / cpu if cpu else 0.0
    headers = [
        "target",
        "rpc",
        "calls/s",
        "ratio",
        "CPU ratio",
        "p50 ms",
        "p99 ms",
        "srv CPU ms/call",
        "loop ms/call",
        "srv cores",
        "writer cores",
        "postgres cores",
        "client cores",
        "box busy %",
        "load avg",
        "errors",
    ]
    table_rows = []
    for r in rows:
        name = r["target"] + (f" ({r['round']})" if "round" in r else "")
        table_rows.append(
            [
                name,
                r["method"],
                r["calls_per_s"],
                "-" if r["target"] == "echo" else f"{r['ratio']:.2f}",
                "-" if r["target"] == "echo" else f"{r['cpu_ratio']:.2f}",
                r["p50_ms"],
                r["p99_ms"],
                r["server_cpu_ms_per_call"],
                r.get("server_loop_cpu_ms_per_call", 0.0),
                r["server_cpu_cores"],
                r.get("server_child_cpu_cores", 0.0),
                r.get("postgres_cpu_cores", 0.0),
                r["client_cpu_cores"],
                r["machine_busy_pct"],
                r["load_avg_1m"],
                sum(r["errors"].values()) if r["errors"] else 0,
            ]
        )
    print()
    print(benchlib.table(headers, table_rows))
    print()
    verdicts = []
    for r in rows:
        if r["target"] == "echo":
            continue
        good = r["ratio"] >= args.goal
        verdicts.append(good)
        print(
            f"{r['target']:>8} {r['method']:<7} {r['calls_per_s']:8,.0f} calls/s = "
            f"{r['ratio']:.2f} x echo ({echo[r['method']]:,.0f}/s)  goal >= {args.goal:g}: "
            f"{'met' if good else 'NOT met'}; server CPU per call {r['cpu_ratio']:.2f} x echo's"
        )
    for label, c in checks.items():
        print(
            f"{label:>8} reports acknowledged {c['reports_acked']:,}, rows stored "
            f"{c['reports_stored']:,} (must be >= acknowledged)"
        )
    cores = os.cpu_count()
    print(
        f"\nNote: this machine has {cores} cores; the {args.clients} client processes run on "
        f"the same cores as the server and take CPU from it (see 'client cores'), for echo and "
        f"real alike, so absolute calls/s understate what a server alone would do; the ratio "
        f"and server CPU ms/call are the steadier figures. 'CPU ratio' is echo's server CPU "
        f"per call over the target's: the ratio the server would reach where CPU alone limits "
        f"it. Transport: {transport}."
    )
    peak = max(r["load_avg_1m"] for r in rows)
    if cores and peak > 2 * cores:
        print(
            f"warning: 1-minute load average reached {peak:.1f} on {cores} cores: other "
            f"processes on this machine competed with the benchmark; figures are noisy"
        )
    if any(r["clients_late"] for r in rows):
        print(
            "warning: some client processes started after the window opened; raise --client-startup"
        )
    payload = {
        "benchmark": "rpc_throughput",
        "machine": benchlib.machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in {"role", "spec"}},
        "transport": transport,
        "echo_baseline_calls_per_s": echo,
        "rows": [{k: v for k, v in r.items()} for r in rows],
        "checks": checks,
        "goal_met": all(verdicts),
    }
    path = benchlib.write_json(
        "rpc_throughput-quick.json" if args.quick else "rpc_throughput.json", payload
    )
    print(f"JSON: {path}")
    bad = [c for c in checks.values() if c["reports_stored"] < c["reports_acked"]]
    return 1 if bad else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--channels", type=int, default=8, help="channels (TCP connections) each")
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight per channel")
    p.add_argument("--agents", type=int, default=200, help="agents (sites) to enroll")
    p.add_argument(
        "--pg",
        default="",
        metavar="URL",
        help="also measure on PostgreSQL: a fresh database is created on this "
        "server (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="TLS for every target (default: plaintext loopback for every target)",
    )
    p.add_argument("--methods", default="checkin,report", help="comma list: checkin,report")
    p.add_argument("--goal", type=float, default=0.6, help="ratio real/echo to reach")
    p.add_argument("--quick", action="store_true", help="smoke run: short phases, small load")
    p.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of the real server into bench/results/ "
        "(perturbs the figures; use for diagnosis only)",
    )
    p.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL",
    )
    p.add_argument("--py-spy", default=shutil.which("py-spy") or "/var/tmp/pyspy/bin/py-spy")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dirs")
    p.add_argument("--echo-only", action="store_true", help="diagnosis: skip the real server")
    p.add_argument("--skip-sqlite", action="store_true", help="with --pg: measure PostgreSQL only")
    p.add_argument(
        "--compare-writer",
        "--compare-writer-thread",
        dest="compare_writer",
        action="store_true",
        help="also measure each backend with `serve --writer-thread` (check-ins and "
        "reports decoded and written by a thread of the server instead of its default "
        "child process)",
    )
    p.add_argument(
        "--echo-await",
        default="none",
        choices=["none", "yield", "thread"],
        help="diagnosis: also measure echo servers whose handlers suspend once ('yield') "
        "or wait for another thread like the real server's writer ('thread')",
    )
    p.add_argument("--client-startup", type=float, default=5.0, help=argparse.SUPPRESS)
    p.add_argument(
        "--role", default="bench", choices=["bench", "echo", "client"], help=argparse.SUPPRESS
    )
    p.add_argument("--listen", default="", help=argparse.SUPPRESS)
    p.add_argument("--tls-dir", default="", help=argparse.SUPPRESS)
    p.add_argument("--spec", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "echo":
        asyncio.run(echo_server(args.listen, args.tls_dir, args.echo_await))
        return 0
    if args.role == "client":
        spec = json.loads(Path(args.spec).read_text())
        ca_pem = Path(spec["ca"]).read_bytes() if spec["ca"] else b""
        result = asyncio.run(client_worker(spec, ca_pem))
        sys.stdout.write(json.dumps(result))
        return 0
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if any(m not in METHODS for m in args.methods):
        p.error("--methods takes checkin and/or report")
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
        args.clients, args.channels, args.concurrency = 1, 4, 16
        args.agents = min(args.agents, 20)
    if args.profile:
        benchlib.RESULTS.mkdir(parents=True, exist_ok=True)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
