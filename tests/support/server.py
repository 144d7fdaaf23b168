"""Start real `storesafe-server` processes for tests, on SQLite or PostgreSQL."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
from storesafe.v1 import admin_pb2, admin_pb2_grpc

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class ServerHandle:
    """A server process: `address` stays the same across stop/start."""

    data_dir: Path
    address: str
    ca_path: Path
    admin_token: str
    db_url: str = ""
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self, timeout: float = 30.0) -> None:
        assert self.proc is None, "already running"
        args = [
            str(BIN / "storesafe-server"),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.address,
            # store maintenance only where a test runs it itself (tests/integration/server/
            # test_store_gc.py): a scheduled run must not forget a test's snapshots
            "--maintenance-every",
            "0",
            *self.extra_args,
        ]
        if self.db_url:
            args += ["--db", self.db_url]
        self.log_path = self.data_dir / "server.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        creds = grpc.ssl_channel_credentials(self.ca_path.read_bytes())
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            with grpc.secure_channel(self.address, creds) as ch:
                try:
                    grpc.channel_ready_future(ch).result(timeout=0.5)
                    return
                except grpc.FutureTimeoutError:
                    continue
        raise RuntimeError(f"server not ready after {timeout}s: {self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def admin_stub(self) -> admin_pb2_grpc.AdminServiceStub:
        creds = grpc.ssl_channel_credentials(self.ca_path.read_bytes())
        return admin_pb2_grpc.AdminServiceStub(grpc.secure_channel(self.address, creds))

    @property
    def admin_metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.admin_token}")]

    @property
    def cli_env(self) -> dict[str, str]:
        """Environment for the `storesafe` CLI to reach this server."""
        return {
            **os.environ,
            "STORESAFE_SERVER": self.address,
            "STORESAFE_TOKEN": self.admin_token,
            "STORESAFE_CA": str(self.ca_path),
        }


def stored_chunks(server: ServerHandle, site: str, store: Path | None = None) -> set[str]:
    """The chunk ids of `site` in the filesystem store (`store`: another than the server's)."""
    root = (store or server.data_dir / "store") / "sites" / site / "chunks"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def init_server(
    tmp_path: Path, *, db_url: str = "", extra_args: tuple[str, ...] = ()
) -> ServerHandle:
    """A data dir as `storesafe-server init` makes it; the server is not started.

    On SQLite (no `db_url`) the data dir is a copy of one made by the real `init` once
    per test process (its CA, admin token and database are the same in each copy; the
    import of the server alone costs more than a test's own work): each server still has
    its own database and store."""
    data_dir = tmp_path / f"server-{uuid.uuid4().hex[:6]}"
    if db_url:
        info = _run_init(data_dir, db_url)
    else:
        template, info = _template()
        shutil.copytree(template, data_dir)
        info = {**info, "ca_cert": str(data_dir / Path(info["ca_cert"]).name)}
    return ServerHandle(
        data_dir=data_dir,
        address=f"127.0.0.1:{free_port()}",
        ca_path=Path(info["ca_cert"]),
        admin_token=info["admin_token"],
        db_url=db_url,
        extra_args=extra_args,
    )


def _run_init(data_dir: Path, db_url: str = "") -> dict[str, str]:
    args = [str(BIN / "storesafe-server"), "init", "--data-dir", str(data_dir), "--json"]
    if db_url:
        args += ["--db", db_url]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    info: dict[str, str] = json.loads(out)
    return info


_TEMPLATE: list[tuple[Path, dict[str, str]]] = []


def _template() -> tuple[Path, dict[str, str]]:
    """The SQLite data dir `init` made for this test process (removed at exit)."""
    if not _TEMPLATE:
        root = Path(tempfile.mkdtemp(prefix="storesafe-init-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        data_dir = root / "server"
        _TEMPLATE.append((data_dir, _run_init(data_dir)))
    return _TEMPLATE[0]


def start_server(
    tmp_path: Path, *, db_url: str = "", extra_args: tuple[str, ...] = ()
) -> ServerHandle:
    """Init a data dir and start a server on a free loopback port."""
    handle = init_server(tmp_path, db_url=db_url, extra_args=extra_args)
    handle.start()
    return handle


def create_enrollment_token(
    handle: ServerHandle, site: str, group: str = "default", ttl_seconds: int = 0
) -> str:
    resp = handle.admin_stub().CreateEnrollmentToken(
        admin_pb2.CreateEnrollmentTokenRequest(site=site, group=group, ttl_seconds=ttl_seconds),
        metadata=handle.admin_metadata,
        timeout=10,
    )
    return resp.token


PG_ENV = "STORESAFE_TEST_PG"


@contextlib.contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on the server named by $STORESAFE_TEST_PG."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(os.environ[PG_ENV])
    name = f"storesafe_t_{uuid.uuid4().hex[:10]}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name, drivername="postgresql+psycopg").render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def set_config(
    h: ServerHandle,
    scope: int,
    target: str = "",
    unset: tuple[str, ...] = (),
    **values: str,
) -> admin_pb2.SetConfigResponse:
    """SetConfig through the admin API; keys written with `__` for `.` (backup__dir)."""
    return h.admin_stub().SetConfig(
        admin_pb2.SetConfigRequest(
            scope=scope,
            target=target,
            values={k.replace("__", "."): v for k, v in values.items()},
            unset=list(unset),
        ),
        metadata=h.admin_metadata,
        timeout=30,
    )


def rollout(h: ServerHandle) -> dict[str, admin_pb2.RolloutRow]:
    """ConfigRollout by site name."""
    reply = h.admin_stub().ConfigRollout(
        admin_pb2.ConfigRolloutRequest(), metadata=h.admin_metadata, timeout=30
    )
    return {r.site: r for r in reply.sites}


def enroll_agent(handle: ServerHandle, site: str) -> str:
    """Enroll one agent for `site` through the real API; its credential."""
    from storesafe.v1 import agent_pb2, agent_pb2_grpc

    token = create_enrollment_token(handle, site)
    creds = grpc.ssl_channel_credentials(handle.ca_path.read_bytes())
    with grpc.secure_channel(handle.address, creds) as ch:
        reply = agent_pb2_grpc.AgentServiceStub(ch).Enroll(
            agent_pb2.EnrollRequest(token=token, site=site, hostname="pos-1"), timeout=10
        )
    return reply.credential
