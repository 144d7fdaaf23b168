"""The HTTP listener on the gRPC server's event loop: routes, security headers, TLS.

Plaintext only where gRPC would allow it (`--insecure`, on loopback); otherwise
the server certificate from the data dir. Every answer carries a
Content-Security-Policy of `default-src 'self'` (the pages load nothing from
elsewhere and run no script) and a `Server-Timing: app;dur=MS` header with the
time the server spent on it (bench/status_page.py reads it).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from common.errors import InvalidArgument, StoreSafeError
from server.web.pages import Pages
from server.web.probes import Probes

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATIC = Path(__file__).parent / "static"
CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def application(pages: Pages, probes: Probes) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        began = time.perf_counter()
        try:
            response = await handler(request)
        except StoreSafeError as exc:
            response = pages.error_page(request, exc)
        except web.HTTPException as exc:
            response = exc
        except Exception:  # logged; the client gets a plain 500 without details
            log.exception("HTTP %s %s failed", request.method, request.path)
            response = web.Response(status=500, text="internal error\n")
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - began) * 1000:.1f}"
        return response

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app.add_routes(
        [
            web.get("/", pages.fleet_page),
            web.get("/sites/{name}", pages.site_page),
            web.get("/login", pages.login_form),
            web.post("/login", pages.login),
            web.post("/logout", pages.logout),
            web.get("/metrics", probes.metrics),
            web.get("/healthz", probes.healthz),
            web.static("/static", STATIC),
        ]
    )
    return app


class HttpEdge:
    """Serves `application` on host:port until `stop`."""

    def __init__(self, app: web.Application | None, tls: ssl.SSLContext | None) -> None:
        self._runner = (
            None if app is None else web.AppRunner(app, access_log=None, handle_signals=False)
        )
        self._tls = tls

    @classmethod
    def off(cls) -> HttpEdge:
        """An edge that never listens (no --http-listen)."""
        return cls(None, None)

    async def start(self, host: str, port: int) -> int:
        """Listen; return the bound port."""
        assert self._runner is not None, "this edge is off"
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._tls, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise InvalidArgument(
                f"cannot listen for HTTP on {host}:{port}: is the port in use?"
            ) from exc
        bound = port
        for address in self._runner.addresses:
            bound = int(address[1])
        log.info(
            "HTTP (%s) on %s:%d: /metrics, /healthz, the status page at /",
            "TLS" if self._tls else "plaintext",
            host,
            bound,
        )
        return bound

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
