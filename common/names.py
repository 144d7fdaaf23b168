"""The rule for site and group names, shared by the server and the CLI."""

from __future__ import annotations

import re

from common.errors import InvalidArgument, quote

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(text: str, what: str = "site") -> str:
    """Return `text` trimmed when it is a valid site or group name (1-64 letters, digits,
    '.', '_', '-'), else raise InvalidArgument naming `what`."""
    cleaned = text.strip()
    if not NAME.fullmatch(cleaned):
        raise InvalidArgument(
            f"{quote(text)} is not a valid {what} name: use 1-64 letters, digits, '.', '_' or '-'"
        )
    return cleaned
