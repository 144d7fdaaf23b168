"""Remote commands (backup now, sync now): queued by admins, delivered by the push hub."""

from __future__ import annotations

import uuid

from common.clock import Clock
from common.errors import InvalidArgument
from server.domain.records import AdminIdentity, AuditRecord, CommandRecord
from server.services.push import ConfigHub
from server.state.base import FleetState
from server.state.config_base import ConfigState

COMMAND_KINDS = ("backup-now", "sync-now")


class Commands:
    def __init__(
        self, fleet: FleetState, config: ConfigState, hub: ConfigHub, clock: Clock
    ) -> None:
        self._fleet = fleet
        self._config = config
        self._hub = hub
        self._clock = clock

    async def send(self, admin: AdminIdentity, *, site: str, kind: str) -> CommandRecord:
        if kind not in COMMAND_KINDS:
            raise InvalidArgument(f"command {kind!r} is not one of {', '.join(COMMAND_KINDS)}")
        now = self._clock.now()
        cmd = await self._config.create_command(
            command_id=str(uuid.uuid4()), site=site, kind=kind, author=admin.name, now=now
        )
        await self._fleet.audit(AuditRecord(now, admin.name, f"command.{kind}", site, cmd.id))
        await self._hub.commands_changed(cmd.site_id)
        return cmd

    async def list(self, *, site: str, limit: int) -> list[CommandRecord]:
        limit = limit or 20
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return await self._config.list_commands(site=site, limit=limit)
