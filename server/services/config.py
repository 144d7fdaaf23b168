"""Layered configuration: fleet, group and site layers over the key defaults.

The merge is pure (server/domain/layers.py); persistence lives in the config state
and the push to agents in server/services/push.py.
"""

from __future__ import annotations

import dataclasses
import json

from common import config_schema
from common.clock import Clock
from common.errors import InvalidArgument
from common.names import check_name
from server.domain.layers import FLEET, GROUP, SCOPES, SITE, Effective
from server.domain.records import AdminIdentity, AuditRecord, RevisionRecord
from server.services.push import ConfigHub
from server.services.secretbox import SecretBox
from server.state.base import FleetState
from server.state.config_base import ConfigState


@dataclasses.dataclass(frozen=True)
class LayerChange:
    """What `config set` did: the new revision (0: nothing changed), the keys changed,
    and how many sites the layer reaches now (0 for a group no site is in)."""

    revision: int
    changed: list[str]
    sites: int


@dataclasses.dataclass(frozen=True)
class SiteConfig:
    site: str
    desired_revision: int
    applied_revision: int
    entries: dict[str, Effective]
    refused: str


class ConfigService:
    """Validates and stores changes; every change is one audited revision."""

    def __init__(
        self,
        fleet: FleetState,
        config: ConfigState,
        box: SecretBox,
        clock: Clock,
        hub: ConfigHub,
    ) -> None:
        self._fleet = fleet
        self._config = config
        self._box = box
        self._clock = clock
        self._hub = hub

    async def set(
        self,
        admin: AdminIdentity,
        *,
        scope: str,
        target: str,
        values: dict[str, str],
        unset: list[str],
    ) -> LayerChange:
        target = await self._check_layer(scope, target)
        if not values and not unset:
            raise InvalidArgument("give at least one KEY=VALUE or --unset KEY")
        for name in values:
            config_schema.settable(name)
        parsed = config_schema.validate(values)
        for name in unset:
            config_schema.key(name)
        stored, shown = {}, {}
        for name, value in parsed.items():
            secret = config_schema.KEYS[name].secret
            stored[name] = (
                json.dumps({"sealed": self._box.seal(str(value))}) if secret else json.dumps(value)
            )
            shown[name] = config_schema.text(config_schema.masked(name, value))
        now = self._clock.now()
        revision, changed = await self._config.set_layer(
            scope=scope,
            target=target,
            values=stored,
            unset=unset,
            author=admin.name,
            now=now,
            shown=shown,
        )
        if revision:
            detail = ", ".join(f"{k}={shown.get(k, '(unset)')}" for k in changed)
            await self._fleet.audit(
                AuditRecord(
                    now,
                    admin.name,
                    "config.set",
                    f"{scope}:{target}" if target else scope,
                    f"revision={revision} {detail}",
                )
            )
            await self._hub.refresh()
        return LayerChange(revision, changed, await self._sites_in(scope, target))

    async def _sites_in(self, scope: str, target: str) -> int:
        if scope == SITE:
            return 1
        return len(await self._fleet.list_sites(group=target if scope == GROUP else ""))

    async def show(self, site: str) -> SiteConfig:
        row = await self._fleet.get_site(site)
        snap = self._hub.snapshot
        entries = {
            k: Effective(config_schema.masked(k, e.value), e.layer)
            for k, e in snap.effective(row.name, row.group).items()
        }
        return SiteConfig(
            site=row.name,
            desired_revision=snap.desired_revision(row.name, row.group),
            applied_revision=row.config_revision_applied,
            entries=entries,
            refused=row.config_refused,
        )

    async def history(self, *, limit: int) -> list[RevisionRecord]:
        limit = limit or 50
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return await self._config.history(limit=limit)

    async def _check_layer(self, scope: str, target: str) -> str:
        if scope not in SCOPES:
            raise InvalidArgument("choose one layer: --fleet, --group G or --site S")
        if scope == FLEET:
            if target:
                raise InvalidArgument(
                    f"a fleet-wide change takes no target (got {target[:64]!r}); "
                    "name a group or a site as the scope instead"
                )
            return ""
        check_name(target, scope)
        if scope == SITE:
            await self._fleet.get_site(target)  # NotFound for a typo
        return target
