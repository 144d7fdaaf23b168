"""The generic JSON webhook: the Notice as a flat, documented JSON object."""

from __future__ import annotations

from typing import Any

import aiohttp

from common.clock import iso
from server.alerting.channels.base import Target
from server.alerting.channels.http import TIMEOUT_SECONDS, post_json
from server.alerting.message import Notice, title


def payload(n: Notice) -> dict[str, Any]:
    """{"event", "text", "site", "group", "status", "previous", "since", "at", "problems",
    "sites"}; `sites` lists every site of a digest (empty otherwise)."""
    return {
        "event": str(n.kind),
        "text": title(n),
        "site": n.site,
        "group": n.group,
        "status": n.status_to,
        "previous": n.status_from,
        "since": iso(n.since),
        "at": iso(n.at),
        "problems": list(n.problems),
        "sites": [
            {"site": d.site, "group": d.group, "status": d.status, "problem": d.problem}
            for d in n.digest
        ],
    }


class WebhookChannel:
    name = "webhook"

    def __init__(self, session: aiohttp.ClientSession, timeout: float = TIMEOUT_SECONDS) -> None:
        self._session = session
        self._timeout = timeout

    async def send(self, target: Target, notice: Notice) -> None:
        await post_json(self._session, str(target["url"]), payload(notice), seconds=self._timeout)
