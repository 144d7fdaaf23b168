"""The text form of chunk and snapshot ids: 64 lowercase hex digits (keyed BLAKE3)."""

from __future__ import annotations

import re

from common.errors import quote
from common.vault.errors import BadChunkId

ID_HEX = 64
ID_PATTERN = re.compile(r"[0-9a-f]{64}")


def check_id(text: str, what: str = "chunk id") -> str:
    """`text` when it is an id, else a typed error naming it."""
    if not isinstance(text, str) or not ID_PATTERN.fullmatch(text):
        raise BadChunkId(f"{quote(text, 80)} is not a {what} (64 lowercase hex digits)", str(text))
    return text
