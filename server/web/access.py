"""How a browser or script shows its token to the status page: a Bearer header or a login cookie.

Admin tokens are checked by the same Authenticator as the admin gRPC API, read-only
tokens by server/services/readers.py (hashed, compared in constant time). An agent's
credential is refused with 403. The
login form puts the token in an HttpOnly, SameSite=Strict cookie (Secure when
the page is served over TLS); the page itself only reads.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from common.errors import Unauthenticated
from server.domain import AdminIdentity
from server.services.readers import PageReaders

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


async def check_token(readers: PageReaders, token: str) -> AdminIdentity:
    """Who a token belongs to; Unauthenticated or PermissionDenied otherwise."""
    if len(token) > MAX_TOKEN:
        raise Unauthenticated("that is not a valid admin or read-only token")
    return await readers.identity(token)


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
