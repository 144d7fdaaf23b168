"""How a browser or script shows its token to the status page: a Bearer header or a login cookie.

Admin tokens are checked by the same Authenticator as the admin gRPC API (hashed,
compared in constant time; a revoked token is refused at once). An agent's credential
is refused with 403. There is no read-only token kind yet. The login form puts the
token in an HttpOnly, SameSite=Strict cookie (Secure when the page is served over
TLS); the page itself only reads.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.errors import PermissionDenied, Unauthenticated
from server.domain import credentials
from server.domain.records import AdminIdentity
from server.services.auth import Authenticator

COOKIE = "storesafe_session"
MAX_TOKEN = 256


def presented_token(request: web.Request) -> str:
    """The token of a request: its Bearer header, else its login cookie, else ''."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <admin token>'")
        return value.strip()
    return request.cookies.get(COOKIE, "")


async def check_token(auth: Authenticator, token: str) -> AdminIdentity:
    """The admin a token belongs to; Unauthenticated or PermissionDenied otherwise."""
    token = token.strip()
    if not token:
        raise Unauthenticated("sign in with an admin token to see the fleet")
    if len(token) > MAX_TOKEN:
        raise Unauthenticated("that is not a valid admin token")
    if token.startswith(credentials.AGENT + "_"):
        raise PermissionDenied(
            "an agent credential cannot open the status page; use an admin token"
        )
    return await auth.admin(token)


def set_login_cookie(response: web.StreamResponse, token: str, *, secure: bool) -> None:
    response.set_cookie(COOKIE, token, httponly=True, secure=secure, samesite="Strict", path="/")


def clear_login_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")


def safe_next(target: Any) -> str:
    """Where to go after signing in: a path on this site only."""
    text = str(target or "/")
    if not text.startswith("/") or text.startswith("//") or "\\" in text:
        return "/"
    return text[:2000]
