"""Wiring for the unattended agent: the real runner for a state dir, and stop signals.

Shared by `storesafe-agent run` and the Windows service wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from agent import facts
from agent.lock import StateLock
from agent.outbox import Outbox
from agent.reports import FirebirdHealth
from agent.runner import Job, Link, Runner, RunnerConfig
from agent.settings import StateDir
from agent.status import StatusFile
from agent.transport.link import ServerLink
from common.clock import Clock, SystemClock


async def serve(
    state: StateDir,
    stop: asyncio.Event,
    *,
    config: RunnerConfig | None = None,
    clock: Clock | None = None,
    jobs: Sequence[Job] = (),
    volumes: Callable[[], Mapping[str, Path]] | None = None,
    config_revision: Callable[[], int] = lambda: 0,
    health: Callable[[], FirebirdHealth | None] = lambda: None,
) -> None:
    """Run the agent for the enrolled `state` until `stop` is set.

    `jobs` are the scheduled work (see `agent.runner.Job`); `volumes` names the
    paths whose disk space goes into each check-in (label -> path, e.g. "data",
    "backup"; the state dir is always included); `config_revision` tells the
    running configuration revision and `health` the latest live-database figures.
    """
    config = config or RunnerConfig()
    clock = clock or SystemClock()

    def watched() -> dict[str, Path]:
        return {"state": state.root, **(volumes() if volumes else {})}

    state.ensure()
    creds = state.load_credentials()

    def connect() -> Link:
        # Read the credential file again: a re-enrollment may have replaced it.
        return ServerLink.for_agent(
            state, state.load_credentials(), max_reconnect_seconds=config.retry_cap
        )

    with StateLock(state.root), Outbox(state.outbox_path, clock=clock) as outbox:
        runner = Runner(
            connect=connect,
            outbox=outbox,
            status=StatusFile(state.status_path),
            facts=lambda: facts.collect(clock, watched()),
            clock=clock,
            server=creds.server,
            site=creds.site,
            config=config,
            jobs=jobs,
            config_revision=config_revision,
            health=health,
        )
        await runner.run(stop)


def install_stop_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM and SIGINT (call from inside the running loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        if sys.platform == "win32":
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
        else:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
