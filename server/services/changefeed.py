"""Keeps one replica's push hub current with changes made anywhere.

On PostgreSQL each replica LISTENs (server/state/notify.py) on the channel that config and command
writes NOTIFY inside their transaction; on SQLite (one process) nothing else
can write. On both, a periodic poll of the newest revision, of open
commands and of recent revocations is the safety net for a notification lost
while reconnecting. The same loop expires commands no agent picked up in time.

A revocation notice (`revoke:SITE`, or `revoke:SITE:KEEP` from an enrollment,
which revokes every agent of the site but the new one) ends the revoked
agents' open streams on this replica and drops their cached credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from common.clock import Clock
from server.services.push import COMMAND_LIFETIME, ConfigHub
from server.services.revocation import Revocations
from server.state import notify
from server.state.config_base import ConfigState

log = logging.getLogger(__name__)


class ChangeFeed:
    def __init__(
        self,
        hub: ConfigHub,
        config: ConfigState,
        clock: Clock,
        *,
        db_url: str,
        poll_seconds: float = 10.0,
        revocations: Revocations | None = None,
    ) -> None:
        self._revocations = revocations
        self._hub = hub
        self._config = config
        self._clock = clock
        self._db_url = db_url
        self._poll_seconds = poll_seconds
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._poll(), name="changefeed-poll"))
        if notify.can_listen(self._db_url):
            self._tasks.append(asyncio.create_task(self._listen(), name="changefeed-listen"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def handle(self, payload: str) -> None:
        kind, _, arg = payload.partition(":")
        if kind == "config":
            await self._hub.refresh()
        elif kind == "command" and arg.isdigit():
            await self._hub.commands_changed(int(arg))
        elif kind == "revoke" and self._revocations is not None:
            site, _, keep = arg.partition(":")
            await self._revocations.apply(site, keep=keep or None)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                await self._hub.refresh_if_newer()
                await self._hub.load_command_sites()
                if self._revocations is not None:
                    await self._revocations.catch_up()
                now = self._clock.now()
                if await self._config.expire_commands(before=now - COMMAND_LIFETIME, now=now):
                    log.info("expired remote commands that no agent picked up in 24 h")
            except Exception:
                log.exception("config poll failed; retrying in %.0f s", self._poll_seconds)

    async def _listen(self) -> None:
        await notify.listen(self._db_url, on_connect=self._catch_up, on_notice=self.handle)

    async def _catch_up(self) -> None:
        """What was missed while the change feed was away."""
        await self._hub.refresh_if_newer()
        await self._hub.commands_changed(None)
        await self._hub.load_command_sites()
        if self._revocations is not None:
            await self._revocations.catch_up()
