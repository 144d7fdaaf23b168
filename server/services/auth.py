"""Authentication of agent credentials and admin tokens, with a short-lived cache."""

from __future__ import annotations

import time

from common.errors import Unauthenticated
from server.domain import AdminIdentity, AgentIdentity
from server.services import credentials
from server.state.base import FleetState


class Authenticator:
    """Checks bearer credentials against the state.

    Verified agent credentials are cached for `ttl` seconds so check-ins and
    acks cost no database read. A revocation (or a re-enrollment, which revokes
    the old credential) takes effect at once on the replica that made it, and
    on the others when the change feed brings its notice (PostgreSQL NOTIFY);
    `ttl` bounds how long a lost notice can leave a revoked credential working.
    """

    def __init__(self, state: FleetState, *, ttl: float = 300.0) -> None:
        self._state = state
        self._ttl = ttl
        self._agents: dict[str, tuple[str, AgentIdentity, float]] = {}

    async def agent(self, text: str) -> AgentIdentity:
        agent_id, presented = credentials.parse(text, credentials.AGENT, "agent credential")
        cached = self._agents.get(agent_id)
        if cached is not None and cached[2] > time.monotonic():
            if credentials.same(cached[0], presented):
                return cached[1]
            raise Unauthenticated("the agent credential is not valid")
        found = await self._state.agent_credential(agent_id)
        if found is None or not credentials.same(found[0], presented):
            self._agents.pop(agent_id, None)
            raise Unauthenticated("the agent credential is unknown or revoked; re-enroll the agent")
        identity = AgentIdentity(agent_id=agent_id, site_id=found[1], site=found[2], group=found[3])
        self._agents[agent_id] = (found[0], identity, time.monotonic() + self._ttl)
        return identity

    async def preload(self) -> int:
        """Cache every active agent's credential in one read (at start: a fleet that
        reconnects after a restart then costs no database read per agent)."""
        expires = time.monotonic() + self._ttl
        found = await self._state.agent_credentials()
        for agent_id, secret_hash, site_id, site, group in found:
            identity = AgentIdentity(agent_id=agent_id, site_id=site_id, site=site, group=group)
            self._agents[agent_id] = (secret_hash, identity, expires)
        return len(found)

    async def admin(self, text: str) -> AdminIdentity:
        token_id, presented = credentials.parse(text, credentials.ADMIN, "admin token")
        found = await self._state.admin_credential(token_id)
        if found is None or not credentials.same(found[0], presented):
            raise Unauthenticated("the admin token was refused")
        return found[1]

    def forget_site(self, site: str) -> None:
        """Drop cached credentials of a site (after a revocation or re-enrollment)."""
        for key in [k for k, v in self._agents.items() if v[1].site == site]:
            del self._agents[key]
