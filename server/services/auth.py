"""Authentication of agent credentials and admin tokens, with a short-lived cache."""

from __future__ import annotations

import time

from common.errors import Unauthenticated
from server.domain import credentials
from server.domain.records import AdminIdentity, AgentIdentity
from server.state.base import FleetState

REVOKED = "the agent credential is unknown or revoked; re-enroll the agent"
_READS = 5  # reads of one credential while revocations keep arriving; the last is not cached


class Authenticator:
    """Checks bearer credentials against the state.

    Verified agent credentials are cached for `ttl` seconds so check-ins and
    acks cost no database read. A revocation (or a re-enrollment, which revokes
    the old credential) takes effect at once on the replica that made it, and
    on the others when the change feed brings its notice (PostgreSQL NOTIFY,
    or the change feed's poll when a notice was lost); `ttl` bounds how long
    anything else can leave a revoked credential working.

    A read that was under way when a revocation arrived is not cached (it may
    predate the revocation's commit): it is read again.

    Admin tokens are not cached: each call reads the token, so a revoked admin
    token is refused at once on every replica.
    """

    def __init__(self, state: FleetState, *, ttl: float = 300.0) -> None:
        self._state = state
        self._ttl = ttl
        self._agents: dict[str, tuple[str, AgentIdentity, float]] = {}
        self._revocations = 0  # how many revocations this replica has heard of

    async def agent(self, text: str) -> AgentIdentity:
        agent_id, presented = credentials.parse(text, credentials.AGENT, "agent credential")
        cached = self._agents.get(agent_id)
        if cached is not None and cached[2] > time.monotonic():
            if credentials.same(cached[0], presented):
                return cached[1]
            raise Unauthenticated("the agent credential is not valid")
        for _ in range(_READS):
            heard = self._revocations
            found = await self._state.agent_credential(agent_id)
            settled = heard == self._revocations  # no revocation arrived while reading
            if settled:
                break
        if found is None or not credentials.same(found[0], presented):
            self._agents.pop(agent_id, None)
            raise Unauthenticated(REVOKED)
        identity = AgentIdentity(agent_id=agent_id, site_id=found[1], site=found[2], group=found[3])
        if settled:
            self._agents[agent_id] = (found[0], identity, time.monotonic() + self._ttl)
        return identity

    async def preload(self) -> int:
        """Cache every active agent's credential in one read (at start: a fleet that
        reconnects after a restart then costs no database read per agent)."""
        expires = time.monotonic() + self._ttl
        heard = self._revocations
        found = await self._state.agent_credentials()
        if heard != self._revocations:
            return 0  # a revocation arrived meanwhile: read each agent when it calls
        for agent_id, secret_hash, site_id, site, group in found:
            identity = AgentIdentity(agent_id=agent_id, site_id=site_id, site=site, group=group)
            self._agents[agent_id] = (secret_hash, identity, expires)
        return len(found)

    async def admin(self, text: str) -> AdminIdentity:
        token_id, presented = credentials.parse(text, credentials.ADMIN, "admin token")
        found = await self._state.admin_credential(token_id)
        if found is None or not credentials.same(found[0], presented):
            raise Unauthenticated("the admin token is unknown or revoked")
        return found[1]

    def forget_site(self, site: str) -> None:
        """Drop cached credentials of a site (after a revocation or re-enrollment)."""
        self._revocations += 1
        for key in [k for k, v in self._agents.items() if v[1].site == site]:
            del self._agents[key]
