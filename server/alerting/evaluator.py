"""The evaluator: every few seconds, compare each site's status with what was last
alerted, and queue the notifications the policy says are due.

Per tick it reads the stored alert states first and the fleet view second, so a
replica can only act on a view at least as new as the states it read; each
change is conditional on the state read (AlertStore.apply), so when replicas
race for the same transition one of them queues it and the others do nothing.
Nothing is held in memory between ticks: a restart loses and repeats nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable

from common.clock import Clock
from server.alerting.destinations import Destination, SiteSettings
from server.alerting.message import DigestLine, Notice
from server.alerting.policy import Kind, Observed, decide, digest_day
from server.alerting.store import AlertStore, Change, NewDelivery
from server.domain.records import SiteView
from server.domain.status import Status
from server.services.fleet import FleetQueries
from server.services.push import ConfigHub
from server.services.secretbox import SecretBox

log = logging.getLogger(__name__)

YIELD_EVERY = 1000  # sites between event-loop yields


class Evaluator:
    def __init__(
        self,
        fleet: FleetQueries,
        hub: ConfigHub,
        store: AlertStore,
        box: SecretBox,
        clock: Clock,
        *,
        new_token: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._fleet = fleet
        self._hub = hub
        self._store = store
        self._box = box
        self._clock = clock
        self._new_token = new_token
        self._sealed: dict[str, str] = {}
        self._digest_checked = ""

    async def run_once(self) -> int:
        """One evaluation; return the state changes applied plus digest deliveries queued."""
        now = self._clock.now()
        states = await self._store.alert_states()
        views = await self._fleet.list_sites()
        settings = SiteSettings(self._hub.snapshot)
        changes: list[Change] = []
        for i, view in enumerate(views):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)
            row = view.row
            destinations, rules = settings.of(row.name, row.group)
            previous = states.get(row.id)
            observed = Observed(view.status.status, view.status.problems, self._offline_since(view))
            decision = decide(previous, observed, rules, now, self._new_token())
            if decision is None:
                continue
            notice = Notice(
                kind=decision.kind,
                at=now,
                site=row.name,
                group=row.group,
                status_from=str(decision.status_from),
                status_to=str(decision.status_to),
                since=decision.since,
                problems=view.status.problems,
            )
            changes.append(
                Change(
                    row.id,
                    previous.token if previous is not None else None,
                    decision.state,
                    tuple(self._delivery(d, notice) for d in destinations),
                )
            )
        applied = 0
        if changes:
            applied = await self._store.apply(changes, now)
            log.info("alerts: %d of %d change(s) applied by this replica", applied, len(changes))
        return applied + await self._digest(views, settings, now)

    def _offline_since(self, view: SiteView) -> dt.datetime | None:
        row = view.row
        seen = row.last_seen_at or row.enrolled_at
        if seen is None:
            return None
        return seen + dt.timedelta(minutes=self._fleet.policy_for(row).offline_after_minutes)

    def _delivery(self, dest: Destination, notice: Notice) -> NewDelivery:
        sealed = self._sealed.get(dest.target_json)
        if sealed is None:
            if len(self._sealed) > 10_000:
                self._sealed.clear()
            sealed = self._sealed[dest.target_json] = self._box.seal(dest.target_json)
        return NewDelivery(dest.channel, dest.shown, sealed, notice)

    async def _digest(self, views: list[SiteView], settings: SiteSettings, now: dt.datetime) -> int:
        day = digest_day(now, settings.digest_time())
        if day is None or day == self._digest_checked:
            return 0
        by_dest: dict[Destination, list[DigestLine]] = {}
        bad = [v for v in views if v.status.status is not Status.OK]
        for view in bad:
            row = view.row
            first = view.status.problems[0] if view.status.problems else ""
            line = DigestLine(row.name, row.group, str(view.status.status), first)
            for dest in settings.of(row.name, row.group)[0]:
                by_dest.setdefault(dest, []).append(line)
        deliveries = [
            self._delivery(dest, Notice(Kind.DIGEST, now, digest=tuple(found)))
            for dest, found in by_dest.items()
        ]
        claimed = await self._store.claim_digest(day, now, len(bad), deliveries)
        self._digest_checked = day
        return len(deliveries) if claimed else 0
