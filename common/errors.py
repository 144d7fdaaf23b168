"""The typed errors every StoreSafe component raises, each with a stable code.

A boundary (gRPC servicer, gRPC client, CLI) maps these to its own wire form
in exactly one table; callers catch these classes, never transport errors.
"""

from __future__ import annotations

from typing import ClassVar


class StoreSafeError(Exception):
    """Base class: `code` is stable and machine-readable, the message is one sentence."""

    code: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(StoreSafeError):
    """The caller sent a value that can never be right."""

    code = "invalid_argument"
    exit_code = 2


class NotFound(StoreSafeError):
    """The named thing does not exist."""

    code = "not_found"
    exit_code = 3


class AlreadyExists(StoreSafeError):
    """The thing to create is there already."""

    code = "already_exists"
    exit_code = 3


class Unauthenticated(StoreSafeError):
    """No credential, or one that is wrong, expired or revoked."""

    code = "unauthenticated"
    exit_code = 4


class PermissionDenied(StoreSafeError):
    """The credential is valid but may not do this."""

    code = "permission_denied"
    exit_code = 4


class FailedPrecondition(StoreSafeError):
    """The system is not in a state that allows this now."""

    code = "failed_precondition"
    exit_code = 5


class Unavailable(StoreSafeError):
    """The other side cannot be reached right now; trying again later may work."""

    code = "unavailable"
    exit_code = 6


class ResourceExhausted(StoreSafeError):
    """Too big or too many."""

    code = "resource_exhausted"
    exit_code = 2


class Internal(StoreSafeError):
    """A bug or an unexpected failure on the other side."""

    code = "internal"
    exit_code = 1


def quote(value: object, limit: int = 60) -> str:
    """`value` quoted for an error message, cut to about `limit` characters: an error
    text never repeats a long value (it travels in gRPC metadata, which is small)."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
