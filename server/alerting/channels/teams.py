"""Microsoft Teams through a Workflows webhook: one Adaptive Card, version 1.4.

The Office 365 connectors are retired; Workflows take a `message` whose one
attachment is the card (1.5 and later were refused when tried).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from common.clock import iso
from server.alerting.channels.base import Target
from server.alerting.channels.http import TIMEOUT_SECONDS, post_json
from server.alerting.message import Notice, lines, title

CARD_VERSION = "1.4"


def card(n: Notice) -> dict[str, Any]:
    facts = []
    if n.site:
        facts += [
            {"title": "Site", "value": n.site},
            {"title": "Group", "value": n.group},
            {"title": "Status", "value": n.status_to},
            {"title": "Was", "value": n.status_from},
        ]
    facts.append({"title": "At", "value": iso(n.at) or ""})
    return {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": [
            {
                "type": "TextBlock",
                "text": title(n),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {"type": "FactSet", "facts": facts},
            *({"type": "TextBlock", "text": f"- {line}", "wrap": True} for line in lines(n)),
        ],
    }


def payload(n: Notice) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": card(n),
            }
        ],
    }


class TeamsChannel:
    name = "teams"

    def __init__(self, session: aiohttp.ClientSession, timeout: float = TIMEOUT_SECONDS) -> None:
        self._session = session
        self._timeout = timeout

    async def send(self, target: Target, notice: Notice) -> None:
        await post_json(self._session, str(target["url"]), payload(notice), seconds=self._timeout)
