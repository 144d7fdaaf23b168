"""Slack incoming webhooks: `text` (the notification fallback) plus Block Kit `blocks`."""

from __future__ import annotations

from typing import Any

import aiohttp

from common.clock import iso
from server.alerting.channels.base import Target
from server.alerting.channels.http import TIMEOUT_SECONDS, post_json
from server.alerting.message import Notice, lines, title

HEADER_MAX = 150  # Block Kit limits
SECTION_MAX = 3000


def _escape(text: str) -> str:
    """Slack mrkdwn control characters, as Slack documents them."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def payload(n: Notice) -> dict[str, Any]:
    head = title(n)
    body = "\n".join(f"• {_escape(line)}" for line in lines(n))
    if len(body) > SECTION_MAX:
        body = body[: SECTION_MAX - 1] + "…"
    context = f"group {n.group} · {iso(n.at)}" if n.site else f"{iso(n.at)}"
    return {
        "text": head,
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": head[:HEADER_MAX]},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(context)}]},
        ],
    }


class SlackChannel:
    name = "slack"

    def __init__(self, session: aiohttp.ClientSession, timeout: float = TIMEOUT_SECONDS) -> None:
        self._session = session
        self._timeout = timeout

    async def send(self, target: Target, notice: Notice) -> None:
        await post_json(self._session, str(target["url"]), payload(notice), seconds=self._timeout)
