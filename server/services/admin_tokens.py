"""Admin tokens: created under a unique name, listed, revoked by name; every change audited.

A token's text is returned once, by `create`; only its hash is stored, and
nothing here returns, logs or audits the text or the hash.
"""

from __future__ import annotations

import getpass
import re

from common.clock import Clock
from common.errors import InvalidArgument
from server.domain import credentials
from server.domain.records import AdminTokenRecord, AuditRecord
from server.state.base import FleetState

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_token_name(text: str) -> str:
    cleaned = text.strip()
    if not NAME.fullmatch(cleaned):
        raise InvalidArgument(
            f"'{text}' is not a valid admin token name: use 1-64 letters, digits, "
            "'.', '_', '@' or '-' (e.g. the technician's name)"
        )
    return cleaned


def local_actor() -> str:
    """Who runs an offline `storesafe-server admin-token` command, for the audit log."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        user = "unknown"
    return f"local:{user}"[:64]


class AdminTokens:
    def __init__(self, state: FleetState, clock: Clock) -> None:
        self._state = state
        self._clock = clock

    async def create(self, *, actor: str, name: str) -> str:
        """Make a token named `name` (unique among active tokens); return its text, once."""
        name = check_token_name(name)
        minted = credentials.mint(credentials.ADMIN)
        now = self._clock.now()
        await self._state.create_admin_token(
            token_id=minted.id,
            name=name,
            secret_hash=minted.secret_hash,
            created_by=actor,
            now=now,
        )
        await self._state.audit(
            AuditRecord(now, actor, "admin-token.create", name, f"id={minted.id}")
        )
        return minted.text

    async def list(self) -> list[AdminTokenRecord]:
        return await self._state.list_admin_tokens()

    async def revoke(self, *, actor: str, name: str) -> AdminTokenRecord:
        """Revoke the active token named `name`, refused when it is the last one."""
        name = check_token_name(name)
        now = self._clock.now()
        revoked = await self._state.revoke_admin_token(name=name, revoked_by=actor, now=now)
        await self._state.audit(
            AuditRecord(now, actor, "admin-token.revoke", name, f"id={revoked.id}")
        )
        return revoked
