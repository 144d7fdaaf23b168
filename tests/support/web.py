"""The HTTP edge in tests: a real server with --http-listen, an HTTPS client, agent traffic,
and headless Debian chromium driven by Playwright."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ssl
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from playwright.sync_api import Browser, sync_playwright
from storesafe.v1 import agent_pb2, types_pb2

from tests.support.server import ServerHandle, free_port, init_server
from tests.support.simagent import SimAgent

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclasses.dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclasses.dataclass
class WebServer:
    """A running server with its HTTP edge at `base_url` (HTTPS, the server's CA)."""

    handle: ServerHandle
    base_url: str

    @property
    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.handle.ca_path))

    def get(self, path: str, *, token: str = "", cookie: str = "") -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if cookie:
            headers["Cookie"] = cookie
        return self._send(urllib.request.Request(self.base_url + path, headers=headers))

    def post_form(self, path: str, fields: dict[str, str]) -> Answer:
        data = urllib.parse.urlencode(fields).encode()
        return self._send(urllib.request.Request(self.base_url + path, data=data, method="POST"))

    def _send(self, request: urllib.request.Request) -> Answer:
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.ssl), _NoRedirect()
        )
        try:
            with opener.open(request, timeout=30) as reply:
                return Answer(reply.status, reply.headers, reply.read())
        except urllib.error.HTTPError as err:
            return Answer(err.code, err.headers, err.read())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def start_web_server(
    tmp_path: Path, *, db_url: str = "", extra_args: tuple[str, ...] = ()
) -> WebServer:
    """Init and start a server whose HTTP edge listens on a free loopback port. The edge
    listens before gRPC starts, so a server that answers gRPC answers HTTP."""
    port = free_port()
    handle = init_server(
        tmp_path, db_url=db_url, extra_args=("--http-listen", f"127.0.0.1:{port}", *extra_args)
    )
    handle.start()
    return WebServer(handle, f"https://127.0.0.1:{port}")


def ts(when: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def backup_report(
    finished_at: dt.datetime,
    *,
    seconds: float = 60.0,
    size: int = 10_000_000,
    good: bool = True,
    error: str = "",
) -> types_pb2.RunReport:
    return types_pb2.RunReport(
        id=str(uuid.uuid4()),
        kind=types_pb2.RUN_KIND_BACKUP,
        started_at=ts(finished_at - dt.timedelta(seconds=seconds)),
        finished_at=ts(finished_at),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED if good else types_pb2.RUN_OUTCOME_FAILED,
        error_message=error,
        backup=types_pb2.BackupDetails(
            method="gbak",
            size_raw=size * 3,
            size_compressed=size,
            verification=types_pb2.VERIFICATION_PASSED if good else types_pb2.VERIFICATION_NOT_RUN,
        ),
    )


async def check_in(agent: SimAgent, *, hostname: str = "pos-1") -> None:
    await agent.stub.CheckIn(
        agent_pb2.CheckInRequest(
            agent_version="1.0.0",
            hostname=hostname,
            os="Windows 11",
            agent_time=ts(dt.datetime.now(dt.UTC)),
        ),
        metadata=agent.metadata,
        timeout=10,
    )


async def report(agent: SimAgent, run: types_pb2.RunReport) -> bool:
    reply = await agent.stub.ReportRun(
        agent_pb2.ReportRunRequest(report=run), metadata=agent.metadata, timeout=30
    )
    return bool(reply.duplicate)


@dataclasses.dataclass(frozen=True)
class Png:
    width: int
    height: int


def png_size(path: Path) -> Png:
    """Width and height from a PNG's header; AssertionError when it is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert head[12:16] == b"IHDR", "a PNG without its IHDR chunk first"
    width, height = struct.unpack(">II", head[16:24])
    return Png(width, height)


def chromium() -> Iterator[Browser]:
    """Headless Debian chromium (scripts/setup-chromium installs it); Playwright's own
    browser downloads are never used."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
