"""What the global options build for one invocation: the admin client and the clock.

Commands reach both through `invocation(ctx)`; tests may pass their own
`Invocation` as the context object (a fake clock, a prepared client).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import typer

from cli.client import AdminClient
from common.clock import Clock, SystemClock
from common.errors import Internal


@dataclass
class Invocation:
    """The per-run state: a lazily connecting client and the clock that says "now"."""

    client: AdminClient
    clock: Clock = field(default_factory=SystemClock)

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
    return invocation(ctx).client
