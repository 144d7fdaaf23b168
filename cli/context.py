"""What the global options build for one invocation: the admin client and the clock.

Commands reach both through `invocation(ctx)` and `admin(ctx)`; the client (and
with it gRPC) is made on the first `admin(ctx)`, so a command that never calls
the server, or `--help`, loads none of it. Tests may pass their own
`Invocation` as the context object (a fake clock, a prepared client).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

from cli.client.settings import Settings
from common.clock import Clock, SystemClock
from common.errors import Internal

if TYPE_CHECKING:
    from cli.client.admin import AdminClient


@dataclass
class Invocation:
    """The per-run state: how to reach the server, its client once made, the clock."""

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    client: AdminClient | None = None

    def admin(self) -> AdminClient:
        """The admin client, made on first use (it connects on its first call)."""
        if self.client is None:
            from cli.client.admin import AdminClient

            self.client = AdminClient(self.settings)
        return self.client

    def close(self) -> None:
        """Close the client's channel, if a command made one."""
        if self.client is not None:
            self.client.close()

    def now(self) -> dt.datetime:
        """The current time, for "3h ago" in text output."""
        return self.clock.now()


def invocation(ctx: typer.Context) -> Invocation:
    """The `Invocation` the root callback stored on the context."""
    obj = ctx.find_root().obj
    if not isinstance(obj, Invocation):
        raise Internal("the storesafe command was started without its global options")
    return obj


def admin(ctx: typer.Context) -> AdminClient:
    """The admin client of this invocation."""
    return invocation(ctx).admin()
