"""The alert storage contract: per-site alerted state, the delivery queue and its log.

The database decides who sends: every state change is conditional on the state
the caller read, and a delivery is sent by whoever holds its lease. Several
server replicas sharing one database therefore send each notification once.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt

from server.alerting.message import Notice
from server.alerting.policy import Alerted


@dataclasses.dataclass(frozen=True)
class NewDelivery:
    """A notification to queue: its channel, shown destination, sealed target and content."""

    channel: str
    destination: str
    target_sealed: str
    notice: Notice


@dataclasses.dataclass(frozen=True)
class Change:
    """Move one site's alerted state from `expected` (a token; None: no row) to `state`
    (None: ok, the row removed), queueing `deliveries` with it."""

    site_id: int
    expected: str | None
    state: Alerted | None
    deliveries: tuple[NewDelivery, ...]


@dataclasses.dataclass(frozen=True)
class Job:
    """A claimed delivery: send it, then report how it went."""

    id: int
    channel: str
    target_sealed: str
    message_json: str
    attempts: int  # including this one
    claimed_until: dt.datetime


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one attempt went: `error` empty when delivered."""

    job: Job
    error: str = ""
    retry_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class DeliveryRecord:
    id: int
    created_at: dt.datetime
    site: str
    kind: str
    status_from: str
    status_to: str
    channel: str
    destination: str
    attempts: int
    state: str  # pending | delivered | failed
    last_error: str
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None


class AlertStore(abc.ABC):
    """Durable alert state. Every write MUST be durable when it returns."""

    @abc.abstractmethod
    async def alert_states(self) -> dict[int, Alerted]:
        """The alerted state of every site that has one (sites without one are ok)."""

    @abc.abstractmethod
    async def apply(self, changes: list[Change], now: dt.datetime) -> int:
        """Apply each change whose site still holds `expected`; return how many applied.

        A change MUST apply only if the site's stored token equals `expected` (or,
        for None, the site has no row), even when replicas race; its deliveries
        MUST be queued (due `now`) in the same transaction, and only if it applied.
        """

    @abc.abstractmethod
    async def claim_digest(
        self, day: str, now: dt.datetime, sites: int, deliveries: list[NewDelivery]
    ) -> bool:
        """Record the digest of `day` and queue its deliveries, once per day across
        replicas; return False (queueing nothing) when the day's digest exists."""

    @abc.abstractmethod
    async def claim(self, now: dt.datetime, lease: dt.timedelta, limit: int) -> list[Job]:
        """Lease up to `limit` pending deliveries due at `now` and count an attempt each.

        A delivery MUST be leased to one caller at a time; one whose lease ran out
        (its sender died) MUST become claimable again.
        """

    @abc.abstractmethod
    async def finish(self, outcomes: list[Outcome], now: dt.datetime) -> None:
        """Record how leased deliveries went, all in one transaction: delivered (no
        error), due again at `retry_at`, or failed for good (an error, no retry_at).
        An outcome MUST be ignored when its lease is no longer the delivery's."""

    @abc.abstractmethod
    async def deliveries(self, *, site: str, limit: int) -> list[DeliveryRecord]:
        """The newest deliveries (of one site, or all for ""), newest first."""

    @abc.abstractmethod
    async def totals(self) -> dict[str, int]:
        """Deliveries by state (pending, delivered, failed) and failed attempts ("errors")."""
