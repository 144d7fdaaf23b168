"""Secrets for enrollment, agents and admins: minting, hashing, parsing, comparing.

A credential is `<prefix>_<id>_<secret>`: the id finds the row, the secret is
stored only as a SHA-256 hash (it is 256 random bits, so a slow hash adds
nothing) and compared in constant time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets

from common.errors import Unauthenticated

ENROLLMENT = "sset"
AGENT = "ssa"
ADMIN = "ssadm"


@dataclasses.dataclass(frozen=True)
class Minted:
    """A fresh credential: `text` goes to its owner once, `secret_hash` is stored."""

    id: str
    text: str
    secret_hash: str


def mint(prefix: str) -> Minted:
    ident = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return Minted(ident, f"{prefix}_{ident}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(text: str, prefix: str, what: str) -> tuple[str, str]:
    """Split a credential into (id, secret hash) or raise Unauthenticated."""
    parts = text.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or not parts[2]:
        raise Unauthenticated(f"that is not a valid {what}")
    if len(parts[1]) > 32 or len(parts[2]) > 128:
        raise Unauthenticated(f"that is not a valid {what}")
    return parts[1], hash_secret(parts[2])


def same(stored_hash: str, presented_hash: str) -> bool:
    return hmac.compare_digest(stored_hash.encode(), presented_hash.encode())
