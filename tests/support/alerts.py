"""Alert receivers on loopback (a webhook receiver on aiohttp, an SMTP sink on aiosmtpd),
and an in-process alerting stack on a real database driven by a FakeClock."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiosmtpd.controller import Controller
from sqlalchemy import update

from server.alerting.delivery import Deliverer, Retry
from server.alerting.evaluator import Evaluator
from server.alerting.sql_store import SqlAlertStore
from server.alerting.tasks import channels
from server.db.engine import make_engine, migrate
from server.domain import credentials
from server.domain.records import AdminIdentity
from server.metrics import ServerMetrics
from server.services.auth import Authenticator
from server.services.config import ConfigService
from server.services.fleet import FleetQueries
from server.services.push import ConfigHub
from server.services.secretbox import SecretBox
from server.state.config_state import SqlConfigState
from server.state.sql import SqlFleetState
from server.state.tables import SITES
from server.state.writer import BatchWriter
from tests.support.clock import FakeClock
from tests.support.server import free_port

ADMIN = AdminIdentity("t-admin", "tester")


@dataclasses.dataclass
class Hit:
    path: str
    body: Any
    answered: int  # HTTP status the receiver gave


class WebhookReceiver:
    """Records every POST; per path it answers 200, 500, or hangs until released."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.modes: dict[str, str] = {}  # path -> "ok" | "500" | "hang"
        self.release = asyncio.Event()
        self.hanging = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def delivered(self, path: str | None = None) -> list[Any]:
        return [h.body for h in self.hits if h.answered == 200 and path in (None, h.path)]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        mode = self.modes.get(request.path, "ok")
        if mode == "hang":
            self.hanging += 1
            await self._notify()
            await self.release.wait()
        status = 500 if mode == "500" else 200
        self.hits.append(Hit(request.path, body, status))
        await self._notify()
        return web.Response(status=status, text="boom" if status == 500 else "ok")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, cond: Callable[[], bool], timeout: float = 30.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(cond), timeout)


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self._sink.mode == "refuse":
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._sink.mode == "drop":
            server.transport.close()  # hang up before answering the message
            return "421 closing"
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self._sink.messages.append(msg)
        return "250 OK"


class SmtpSink:
    """An SMTP server on loopback: accepts and keeps messages, refuses recipients
    ("refuse"), or hangs up after the message's data ("drop")."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.mode = "ok"
        self.port = free_port()
        self._controller = Controller(_SinkHandler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]


class AlertStack:
    """One server replica's alerting parts on a real database, with a FakeClock.

    `tick()` runs one evaluation and delivers until nothing is due, the way the
    server's two tasks do, but on the test's schedule.
    """

    def __init__(
        self,
        db_url: str,
        data_dir: Path,
        clock: FakeClock,
        *,
        retry: Retry | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.timeout = timeout
        self.db_url = db_url
        self.data_dir = data_dir
        self.clock = clock
        self.retry = retry or Retry(
            base=dt.timedelta(minutes=1), cap=dt.timedelta(minutes=4), attempts=4
        )

    async def __aenter__(self) -> AlertStack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(self.db_url)
        await asyncio.to_thread(migrate, self.engine)
        self.state = SqlFleetState(self.engine, BatchWriter(self.engine))
        config_state = SqlConfigState(self.state)
        self.box = SecretBox.for_data_dir(self.data_dir, create=True)
        self.hub = ConfigHub(config_state, self.box, self.clock)
        await self.hub.refresh()
        self.fleet = FleetQueries(self.state, self.clock, Authenticator(self.state), self.hub)
        self.config = ConfigService(self.state, config_state, self.box, self.clock, self.hub)
        self.session = aiohttp.ClientSession()
        self.store = SqlAlertStore(self.engine)
        self.evaluator = Evaluator(self.fleet, self.hub, self.store, self.box, self.clock)
        self.metrics = ServerMetrics()
        self.deliverer = Deliverer(
            self.store,
            self.box,
            self.clock,
            channels(self.session, self.timeout),
            retry=self.retry,
            on_outcome=self.metrics.alert_outcome,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await asyncio.to_thread(self.state.close)

    async def tick(self) -> None:
        await self.evaluator.run_once()
        await self.deliver()

    async def deliver(self) -> None:
        while await self.deliverer.run_once():
            pass

    async def configure(self, scope: str, target: str = "", **values: str) -> None:
        """Set keys on a layer; write them with `__` for `.` (alerts__webhook_url)."""
        await self.config.set(
            ADMIN,
            scope=scope,
            target=target,
            values={k.replace("__", "."): v for k, v in values.items()},
            unset=[],
        )

    async def add_site(self, name: str, group: str = "default") -> None:
        """A site with an agent that checked in now and a verified backup an hour ago."""
        minted = credentials.mint(credentials.ENROLLMENT)
        now = self.clock.now()
        await self.state.create_enrollment_token(
            token_id=minted.id,
            secret_hash=minted.secret_hash,
            site=name,
            group=group,
            created_by="tester",
            now=now,
            expires_at=now + dt.timedelta(hours=1),
        )
        self.set_facts(
            name,
            enrolled_at=now - dt.timedelta(days=1),
            last_seen_at=now,
            last_backup_at=now - dt.timedelta(hours=1),
            last_backup_ok=True,
            last_good_backup_at=now - dt.timedelta(hours=1),
        )

    def set_facts(self, name: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(SITES).where(SITES.c.name == name).values(**values))

    def seen(self, *names: str) -> None:
        for name in names:
            self.set_facts(name, last_seen_at=self.clock.now())

    def backed_up(self, *names: str) -> None:
        now = self.clock.now()
        for name in names:
            self.set_facts(
                name,
                last_seen_at=now,
                last_backup_at=now,
                last_backup_ok=True,
                last_backup_error="",
                last_good_backup_at=now,
            )

    def backup_failed(self, name: str, error: str = "gbak: I/O error on the backup disk") -> None:
        now = self.clock.now()
        self.set_facts(
            name,
            last_seen_at=now,
            last_backup_at=now,
            last_backup_ok=False,
            last_backup_error=error,
        )
