"""A small fleet with one site per status that a check-in and reports can produce."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt

from tests.support.simagent import close_all, enroll_many
from tests.support.web import WebServer, backup_report, check_in, report

SCRIPT = "<script>alert('x')</script>"
SITES = {  # name: (group, status)
    "shop-ok-1": ("north", "ok"),
    "shop-ok-2": ("south", "ok"),
    "shop-failing": ("north", "failing"),
    "shop-stale": ("south", "stale"),
    "shop-never": ("north", "never"),
}


def build_fleet(web: WebServer) -> dict[str, str]:
    """Enroll and drive SITES; returns each site's agent credential. The failing site's
    error and the ok-1 site's hostname carry a <script> tag."""
    h = web.handle
    now = dt.datetime.now(dt.UTC)

    async def run() -> dict[str, str]:
        creds = {}
        for group in ("north", "south"):
            names = [n for n, (g, _) in SITES.items() if g == group]
            agents = await enroll_many(
                h.address, h.ca_path.read_bytes(), h.admin_token, names, group=group
            )
            for agent in agents:
                creds[agent.site] = agent.credential
                await check_in(agent, hostname=SCRIPT if agent.site == "shop-ok-1" else "pos-1")
                status = SITES[agent.site][1]
                if status in ("ok", "failing"):
                    for day in range(5, 0, -1):  # five good nightly backups, growing
                        when = now - dt.timedelta(days=day - 1, hours=1)
                        size = 40_000_000 + day * -3_000_000 + 20_000_000
                        await report(agent, backup_report(when, seconds=300 + day * 20, size=size))
                if status == "failing":
                    await report(agent, backup_report(now, good=False, error=f"gbak: {SCRIPT}"))
                if status == "stale":
                    await report(agent, backup_report(now - dt.timedelta(days=3)))
            await close_all([a.channel for a in agents])
        return creds

    # In a thread of its own: Playwright's sync API keeps an event loop in the test's thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(run())).result()
