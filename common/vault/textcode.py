"""Checksummed base64url text for key material: `<prefix>1:<base64url(body + check)>`.

A value typed or pasted with one character changed or lost is refused rather
than read as another, valid-looking key (a fleet public key with a typo
would seal every site's data to a key nobody holds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

CHECK_BYTES = 4


def _check(prefix: str, body: bytes) -> bytes:
    return hashlib.sha256(prefix.encode("ascii") + b":" + body).digest()[:CHECK_BYTES]


def encode(prefix: str, body: bytes) -> str:
    """`prefix:` then base64url (no padding) of `body` and a 4-byte checksum over both."""
    raw = body + _check(prefix, body)
    return prefix + ":" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(prefix: str, text: str, what: str) -> bytes | None:
    """The body of `text` written by `encode(prefix, ...)`; None when the prefix differs.

    Raises ValueError with a sentence naming `what` for a wrong checksum or bad characters.
    """
    text = text.strip()
    head, sep, tail = text.partition(":")
    if not sep or head != prefix:
        return None
    if not tail or any(c not in _ALPHABET for c in tail):
        raise ValueError(f"the {what} has characters that base64url never uses")
    try:
        raw = base64.urlsafe_b64decode(tail + "=" * (-len(tail) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"the {what} is cut short or has extra characters") from None
    body, check = raw[:-CHECK_BYTES], raw[-CHECK_BYTES:]
    if len(raw) <= CHECK_BYTES or not hmac.compare_digest(check, _check(prefix, body)):
        raise ValueError(f"the {what} fails its checksum: a character was changed, lost or added")
    return body


_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
