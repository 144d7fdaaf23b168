"""Build the HTTP edge from the server's services (called by server.app)."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

from aiohttp import web

from server import tls
from server.metrics import ServerMetrics
from server.services.auth import Authenticator
from server.services.fleet import FleetQueries
from server.services.health import HealthCheck, Probe
from server.services.push import ConfigHub
from server.web.edge import HttpEdge, application, tls_context
from server.web.pages import Pages
from server.web.probes import Probes


class ClosingProbe(Protocol):
    """A probe that holds a resource to release at stop (the gRPC self-probe's channel)."""

    def __call__(self) -> Awaitable[None]: ...

    async def close(self) -> None: ...


def http_edge(
    *,
    data_dir: Path,
    insecure: bool,
    grpc_probe: ClosingProbe,
    database_probe: Probe,
    store_probe: Probe,
    fleet: FleetQueries,
    hub: ConfigHub,
    auth: Authenticator,
    metrics: ServerMetrics,
) -> HttpEdge:
    """The edge over TLS from the data dir's server certificate, or plaintext when the
    server runs `--insecure` (which app.py allows on loopback only)."""
    context = None
    if not insecure:
        context = tls_context(data_dir / tls.SERVER_CERT, data_dir / tls.SERVER_KEY)
    health = HealthCheck({"grpc": grpc_probe, "database": database_probe, "store": store_probe})
    app = application(
        Pages(fleet, hub, auth, tls=context is not None),
        Probes(metrics, fleet, hub, health),
    )

    async def close_probe(_: web.Application) -> None:
        await grpc_probe.close()

    app.on_cleanup.append(close_probe)
    return HttpEdge(app, context)
