"""The fleet status page and a site's page, rendered on the server from Jinja templates."""

from __future__ import annotations

import urllib.parse
from typing import Any

import jinja2
from aiohttp import web

from common.errors import StoreSafeError
from server.services.auth import Authenticator
from server.services.fleet import FleetQueries
from server.services.push import ConfigHub
from server.web import access, present
from server.web.chart import line_chart
from server.web.errors import exc_status
from server.web.listing import SEVERITY, parse_query, select

RECENT_RUNS = 50
CHART_RUNS = 90


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("server.web", "templates"),
        autoescape=True,  # every page: a site name or problem text is data, never markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=present.when, iso=present.iso, size=present.size, duration=present.duration
    )
    return env


class Pages:
    def __init__(
        self, fleet: FleetQueries, hub: ConfigHub, auth: Authenticator, *, tls: bool
    ) -> None:
        self._fleet = fleet
        self._hub = hub
        self._auth = auth
        self._tls = tls
        self._env = templates()

    def render(self, name: str, status: int = 200, **values: Any) -> web.Response:
        now = self._fleet.now()
        html = self._env.get_template(name).render(
            now=now, age=lambda v: present.age(v, now), **values
        )
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")

    async def fleet_page(self, request: web.Request) -> web.Response:
        await self._signed_in(request)
        query = parse_query(request.query)
        listing = select(await self._fleet.list_sites(), query)

        def url(**changes: Any) -> str:
            params = listing.query.params(**changes)
            return "/" + ("?" + urllib.parse.urlencode(params) if params else "")

        def sort_url(column: str) -> str:
            desc = not listing.query.desc if listing.query.sort == column else False
            return url(sort=column, desc=desc, page=1)

        return self.render(
            "fleet.html",
            listing=listing,
            statuses=[s.value for s in SEVERITY],
            url=url,
            sort_url=sort_url,
            revision=self._hub.snapshot.revision,
        )

    async def site_page(self, request: web.Request) -> web.Response:
        await self._signed_in(request)
        name = request.match_info["name"]
        detail = await self._fleet.site(name)
        runs = await self._fleet.runs(site=name, kind="", limit=RECENT_RUNS)
        backups = await self._fleet.runs(site=name, kind="backup", limit=CHART_RUNS)
        sizes, durations = [], []
        for run in backups:
            if run.outcome != "succeeded":
                continue
            size = run.details.get("backup", {}).get("size_compressed")
            if size:
                sizes.append((run.finished_at, float(size)))
            durations.append((run.finished_at, (run.finished_at - run.started_at).total_seconds()))
        return self.render(
            "site.html",
            detail=detail,
            view=detail.view,
            runs=runs,
            size_chart=line_chart("Backup size", sizes, present.size),
            duration_chart=line_chart("Backup duration", durations, present.duration),
        )

    async def login_form(self, request: web.Request) -> web.Response:
        return self.render("login.html", error="", next=access.safe_next(request.query.get("next")))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        target = access.safe_next(form.get("next"))
        token = str(form.get("token", "")).strip()
        try:
            await access.check_token(self._auth, token)
        except StoreSafeError as exc:
            return self.render("login.html", status=exc_status(exc), error=exc.message, next=target)
        response = web.HTTPSeeOther(target)
        access.set_login_cookie(response, token, secure=self._tls)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/login")
        access.clear_login_cookie(response)
        return response

    async def _signed_in(self, request: web.Request) -> None:
        await access.check_token(self._auth, access.presented_token(request))

    def error_page(self, request: web.Request, exc: StoreSafeError) -> web.Response:
        status = exc_status(exc)
        if status == 401 and "Authorization" not in request.headers:
            target = access.safe_next(request.path_qs)
            return self.render("login.html", status=401, error=exc.message, next=target)
        return self.render("error.html", status=status, message=exc.message)
