"""Config push at fleet scale: fan-out time, memory per open stream, restart catch-up.

One command, one run:

    .venv/bin/python bench/config_fanout.py                  # 1,000 and 10,000 agents
    .venv/bin/python bench/config_fanout.py --quick          # 200 agents, smoke run
    .venv/bin/python bench/config_fanout.py --agents 2000 --repeats 5

For each fleet size N:
  1. A real `storesafe-server serve` (SQLite, TLS as in production) on a loopback
     port, on a fresh copy of a data dir holding N enrolled simulated agents
     (admin CreateEnrollmentToken + Enroll). The enrolled fleet (data dir and agent
     credentials) is cached under bench/results/.fanout-fleets/ so re-runs skip
     enrollment; `--fresh` enrolls again.
  2. N simulated agents spread over several client processes (spawned, each with its
     own event loop): every agent has its own grpc.aio channel (own TCP connection,
     local subchannel pool) and holds a Session stream; on a config directive it
     acks on that stream (--ack unary: WatchConfig and an AckConfig call). A broken
     stream is reopened like the real agent does: at a random moment within the
     window of the server's goodbye, or else with its jittered exponential backoff
     (full jitter, base 1 s, cap 60 s; channel options as the agent's).
  3. Measured:
     fan-out   from just before SetConfig(fleet) until every agent acknowledged that
               revision; client view = latest ack completion reported by the client
               processes, server view = when ConfigRollout shows every site applied
               (asked once the clients are done, so polling does not load the fan-out;
               --rollout-poll S also asks during it). Median of --repeats (3).
     memory    server RSS with all N streams open minus RSS before they opened, / N
               (includes each agent's TLS connection, not only the call).
     restart   SIGTERM the server (it tells every stream to come back within a window of
               streams / 400 s: `serve --reconnect-rate`), start it again on the same
               port, SetConfig as soon as it logs that it serves; time until all N agents
               reconnected and acknowledged, and the error codes agents saw (stream breaks
               vs reconnect attempts).
Results: a table on stdout and bench/results/config_fanout.json. --profile records the
server with py-spy (GIL-holding samples, collapsed stacks) during the fan-outs into
bench/results/config_fanout-profile-N.txt. The initial connect is paced (--connect-rate);
the reconnect after the restart is not (that storm is what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import benchlib
import grpc
import psutil
from storesafe.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc

from agent.runner import RunnerConfig
from agent.transport.channel import channel_options
from agent.transport.link import session_messages

FLEETS = benchlib.RESULTS / ".fanout-fleets"
# The real agent's pacing: its retry backoff (agent.runner.RunnerConfig: base 1 s, cap
# 60 s, full jitter) and its channel options (reconnect backoff 1 s .. 30 s, keepalive).
BACKOFF_BASE, BACKOFF_CAP = RunnerConfig.retry_base, RunnerConfig.retry_cap
DEBUG = bool(os.environ.get("FANOUT_DEBUG"))
CLIENT_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per agent channel
    *channel_options(),
]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# --------------------------------------------------------------------------- server


class BenchServer:
    """`storesafe-server serve` with TLS on a fixed loopback address (kept across restarts)."""

    def __init__(self, data_dir: Path, admin_token: str, ca_path: Path) -> None:
        self.data_dir = data_dir
        self.admin_token = admin_token
        self.ca = ca_path.read_bytes()
        self.address = f"127.0.0.1:{benchlib.free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin: admin_pb2_grpc.AdminServiceStub | None = None
        self._channel: grpc.Channel | None = None

    def start(self, timeout: float = 60.0, *, by_log: bool = False) -> None:
        """Start; ready when a TLS connection succeeds, or (by_log) when the server logs
        that it serves: after a restart thousands of agents compete with any probe."""
        log_path = self.data_dir / "server.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        args = [
            str(benchlib.BIN / "storesafe-server"),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.address,
        ]
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, preexec_fn=raise_fd_limit)
        if by_log:
            self.wait_logged(log_path, offset, timeout)
        else:
            self.wait_ready(timeout)

    def wait_logged(self, path: Path, offset: int, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            with path.open("rb") as f:
                f.seek(offset)
                if b"serving on" in f.read():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server on {self.address} did not start in {timeout:.0f} s")

    def wait_ready(self, timeout: float) -> None:
        """Until the port answers a TLS connection (patient probes: thousands of agents
        reconnecting at once compete with them after a restart)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        creds = grpc.ssl_channel_credentials(self.ca)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            with grpc.secure_channel(
                self.address, creds, options=[("grpc.use_local_subchannel_pool", 1)]
            ) as ch:
                try:
                    grpc.channel_ready_future(ch).result(timeout=5.0)
                    return
                except grpc.FutureTimeoutError:
                    continue
        raise RuntimeError(f"server on {self.address} not ready after {timeout:.0f} s")

    def stop(self) -> float:
        """SIGTERM and wait; the seconds it took to exit."""
        if self.proc is None:
            return 0.0
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.close_admin()
        return time.monotonic() - began

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def cpu(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def admin(self) -> admin_pb2_grpc.AdminServiceStub:
        if self._admin is None:
            self._channel = grpc.secure_channel(
                self.address,
                grpc.ssl_channel_credentials(self.ca),
                options=[("grpc.use_local_subchannel_pool", 1)],
            )
            self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)
        return self._admin

    def close_admin(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel, self._admin = None, None

    @property
    def md(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.admin_token}")]

    def set_fleet(self, value: int) -> int:
        resp = self.admin().SetConfig(
            admin_pb2.SetConfigRequest(
                scope=admin_pb2.CONFIG_SCOPE_FLEET, values={"backup.keep_daily": str(value)}
            ),
            metadata=self.md,
            timeout=60,
        )
        return int(resp.revision)

    def applied(self, revision: int, *, swallow: bool = False) -> int | None:
        """How many sites the server shows at `revision` or later (ConfigRollout)."""
        try:
            resp = self.admin().ConfigRollout(
                admin_pb2.ConfigRolloutRequest(), metadata=self.md, timeout=60
            )
        except grpc.RpcError:
            if swallow:
                return None
            raise
        return sum(1 for r in resp.sites if r.applied_revision >= revision)


def new_revision(server: BenchServer, patience: float = 300.0) -> int:
    """A fleet change that is sure to make a new revision (retried while the server is
    swamped, for example by agents reconnecting after a restart)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            rev = server.set_fleet(random.randint(0, 366))
        except grpc.RpcError as exc:
            if time.monotonic() > deadline or exc.code() not in (  # type: ignore[attr-defined]
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ):
                raise
            continue
        if rev:
            return rev


# --------------------------------------------------------------------------- fleet cache


def fleet(n: int, fresh: bool) -> tuple[Path, str, Path, list[tuple[str, str]]]:
    """A cached data dir with n enrolled agents: (dir, admin token, ca path, [(site, cred)])."""
    cache = FLEETS / f"n{n}"
    meta = cache / "fleet.json"
    if fresh and cache.exists():
        shutil.rmtree(cache)
    if meta.exists():
        info = json.loads(meta.read_text())
        if len(info["agents"]) == n:
            print(f"  using the enrolled fleet cached in {cache}", flush=True)
            return cache / "data", info["admin_token"], Path(info["ca"]), info["agents"]
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    (FLEETS / ".gitignore").write_text("*\n")  # data dirs hold keys: never commit them
    data = cache / "data"
    out = subprocess.run(
        [str(benchlib.BIN / "storesafe-server"), "init", "--data-dir", str(data), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)
    server = BenchServer(data, info["admin_token"], Path(info["ca_cert"]))
    server.start()
    began = time.monotonic()
    try:
        agents = asyncio.run(_enroll(server, [f"fan{i:05d}" for i in range(n)]))
    finally:
        server.stop()
    print(f"  enrolled {n:,} agents in {time.monotonic() - began:.1f} s", flush=True)
    (data / "server.log").unlink(missing_ok=True)
    ca_rel = Path(info["ca_cert"]).relative_to(data)
    meta.write_text(
        json.dumps({"admin_token": info["admin_token"], "ca": str(ca_rel), "agents": agents})
    )
    return data, info["admin_token"], ca_rel, agents


async def _enroll(server: BenchServer, sites: list[str]) -> list[tuple[str, str]]:
    creds = grpc.ssl_channel_credentials(server.ca)
    chans = [
        grpc.aio.secure_channel(
            server.address, creds, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(4)
    ]
    sem = asyncio.Semaphore(64)

    async def one(i: int, site: str) -> tuple[str, str]:
        ch = chans[i % len(chans)]
        async with sem:
            tok = await admin_pb2_grpc.AdminServiceStub(ch).CreateEnrollmentToken(
                admin_pb2.CreateEnrollmentTokenRequest(site=site, group="default"),
                metadata=server.md,
                timeout=60,
            )
            resp = await agent_pb2_grpc.AgentServiceStub(ch).Enroll(
                agent_pb2.EnrollRequest(token=tok.token, site=site, hostname="sim"), timeout=60
            )
            return site, resp.credential

    try:
        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(sites))))
    finally:
        for ch in chans:
            await ch.close()


# --------------------------------------------------------------------------- client processes


class Agents:
    """The simulated agents of one client process."""

    def __init__(
        self, address: str, ca: bytes, agents: list[tuple[str, str]], cap: float, ack: str
    ) -> None:
        self.cap = cap
        self.ack = ack
        self.address = address
        self.ca = ca
        self.agents = agents
        self.live = 0  # streams that delivered at least one message and are still open
        self.acks: dict[int, list[float]] = {}  # revision -> [count, latest ack time]
        self.errors: list[tuple[float, str, bool]] = []  # (time, code, on a live stream)
        self.details: collections.Counter[str] = collections.Counter()
        self.tasks: list[asyncio.Task[None]] = []
        self.channels: list[grpc.aio.Channel] = []

    async def open(self, per_second: float) -> None:
        creds = grpc.ssl_channel_credentials(self.ca)
        for i, (_site, cred) in enumerate(self.agents):
            ch = grpc.aio.secure_channel(self.address, creds, options=CLIENT_OPTIONS)
            self.channels.append(ch)
            self.tasks.append(asyncio.create_task(self.follow(ch, cred)))
            if per_second and i % 50 == 49:
                await asyncio.sleep(50 / per_second)

    async def follow(self, ch: grpc.aio.Channel, cred: str) -> None:
        """Hold the directive stream like an agent (a Session, acks on it; or with --ack
        unary, WatchConfig + an AckConfig call per ack); reconnect with backoff."""
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        md = (("authorization", f"Bearer {cred}"),)
        running, attempt = 0, 0
        window = 0.0  # the server's last goodbye window, until a stream is live again
        while True:
            opening = agent_pb2.WatchConfigRequest(running_revision=running)
            outgoing: asyncio.Queue[agent_pb2.AgentEvent | None] = asyncio.Queue()
            if self.ack == "stream":
                outgoing.put_nowait(agent_pb2.AgentEvent(open=opening))
                call: Any = stub.Session(session_messages(outgoing), metadata=md)
            else:
                call = stub.WatchConfig(opening, metadata=md)
            live = False
            goodbye: float | None = None
            try:
                async for d in call:
                    if not live:
                        live, attempt = True, 0
                        self.live += 1
                    if d.HasField("reconnect"):  # the server is stopping: come back later
                        goodbye = d.reconnect.within_seconds
                        break
                    if d.HasField("config"):
                        rev = d.config.revision
                        ack = agent_pb2.AckConfigRequest(revision=rev, applied=True)
                        if self.ack == "stream":
                            outgoing.put_nowait(agent_pb2.AgentEvent(config_ack=ack))
                        else:
                            await stub.AckConfig(ack, metadata=md, timeout=60)
                        running = rev
                        slot = self.acks.setdefault(rev, [0, 0.0])
                        slot[0] += 1
                        slot[1] = max(slot[1], time.monotonic())
                code = "GOODBYE" if goodbye is not None else "ENDED"
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
                call.cancel()
                if DEBUG and len(self.details) < 2000:
                    self.details[f"{code}: {exc.details()}"[:160]] += 1
            finally:
                outgoing.put_nowait(None)
            if live:
                self.live -= 1
            self.errors.append((time.monotonic(), code, live))
            if goodbye is not None:
                call.cancel()
                window, attempt = goodbye, 0
            elif live:
                window = 0.0
            if window:  # as agent.directives: retries after a goodbye stay in its window
                await asyncio.sleep(random.uniform(0, window))
                continue
            await asyncio.sleep(random.uniform(0, min(self.cap, BACKOFF_BASE * 2**attempt)))
            attempt += 1

    def status(self, revision: int) -> dict[str, Any]:
        count, latest = self.acks.get(revision, [0, 0.0])
        return {"live": self.live, "acked": count, "latest_ack": latest}

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for ch in self.channels:
            with contextlib.suppress(Exception):
                await ch.close(grace=None)


def client_main(
    address: str,
    ca: bytes,
    agents: list[tuple[str, str]],
    conn: Connection,
    per_second: float,
    cap: float,
    ack: str,
) -> None:
    raise_fd_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_client(address, ca, agents, conn, per_second, cap, ack))


async def _client(
    address: str,
    ca: bytes,
    agents: list[tuple[str, str]],
    conn: Connection,
    per_second: float,
    cap: float,
    ack: str,
) -> None:
    sim = Agents(address, ca, agents, cap, ack)
    loop = asyncio.get_running_loop()
    while True:
        cmd, arg = await loop.run_in_executor(None, conn.recv)
        if cmd == "open":
            await sim.open(per_second)
            conn.send("ok")
        elif cmd == "status":
            conn.send(sim.status(arg))
        elif cmd == "peek":
            conn.send(count_codes(sim.errors))
        elif cmd == "errors":
            conn.send(sim.errors)
            sim.errors = []
        elif cmd == "stop":
            if DEBUG:
                print(sim.details.most_common(8), flush=True)
            await sim.close()
            conn.send("ok")
            return


class Clients:
    """The client processes, driven over pipes."""

    def __init__(
        self,
        address: str,
        ca: bytes,
        agents: list[tuple[str, str]],
        procs: int,
        rate: float,
        cap: float = BACKOFF_CAP,
        ack: str = "stream",
    ) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for k in range(procs):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(
                target=client_main,
                args=(address, ca, agents[k::procs], theirs, rate / procs, cap, ack),
                daemon=True,
            )
            p.start()
            self.conns.append(mine)
            self.procs.append(p)

    def ask(self, cmd: str, arg: Any = None) -> list[Any]:
        for c in self.conns:
            c.send((cmd, arg))
        return [c.recv() for c in self.conns]

    def status(self, revision: int) -> tuple[int, int, float]:
        """(streams live, agents that acked `revision`, latest ack time)."""
        got = self.ask("status", revision)
        return (
            sum(s["live"] for s in got),
            sum(s["acked"] for s in got),
            max(s["latest_ack"] for s in got),
        )

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(p.pid).cpu_times()
                total += t.user + t.system
        return total

    def peek_errors(self) -> dict[str, int]:
        """Agent error counts so far, without clearing them."""
        total: collections.Counter[str] = collections.Counter()
        for part in self.ask("peek"):
            total.update(part)
        return dict(sorted(total.items()))

    def errors(self) -> list[tuple[float, str, bool]]:
        return [e for part in self.ask("errors") for e in part]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask("stop")
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()


# --------------------------------------------------------------------------- measurements


def wait_acked(
    clients: Clients,
    server: BenchServer | None,
    n: int,
    revision: int,
    t0: float,
    timeout: float,
    rollout_poll: float = 0.0,
    progress: BenchServer | None = None,
) -> dict[str, Any]:
    """Wait until all n agents acked `revision`: client view and (optionally) server view.

    The client processes are asked every 0.1 s (cheap, over pipes; each reports its latest
    ack time). ConfigRollout costs the server real work per site, so by default it is
    asked only once the clients are done (an ack returns after its write committed, so
    that first call already shows every site applied); `rollout_poll` > 0 also asks every
    that many seconds during the fan-out.
    """
    deadline = t0 + timeout
    client_s: float | None = None
    server_s: float | None = None
    rollout_call_s: float | None = None
    acked = 0
    applied: int | None = 0
    next_rollout = t0 + rollout_poll if rollout_poll > 0 else float("inf")
    next_note = t0 + 5.0
    while time.monotonic() < deadline:
        if client_s is None:
            live, acked, latest = clients.status(revision)
            if progress is not None and time.monotonic() >= next_note:
                next_note = time.monotonic() + 5.0
                print(
                    f"    {time.monotonic() - t0:5.1f} s: {live:,} streams live, {acked:,} acked; "
                    f"CPU so far: server {progress.cpu():.1f} s, clients {clients.cpu():.1f} s; "
                    f"agent errors {clients.peek_errors()}",
                    flush=True,
                )
            if acked >= n:
                client_s = latest - t0
        if (
            server is not None
            and server_s is None
            and (client_s is not None or time.monotonic() >= next_rollout)
        ):
            began = time.monotonic()
            applied = server.applied(revision, swallow=True)
            rollout_call_s = time.monotonic() - began
            if applied is not None and applied >= n:
                server_s = time.monotonic() - t0
            next_rollout = time.monotonic() + rollout_poll if rollout_poll > 0 else next_rollout
        if client_s is not None and (server is None or server_s is not None):
            break
        time.sleep(0.1)
    if server is not None and server_s is None:
        applied = server.applied(revision, swallow=True)  # where it stands at the deadline
    return {
        "revision": revision,
        "client_s": client_s,
        "server_s": server_s,
        "acked": acked,
        "server_applied": applied if server is not None else None,
        "rollout_call_s": rollout_call_s,
    }


def profile_server(server: BenchServer, n: int, on: bool) -> subprocess.Popen[bytes] | None:
    """py-spy on the server during the fan-outs (collapsed stacks in bench/results/)."""
    if not on:
        return None
    assert server.proc is not None
    out = benchlib.RESULTS / f"config_fanout-profile-{n}.txt"
    spy = subprocess.Popen(
        [
            str(benchlib.BIN / "py-spy"),
            "record",
            "--format",
            "raw",
            "--rate",
            "200",
            "--nonblocking",
            "--gil",
            "-p",
            str(server.proc.pid),
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return spy


def count_codes(errors: list[tuple[float, str, bool]]) -> dict[str, int]:
    return dict(sorted(collections.Counter(code for _t, code, _live in errors).items()))


def run_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n== {n:,} agents", flush=True)
    cached, token, ca_rel, agents = fleet(n, args.fresh)
    work = Path(tempfile.mkdtemp(prefix=f"fanout-{n}-"))
    data = work / "data"
    shutil.copytree(cached, data)
    server = BenchServer(data, token, data / ca_rel)
    server.start()
    clients: Clients | None = None
    out: dict[str, Any] = {"agents": n, "client_processes": args.clients}
    try:
        rev0 = new_revision(server)
        server.applied(rev0)  # warm the rollout path before the baseline
        time.sleep(1.0)
        rss_before = server.rss()
        clients = Clients(
            server.address,
            server.ca,
            agents,
            args.clients,
            args.connect_rate,
            args.backoff_cap,
            args.ack,
        )
        t_open = time.monotonic()
        clients.ask("open")
        connect = wait_acked(clients, None, n, rev0, t_open, args.timeout, progress=server)
        live, _acked, _latest = clients.status(rev0)
        print(
            f"  {live:,} streams open, all at revision {rev0} after "
            f"{time.monotonic() - t_open:.1f} s",
            flush=True,
        )
        time.sleep(3.0)
        rss_after = server.rss()
        out["memory"] = {
            "rss_before_mb": rss_before / 2**20,
            "rss_streams_open_mb": rss_after / 2**20,
            "kb_per_stream": (rss_after - rss_before) / n / 1024,
            "streams_live": clients.status(rev0)[0],
        }
        out["connect_and_first_ack_s"] = connect["client_s"]
        print(f"  memory: {out['memory']['kb_per_stream']:.1f} KB per open stream", flush=True)
        clients.errors()  # forget connect-time noise

        spy = profile_server(server, n, args.profile)
        runs = []
        for k in range(args.repeats):
            time.sleep(1.0)
            cpu0 = server.cpu(), clients.cpu()
            t0 = time.monotonic()
            rev = new_revision(server)
            set_s = time.monotonic() - t0
            got = wait_acked(clients, server, n, rev, t0, args.timeout, args.rollout_poll)
            got["set_config_s"] = set_s
            got["server_cpu_s"] = server.cpu() - cpu0[0]
            got["clients_cpu_s"] = clients.cpu() - cpu0[1]
            runs.append(got)
            print(
                f"  fan-out {k + 1}: revision {rev}: clients {_s(got['client_s'])}, "
                f"server {_s(got['server_s'])} (SetConfig {set_s:.2f} s; CPU server "
                f"{got['server_cpu_s']:.1f} s, clients {got['clients_cpu_s']:.1f} s)",
                flush=True,
            )
        out["fanout"] = {
            "runs": runs,
            "client_median_s": _median([r["client_s"] for r in runs]),
            "server_median_s": _median([r["server_s"] for r in runs]),
            "goal_s": 2.0 if n <= 1000 else 10.0,
        }
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        errors_before = clients.errors()
        out["fanout"]["agent_errors"] = count_codes(errors_before)

        # -- restart ------------------------------------------------------------
        time.sleep(1.0)
        t_term = time.monotonic()
        stop_s = server.stop()
        t_down = time.monotonic()
        server.start(timeout=args.timeout, by_log=True)
        t_up = time.monotonic()
        rev = new_revision(server)
        got = wait_acked(clients, server, n, rev, t_up, args.restart_timeout, args.rollout_poll)
        errs = clients.errors()
        after_up = [e for e in errs if e[0] >= t_up]
        out["restart"] = {
            "revision": rev,
            "stop_s": stop_s,
            "down_s": t_up - t_down,
            "catch_up_client_s": got["client_s"],
            "catch_up_server_s": got["server_s"],
            "from_sigterm_client_s": None
            if got["client_s"] is None
            else got["client_s"] + (t_up - t_term),
            "acked": got["acked"],
            "stream_breaks": count_codes([e for e in errs if e[2]]),
            "failed_attempts_while_down": count_codes(
                [e for e in errs if not e[2] and e[0] < t_up]
            ),
            "failed_attempts_after_up": count_codes([e for e in after_up if not e[2]]),
            "streams_live_after": clients.status(rev)[0],
        }
        out["server_rss_end_mb"] = server.rss() / 2**20
        r = out["restart"]
        print(
            f"  restart: down {r['down_s']:.1f} s (SIGTERM->exit {stop_s:.1f} s); catch-up after "
            f"up: clients {_s(r['catch_up_client_s'])}, server {_s(r['catch_up_server_s'])} "
            f"({r['acked']:,} of {n:,} acked)",
            flush=True,
        )
        print(
            f"  errors: stream breaks {r['stream_breaks']}, while down "
            f"{r['failed_attempts_while_down']}, after up {r['failed_attempts_after_up']}",
            flush=True,
        )
    finally:
        if clients is not None:
            clients.stop()
        server.stop()
        if args.keep:
            print(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if len(got) == len(values) and got else None


def _s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--agents", default="1000,10000", help="fleet sizes, comma-separated")
    p.add_argument("--quick", action="store_true", help="one small fleet (200 agents)")
    p.add_argument("--repeats", type=int, default=3, help="fan-outs per size (median reported)")
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument(
        "--connect-rate",
        type=float,
        default=200.0,
        help="agents opening their first stream per second (a burst of TLS handshakes "
        "beyond what the box can do times out and collapses)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="give up a wait after (s)")
    p.add_argument(
        "--backoff-cap",
        type=float,
        default=BACKOFF_CAP,
        help="agents' reconnect backoff cap in s (full jitter, base 0.2 s)",
    )
    p.add_argument(
        "--ack",
        choices=["stream", "unary"],
        default="stream",
        help="how agents ack: on their Session stream (as the real agent does) or with an "
        "AckConfig call each (WatchConfig, the older form)",
    )
    p.add_argument(
        "--restart-timeout", type=float, default=180.0, help="give up the catch-up after (s)"
    )
    p.add_argument(
        "--rollout-poll",
        type=float,
        default=0.0,
        help="also poll ConfigRollout every S seconds during a fan-out (0: only at the end)",
    )
    p.add_argument("--fresh", action="store_true", help="enroll again instead of the cache")
    p.add_argument("--keep", action="store_true", help="keep the run's data dir")
    p.add_argument("--profile", action="store_true", help="py-spy the server during the fan-outs")
    p.add_argument("--out", default="", help="result file name under bench/results/")
    args = p.parse_args()
    sizes = [200] if args.quick else [int(x) for x in args.agents.split(",") if x.strip()]
    raise_fd_limit()
    results = [run_size(n, args) for n in sizes]
    rows = []
    for r in results:
        f, m, rs = r["fanout"], r["memory"], r["restart"]
        rows.append(
            [
                r["agents"],
                _num(f["client_median_s"]),
                _num(f["server_median_s"]),
                f["goal_s"],
                round(m["kb_per_stream"], 1),
                _num(rs["catch_up_client_s"]),
                _num(rs["from_sigterm_client_s"]),
                sum(rs["stream_breaks"].values()),
                _codes(rs["failed_attempts_after_up"]),
            ]
        )
    print()
    print(
        benchlib.table(
            [
                "agents",
                "fanout client s",
                "fanout server s",
                "goal s",
                "KB/stream",
                "catch-up s",
                "from SIGTERM s",
                "breaks",
                "errors after up",
            ],
            rows,
        )
    )
    name = args.out or ("config_fanout-quick.json" if args.quick else "config_fanout.json")
    path = benchlib.write_json(
        name,
        {
            "machine": benchlib.machine(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "backoff": {"base_s": BACKOFF_BASE, "cap_s": args.backoff_cap, "jitter": "full"},
            "ack": args.ack,
            "results": results,
        },
    )
    print(f"\nwrote {path}")


def _num(v: float | None) -> float | str:
    return "-" if v is None else round(v, 2)


def _codes(c: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in c.items()) or "none"


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    main()
