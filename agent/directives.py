"""The directive loop: hold the server's push stream open, act on what arrives, acknowledge it.

- A configuration revision goes through `ConfigStore.apply` (validated, applied
  atomically, the last good one kept); the result, applied or refused with the
  reason, is acknowledged. The stream carries only the latest revision.
- A remote command runs at most once per id through `CommandRunner`, which
  remembers finished ids across restarts; its outcome is acknowledged. A
  redelivered command (the ack was lost) is acknowledged again, not re-run.
- A stopping server says goodbye with a window: the stream is reopened at a
  random moment within it, and while the server is still down each retry
  again (a fleet returns at the rate the server asked for, not all at once). Otherwise
  the stream is reopened when the server ends it, and after a failure with
  jittered backoff; a refused credential is retried slowly, or at once when
  a re-enrollment replaces it (the check-in loop logs what to do).

It runs as one of the runner's jobs (`agent.runner.Job`).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Callable
from typing import Protocol

from agent.backoff import Backoff
from agent.commands import CommandRunner
from agent.configsync import ConfigStore
from agent.domain.messages import ConfigPush, Directive, RemoteCommand, ServerGoingAway
from agent.runner import ReportSink, sleep_until_changed
from agent.timer import SystemTimer, Timer
from common.errors import PermissionDenied, StoreSafeError, Unauthenticated

log = logging.getLogger(__name__)


class DirectiveLink(Protocol):
    """The part of `agent.transport.ServerLink` this loop uses."""

    def watch(
        self, *, running_revision: int, site: str = ""
    ) -> AsyncGenerator[Directive, None]: ...

    async def ack_config(
        self, *, revision: int, applied: bool, error: str = "", site: str = ""
    ) -> None: ...

    async def ack_command(
        self, *, command_id: str, outcome: str, message: str = "", site: str = ""
    ) -> None: ...

    async def close(self) -> None: ...


class DirectiveLoop:
    """A runner job that keeps the directive stream open until cancelled."""

    def __init__(
        self,
        *,
        connect: Callable[[], DirectiveLink],
        config: ConfigStore,
        commands: CommandRunner,
        site: str,
        backoff: Backoff,
        refused_retry: float = 300.0,
        reopen_delay: float = 1.0,
        credential_stamp: Callable[[], object] = lambda: None,
        rand: Callable[[], float] = random.random,
        timer: Timer | None = None,
    ) -> None:
        self._connect = connect
        self._config = config
        self._commands = commands
        self._site = site
        self._backoff = backoff
        self._refused_retry = refused_retry
        self._reopen_delay = reopen_delay
        self._credential_stamp = credential_stamp
        self._rand = rand
        self._timer = timer or SystemTimer()
        self._return_window = 0.0  # seconds, from the server's last goodbye
        self._refused = False
        self._link: DirectiveLink | None = None

    async def __call__(self, sink: ReportSink) -> None:
        try:
            while True:
                delay = await self.watch_once()
                if self._refused:
                    await sleep_until_changed(self._timer, delay, self._credential_stamp)
                else:
                    await self._timer.sleep(delay)
        finally:
            await self._drop_link()

    async def watch_once(self) -> float:
        """Hold the stream until it ends; return the seconds to wait before reopening."""
        self._refused = False
        try:
            link = self._get_link()
            stream = link.watch(running_revision=self._config.revision, site=self._site)
            async with contextlib.aclosing(stream):
                async for directive in stream:
                    self._backoff.reset()
                    self._return_window = 0.0
                    if isinstance(directive, ServerGoingAway):
                        self._return_window = float(directive.within_seconds)
                        delay = self._return_window * self._rand()
                        log.info("the server is stopping; reconnecting in %.0f s", delay)
                        return delay
                    await self._handle(link, directive)
        except (Unauthenticated, PermissionDenied) as exc:
            log.debug("directive stream refused: %s", exc)
            await self._drop_link()
            self._refused = True
            return self._refused_retry
        except StoreSafeError as exc:
            log.debug("directive stream interrupted: %s", exc)
            if self._return_window:
                # After a goodbye, each retry lands anywhere in the server's window again:
                # the fleet keeps arriving at the rate the server asked for until it is back.
                return self._return_window * self._rand()
            return self._backoff.next_delay()
        self._return_window = 0.0
        return self._reopen_delay

    async def _handle(self, link: DirectiveLink, directive: Directive) -> None:
        if isinstance(directive, ConfigPush):
            result = self._config.apply(directive.revision, directive.values)
            await link.ack_config(
                revision=result.revision,
                applied=result.applied,
                error=result.error,
                site=self._site,
            )
        elif isinstance(directive, RemoteCommand):
            done = await self._commands.run(directive.id, directive.kind)
            await link.ack_command(
                command_id=directive.id,
                outcome=done.outcome,
                message=done.message,
                site=self._site,
            )

    def _get_link(self) -> DirectiveLink:
        if self._link is None:
            self._link = self._connect()
        return self._link

    async def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(Exception):
                await link.close()
