"""Where the server is and how to reach it, as the global options give it (no gRPC here).

Kept apart from `channel` so that the CLI can take the options of every command
without loading gRPC: a command that calls the server opens the channel itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

DEFAULT_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to reach the server, from the global options or the environment."""

    server: str | None = None
    token: str | None = None
    ca: Path | None = None
    insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT
