"""`/metrics` (Prometheus text format) and `/healthz` (JSON; 200 or 503)."""

from __future__ import annotations

from aiohttp import web

from server.metrics import CONTENT_TYPE, ServerMetrics
from server.services.fleet import FleetQueries
from server.services.health import HealthCheck
from server.services.overview import fleet_figures
from server.services.push import ConfigHub


class Probes:
    def __init__(
        self, metrics: ServerMetrics, fleet: FleetQueries, hub: ConfigHub, health: HealthCheck
    ) -> None:
        self._metrics = metrics
        self._fleet = fleet
        self._hub = hub
        self._health = health

    async def metrics(self, request: web.Request) -> web.Response:
        self._metrics.observe_fleet(await fleet_figures(self._fleet, self._hub))
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def healthz(self, request: web.Request) -> web.Response:
        report = await self._health.run()
        body = {"status": "ok" if report.healthy else "unavailable", "checks": report.checks}
        return web.json_response(body, status=200 if report.healthy else 503)
