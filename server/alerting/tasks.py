"""The two background tasks of alerting in the server process, and their HTTP session.

`start` begins the evaluator (every `interval` seconds) and the deliverer (woken
by the evaluator, and polling every `poll` seconds for work queued by other
replicas or due for a retry); `stop` cancels both and closes the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from sqlalchemy import Engine

from common.clock import Clock
from server.alerting.channels.base import Channel
from server.alerting.channels.email import EmailChannel
from server.alerting.channels.http import TIMEOUT_SECONDS
from server.alerting.channels.slack import SlackChannel
from server.alerting.channels.teams import TeamsChannel
from server.alerting.channels.webhook import WebhookChannel
from server.alerting.delivery import Deliverer, Retry
from server.alerting.evaluator import Evaluator
from server.alerting.queries import AlertQueries
from server.alerting.sql_store import SqlAlertStore
from server.services.fleet import FleetQueries
from server.services.push import ConfigHub
from server.services.secretbox import SecretBox

log = logging.getLogger(__name__)

EVALUATE_SECONDS = 15.0
POLL_SECONDS = 5.0


def channels(
    session: aiohttp.ClientSession, timeout: float = TIMEOUT_SECONDS
) -> dict[str, Channel]:
    """Every channel, each giving up on an endpoint after `timeout` seconds."""
    return {
        "webhook": WebhookChannel(session, timeout),
        "slack": SlackChannel(session, timeout),
        "teams": TeamsChannel(session, timeout),
        "email": EmailChannel(timeout),
    }


class AlertTasks:
    def __init__(
        self,
        engine: Engine,
        fleet: FleetQueries,
        hub: ConfigHub,
        box: SecretBox,
        clock: Clock,
        *,
        interval: float = EVALUATE_SECONDS,
        poll: float = POLL_SECONDS,
        retry: Retry | None = None,
        on_outcome: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.store = SqlAlertStore(engine)
        self._on_outcome = on_outcome
        self.queries = AlertQueries(self.store)
        self._fleet, self._hub, self._box, self._clock = fleet, hub, box, clock
        self._interval, self._poll, self._retry = interval, poll, retry
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.evaluator = Evaluator(fleet, hub, self.store, box, clock)
        self.deliverer: Deliverer | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"User-Agent": "storesafe-server"})
        self.deliverer = Deliverer(
            self.store,
            self._box,
            self._clock,
            channels(self._session),
            retry=self._retry,
            on_outcome=self._on_outcome,
        )
        self._tasks = [
            asyncio.create_task(self._evaluate_loop(), name="alert-evaluator"),
            asyncio.create_task(self._deliver_loop(self.deliverer), name="alert-deliverer"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _evaluate_loop(self) -> None:
        while True:
            if await _logged("evaluation", self.evaluator.run_once):
                self._wake.set()
            await asyncio.sleep(self._interval)

    async def _deliver_loop(self, deliverer: Deliverer) -> None:
        while True:
            sent = await _logged("delivery", deliverer.run_once)
            if sent >= deliverer.batch:
                continue  # more are waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)
            self._wake.clear()


async def _logged(what: str, fn: Callable[[], Awaitable[int]]) -> int:
    """Run one step; a failure (database away, say) is logged and retried next round."""
    try:
        return await fn()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("alert %s failed; trying again next round", what)
        return 0
