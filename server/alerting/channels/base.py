"""What every channel is: something that sends one Notice to one target, or says why not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from server.alerting.message import Notice

Target = Mapping[str, Any]  # the channel's destination settings (URL, or SMTP settings)


class DeliveryError(Exception):
    """A send failed. `permanent`: retrying the same request cannot help (e.g. HTTP 404).

    The message MUST NOT contain the target's secret parts (URL paths, passwords).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class Channel(Protocol):
    name: str

    async def send(self, target: Target, notice: Notice) -> None:
        """Deliver or raise DeliveryError."""
        ...


def host_of(url: str) -> str:
    """The part of a webhook URL that may be shown: its host (and port)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host
