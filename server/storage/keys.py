"""Blob names: path-like keys over a fixed alphabet, checked before any backend sees them."""

from __future__ import annotations

import re

from common.errors import InvalidArgument, quote

MAX_KEY_LENGTH = 512
MAX_SEGMENT_LENGTH = 128
# A segment starts with a letter or digit, so `.` and `..` (and the filesystem backend's
# dot-named temporary files) can never be a key or part of one.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_key(key: str) -> str:
    """`key` itself if it is a valid blob name like sites/S/chunks/ID, else InvalidArgument."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument("a blob name must be a non-empty string")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"blob name {quote(key)} is longer than {MAX_KEY_LENGTH} characters")
    for segment in key.split("/"):
        _check_segment(key, segment)
    return key


def check_prefix(prefix: str) -> str:
    """Return `prefix` if it can start blob names (`""`, `sites/`, `sites/a1/chunks/ab`)."""
    if not isinstance(prefix, str):
        raise InvalidArgument("a blob name prefix must be a string")
    if prefix == "":
        return prefix
    check_key(prefix.removesuffix("/"))
    return prefix


def _check_segment(key: str, segment: str) -> None:
    if not segment:
        raise InvalidArgument(
            f"blob name {quote(key)} has an empty part (leading, trailing or double '/')"
        )
    if len(segment) > MAX_SEGMENT_LENGTH:
        raise InvalidArgument(
            f"blob name {quote(key)} has a part longer than {MAX_SEGMENT_LENGTH} characters"
        )
    if not _SEGMENT.fullmatch(segment):
        raise InvalidArgument(
            f"blob name {quote(key)} may hold only letters, digits, '.', '_', '-' and '/' "
            "separators, each part starting with a letter or digit"
        )
