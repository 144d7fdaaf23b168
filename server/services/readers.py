"""Read-only tokens: they open the status page and nothing else.

A read-only token is `ssro_<id>_<secret>`, stored in the admin token table (so the
same revocation applies) with a domain-separated hash: SHA-256 of
`read-only\\0<secret>`, where an admin token's is SHA-256 of `<secret>`. An admin
call checks the `ssadm` prefix and the plain hash, so neither the token as given nor
the token rewritten as `ssadm_<id>_<secret>` passes it; the status page accepts
both kinds. (A column for the kind can replace the hash domain when the schema next
changes.)
"""

from __future__ import annotations

import hashlib
import secrets

from common.errors import PermissionDenied, Unauthenticated
from server.domain import AdminIdentity
from server.services import credentials
from server.services.auth import Authenticator
from server.state.base import FleetState

READ_ONLY = "ssro"
_DOMAIN = b"read-only\0"


def mint() -> credentials.Minted:
    ident = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return credentials.Minted(ident, f"{READ_ONLY}_{ident}_{secret}", _hash(secret))


def _hash(secret: str) -> str:
    return hashlib.sha256(_DOMAIN + secret.encode()).hexdigest()


class PageReaders:
    """Who may read the status page: an admin token or a read-only token."""

    def __init__(self, auth: Authenticator, state: FleetState) -> None:
        self._auth = auth
        self._state = state

    async def identity(self, text: str) -> AdminIdentity:
        text = text.strip()
        if not text:
            raise Unauthenticated("sign in with an admin or read-only token to see the fleet")
        if text.startswith(credentials.AGENT + "_"):
            raise PermissionDenied(
                "an agent credential cannot open the status page; use an admin or read-only token"
            )
        if not text.startswith(READ_ONLY + "_"):
            return await self._auth.admin(text)
        parts = text.split("_", 2)
        if len(parts) != 3 or not parts[1] or not parts[2] or len(parts[1]) > 32:
            raise Unauthenticated("that is not a valid read-only token")
        if len(parts[2]) > 128:
            raise Unauthenticated("that is not a valid read-only token")
        found = await self._state.admin_credential(parts[1])
        if found is None or not credentials.same(found[0], _hash(parts[2])):
            raise Unauthenticated("the read-only token was refused")
        return found[1]
