"""Where a site's alerts go and on what timing: read from its effective configuration.

Destinations are ordinary config keys (alerts.*), so they are set per fleet, group
or site like every other key, and a site gets those of its nearest layer.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from common.config_schema import Value
from server.alerting.channels.base import host_of
from server.alerting.policy import Rules
from server.domain.layers import ConfigSnapshot


@dataclasses.dataclass(frozen=True)
class Destination:
    """One channel and its target; `shown` is what lists may print (never a secret)."""

    channel: str
    target_json: str  # sorted JSON of the target settings (sealed before it is stored)
    shown: str

    @property
    def target(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.target_json)
        return loaded


def _dest(channel: str, target: dict[str, Any], shown: str) -> Destination:
    return Destination(channel, json.dumps(target, sort_keys=True), shown)


class SiteSettings:
    """Destinations and rules per site, built once per configuration snapshot and layer."""

    def __init__(self, snapshot: ConfigSnapshot) -> None:
        self._snap = snapshot
        self._cache: dict[tuple[str, str], tuple[tuple[Destination, ...], Rules]] = {}

    def _get(self, site: str, group: str, key: str) -> Value:
        return self._snap.value(site, group, key)

    def of(self, site: str, group: str) -> tuple[tuple[Destination, ...], Rules]:
        own = site if ("site", site) in self._snap.layers else ""
        found = self._cache.get((group, own))
        if found is None:
            found = self._cache[(group, own)] = (
                self._destinations(site, group),
                Rules.of(
                    float(self._get(site, group, "alerts.reminder_hours")),
                    float(self._get(site, group, "alerts.offline_grace_minutes")),
                ),
            )
        return found

    def digest_time(self) -> str:
        """The fleet layer's digest time (one digest a day for the whole fleet)."""
        return str(self._snap.value("", "", "alerts.digest_time"))

    def _destinations(self, site: str, group: str) -> tuple[Destination, ...]:
        out = []
        for channel in ("webhook", "slack", "teams"):
            url = str(self._get(site, group, f"alerts.{channel}_url"))
            if url:
                out.append(_dest(channel, {"url": url}, host_of(url)))
        to = str(self._get(site, group, "alerts.email_to"))
        host = str(self._get(site, group, "alerts.smtp_host"))
        if to and host:
            target = {
                "to": to,
                "host": host,
                "port": int(self._get(site, group, "alerts.smtp_port")),
                "security": str(self._get(site, group, "alerts.smtp_security")),
                "user": str(self._get(site, group, "alerts.smtp_user")),
                "password": str(self._get(site, group, "alerts.smtp_password")),
                "from": str(self._get(site, group, "alerts.smtp_from")),
            }
            out.append(_dest("email", target, f"{to} via {host}"))
        return tuple(out)
