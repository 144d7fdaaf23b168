"""Revocation on one replica: cached credentials dropped and the agents' open streams ended.

A revocation is a row in the shared database (`revoke_agents`, or an enrollment,
which revokes the site's earlier agents). The replica that made it applies it
here at once; the others apply it when the change feed brings the notice
(PostgreSQL NOTIFY `revoke:SITE[:KEEP]`) and, should a notice be lost, when the
feed's poll finds the revocation in the database (`catch_up`).
"""

from __future__ import annotations

import datetime as dt
import logging

from common.clock import Clock
from server.services.auth import Authenticator
from server.services.push import ConfigHub
from server.state.base import FleetState

log = logging.getLogger(__name__)

# How far back each poll looks for revocations (covers commit delays and clocks of
# other replicas that run a little behind).
CATCH_UP_OVERLAP = dt.timedelta(seconds=60)


class Revocations:
    def __init__(
        self, state: FleetState, auth: Authenticator, hub: ConfigHub, clock: Clock
    ) -> None:
        self._state = state
        self._auth = auth
        self._hub = hub
        self._clock = clock
        self._looked_at = clock.now()

    async def apply(self, site: str, keep: str | None = None) -> int:
        """The agents of `site` (all but agent `keep`) were revoked: forget their cached
        credentials and end their open streams; return how many streams ended."""
        self._auth.forget_site(site)
        ended = await self._hub.cut_off(site, keep)
        if ended:
            log.info("ended %d open stream(s) of site %s: its agent was revoked", ended, site)
        return ended

    async def catch_up(self) -> None:
        """Apply every revocation the database holds since the last look (the poll)."""
        now = self._clock.now()
        found = await self._state.revocations_since(self._looked_at - CATCH_UP_OVERLAP)
        self._looked_at = now
        for site, active in found:
            await self.apply(site, keep=active)
