"""Helpers shared by the benchmarks: real server processes, tables, result files.

Not part of the test suite and not imported by the product.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Server:
    """One `storesafe-server serve` process on a loopback port."""

    data_dir: Path
    admin_token: str
    ca_path: Path
    db_url: str = ""
    tls: bool = False
    address: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0, serve_args: Sequence[str] = ()) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        args = [
            str(BIN / "storesafe-server"),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.address,
        ]
        if not self.tls:
            args.append("--insecure")
        if self.db_url:
            args += ["--db", self.db_url]
        args += list(serve_args)
        log = (self.data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        wait_ready(self.address, self.proc, self.credentials(), timeout)

    def credentials(self) -> grpc.ChannelCredentials | None:
        return grpc.ssl_channel_credentials(self.ca_path.read_bytes()) if self.tls else None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    @property
    def admin_metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.admin_token}")]


def init_server(data_dir: Path, *, db_url: str = "", tls: bool = False) -> Server:
    """`storesafe-server init --json` in a fresh data dir (not started)."""
    args = [str(BIN / "storesafe-server"), "init", "--data-dir", str(data_dir), "--json"]
    if db_url:
        args += ["--db", db_url]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    info = json.loads(out)
    return Server(
        data_dir=data_dir,
        admin_token=info["admin_token"],
        ca_path=Path(info["ca_cert"]),
        db_url=db_url,
        tls=tls,
    )


def channel(
    address: str, creds: grpc.ChannelCredentials | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    if creds is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, creds, options=list(options))


def wait_ready(
    address: str,
    proc: subprocess.Popen[bytes],
    creds: grpc.ChannelCredentials | None,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode}")
        with channel(address, creds) as ch:
            try:
                grpc.channel_ready_future(ch).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                continue
    raise RuntimeError(f"server on {address} not ready after {timeout}s")


@contextlib.contextmanager
def fresh_pg_database(url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of `url`, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"storesafe_bench_{uuid.uuid4().hex[:10]}"
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


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width text table; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] in ("", "-") for row in rows) and rows
        for i in range(len(headers))
    ]

    def fmt(values: Sequence[str]) -> str:
        out = [
            v.rjust(w) if numeric[i] else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    lines = [fmt(list(headers)), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
