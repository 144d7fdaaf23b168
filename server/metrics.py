"""The server's Prometheus metrics: one registry per server, and the hooks that feed it.

Each running server owns one `ServerMetrics` with its own CollectorRegistry (not
prometheus_client's global one), so several servers in one process (tests) never
share or clash. Services count what happens through its small methods and never
import the HTTP edge; `/metrics` (server/web) renders the registry after
`observe_fleet` has set the gauges that are computed at scrape time.

Alert delivery (server/alerting) reports through `alert_delivered` and
`alert_failed`, with the channel name (webhook, slack, teams, email).

Not here yet: store bytes (there is no blob store); add a gauge when there is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
ALERT_CHANNELS = ("webhook", "slack", "teams", "email")
# Report ingest runs from milliseconds (one report, idle writer) to seconds (a backlog).
INGEST_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclasses.dataclass(frozen=True)
class FleetFigures:
    """What the fleet looks like at one scrape."""

    sites_by_status: Mapping[str, int]
    agent_streams: int
    rollout_lag_sites: int
    desired_revision: int


class ServerMetrics:
    """The metrics of one server process."""

    def __init__(self, statuses: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._statuses = tuple(statuses)
        self.checkins = Counter("storesafe_checkins", "Agent check-ins answered.", registry=r)
        self.reports = Counter(
            "storesafe_reports",
            "Run reports received, by result (stored, replay, refused).",
            ["result"],
            registry=r,
        )
        self.ingest_seconds = Histogram(
            "storesafe_report_ingest_seconds",
            "Time from receiving a run report to its durable store.",
            buckets=INGEST_BUCKETS,
            registry=r,
        )
        self.sites = Gauge("storesafe_sites", "Sites by computed status.", ["status"], registry=r)
        self.agent_streams = Gauge(
            "storesafe_agent_streams", "Open agent streams (config and command push).", registry=r
        )
        self.rollout_lag = Gauge(
            "storesafe_config_rollout_lag_sites",
            "Sites whose applied configuration revision is behind their desired one.",
            registry=r,
        )
        self.desired_revision = Gauge(
            "storesafe_config_revision", "The newest configuration revision.", registry=r
        )
        self.alert_deliveries = Counter(
            "storesafe_alert_deliveries",
            "Alert notifications delivered, by channel.",
            ["channel"],
            registry=r,
        )
        self.alert_failures = Counter(
            "storesafe_alert_failures",
            "Alert delivery attempts that failed, by channel.",
            ["channel"],
            registry=r,
        )
        for result in ("stored", "replay", "refused"):
            self.reports.labels(result)
        for channel in ALERT_CHANNELS:
            self.alert_deliveries.labels(channel)
            self.alert_failures.labels(channel)
        for status in self._statuses:
            self.sites.labels(status).set(0)

    # -- hooks for services -----------------------------------------------------

    def checked_in(self) -> None:
        self.checkins.inc()

    def report_received(self, result: str, seconds: float) -> None:
        self.reports.labels(result).inc()
        if result != "refused":
            self.ingest_seconds.observe(seconds)

    def alert_delivered(self, channel: str) -> None:
        self.alert_deliveries.labels(channel).inc()

    def alert_failed(self, channel: str) -> None:
        self.alert_failures.labels(channel).inc()

    def alert_outcome(self, channel: str, delivered: bool) -> None:
        """One delivery attempt's outcome (the alert deliverer's hook)."""
        if delivered:
            self.alert_delivered(channel)
        else:
            self.alert_failed(channel)

    # -- scrape -----------------------------------------------------------------

    def observe_fleet(self, figures: FleetFigures) -> None:
        for status in {*self._statuses, *figures.sites_by_status}:
            self.sites.labels(status).set(figures.sites_by_status.get(status, 0))
        self.agent_streams.set(figures.agent_streams)
        self.rollout_lag.set(figures.rollout_lag_sites)
        self.desired_revision.set(figures.desired_revision)

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
