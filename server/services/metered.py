"""Agent traffic that counts itself: check-ins, reports and report ingest latency."""

from __future__ import annotations

import time

from common.clock import Clock
from common.errors import StoreSafeError
from server.deferred import Deferred
from server.domain import ingest
from server.domain.records import AgentIdentity
from server.metrics import ServerMetrics
from server.services.agents import AgentTraffic, CheckInReply
from server.services.push import ConfigHub
from server.state.base import FleetState
from server.state.config_base import ConfigState


class MeteredTraffic(AgentTraffic):
    """AgentTraffic whose answered check-ins and reports feed `ServerMetrics`.

    Ingest latency is measured from the call to the report's durable store (the
    writer's commit), on the monotonic clock: it is a duration, not a moment.
    """

    def __init__(
        self,
        state: FleetState,
        config: ConfigState,
        hub: ConfigHub,
        clock: Clock,
        metrics: ServerMetrics,
        *,
        checkin_interval: int = 60,
    ) -> None:
        super().__init__(state, config, hub, clock, checkin_interval=checkin_interval)
        self._metrics = metrics

    async def check_in(
        self,
        who: AgentIdentity,
        facts: ingest.CheckInInput | Deferred[ingest.CheckInInput],
        *,
        claimed_site: str = "",
    ) -> CheckInReply:
        reply = await super().check_in(who, facts, claimed_site=claimed_site)
        self._metrics.checked_in()
        return reply

    async def report(
        self,
        who: AgentIdentity,
        run: ingest.RunInput | Deferred[ingest.RunInput],
        *,
        claimed_site: str = "",
    ) -> bool:
        began = time.perf_counter()
        try:
            replay = await super().report(who, run, claimed_site=claimed_site)
        except StoreSafeError:
            self._metrics.report_received("refused", 0.0)
            raise
        self._metrics.report_received("replay" if replay else "stored", time.perf_counter() - began)
        return replay
