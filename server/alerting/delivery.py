"""The deliverer: lease due notifications from the queue, send them, record the outcome.

It runs as its own task with its own database transactions (never the ingest
writer), with a bounded number of sends in flight, so a slow or dead endpoint
costs a lease and a retry, not a check-in. Failed sends retry with exponential
backoff up to a cap; after the last attempt (or a permanent refusal such as
HTTP 404) the delivery is marked failed. Every attempt's outcome stays in the
table, which `storesafe alerts` lists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping

from common.clock import Clock
from common.errors import StoreSafeError
from server.alerting.channels.base import Channel, DeliveryError
from server.alerting.message import Notice
from server.alerting.store import AlertStore, Job, Outcome
from server.services.secretbox import SecretBox

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Retry:
    """Exponential backoff: base, 2 x base, 4 x base ... up to `cap`, `attempts` in all."""

    base: dt.timedelta = dt.timedelta(seconds=30)
    cap: dt.timedelta = dt.timedelta(minutes=30)
    attempts: int = 10

    def next_at(self, attempts: int, now: dt.datetime) -> dt.datetime | None:
        """When to try again after `attempts` failed attempts, or None: give up."""
        if attempts >= self.attempts:
            return None
        factor = 1 << max(0, min(attempts - 1, 30))
        return now + min(self.cap, self.base * factor)


class Deliverer:
    """Sends `batch` leased deliveries at a time, `concurrency` at once, and records
    their outcomes in one transaction. A batch lasts at most batch / concurrency
    rounds of the channel timeout (4 x 20 s with the defaults), well inside the
    lease, so no delivery is claimed by a second sender while the first still works."""

    def __init__(
        self,
        store: AlertStore,
        box: SecretBox,
        clock: Clock,
        channels: Mapping[str, Channel],
        *,
        retry: Retry | None = None,
        lease: dt.timedelta = dt.timedelta(minutes=2),
        batch: int = 32,
        concurrency: int = 8,
        on_outcome: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._store = store
        self._on_outcome = on_outcome  # (channel, delivered): for /metrics
        self._box = box
        self._clock = clock
        self._channels = channels
        self._retry = retry or Retry()
        self._lease = lease
        self.batch = batch
        self._slots = asyncio.Semaphore(concurrency)

    async def run_once(self) -> int:
        """Send one batch of due deliveries; return how many were attempted."""
        jobs = await self._store.claim(self._clock.now(), self._lease, self.batch)
        if jobs:
            outcomes = await asyncio.gather(*(self._attempt(job) for job in jobs))
            await self._store.finish(list(outcomes), self._clock.now())
            if self._on_outcome is not None:
                for outcome in outcomes:
                    self._on_outcome(outcome.job.channel, not outcome.error)
        return len(jobs)

    async def _attempt(self, job: Job) -> Outcome:
        async with self._slots:
            try:
                await self._send(job)
            except DeliveryError as exc:
                return self._failed(job, exc.message, permanent=exc.permanent)
            except StoreSafeError as exc:  # e.g. a target sealed with another config.key
                return self._failed(job, exc.message, permanent=True)
            except Exception as exc:  # one bad send must not stop the others
                log.exception("alert delivery %d: unexpected error", job.id)
                return self._failed(job, f"internal error: {type(exc).__name__}", permanent=False)
            return Outcome(job)

    async def _send(self, job: Job) -> None:
        channel = self._channels.get(job.channel)
        if channel is None:
            raise DeliveryError(f"no {job.channel} channel on this server", permanent=True)
        target = json.loads(self._box.open(job.target_sealed))
        await channel.send(target, Notice.from_json(job.message_json))

    def _failed(self, job: Job, error: str, *, permanent: bool) -> Outcome:
        retry_at = None if permanent else self._retry.next_at(job.attempts, self._clock.now())
        log.warning(
            "alert delivery %d (%s) attempt %d failed%s: %s",
            job.id,
            job.channel,
            job.attempts,
            "" if retry_at else " for good",
            error,
        )
        return Outcome(job, error, retry_at)
