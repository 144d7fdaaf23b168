"""Wiring for the unattended agent: the real runner for a state dir, and stop signals.

It joins the installed capabilities (agent.installed) through the seam
(agent.capability) and knows none of them by name. Shared by
`storesafe-agent run` and the Windows service wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from agent import facts
from agent.backoff import Backoff
from agent.capability import CapabilityFactory, Seam, Setup
from agent.commands import CommandRunner
from agent.configsync import ConfigStore
from agent.directives import DirectiveLoop
from agent.enroll import reenroll_command
from agent.installed import CAPABILITIES
from agent.lock import StateLock
from agent.outbox import Outbox
from agent.runner import Job, Runner, RunnerConfig
from agent.scheduler import Scheduler
from agent.settings import StateDir
from agent.status import StatusFile
from agent.timer import SystemTimer, Timer
from agent.transport.link import ServerLink
from agent.transport.store import StoreCalls

log = logging.getLogger(__name__)


async def serve(
    state: StateDir,
    stop: asyncio.Event,
    *,
    config: RunnerConfig | None = None,
    clock: Timer | None = None,
    capabilities: Sequence[CapabilityFactory] = CAPABILITIES,
    jobs: Sequence[Job] = (),
) -> None:
    """Run the agent for the enrolled `state` until `stop` is set.

    Each of `capabilities` is built with the running configuration and
    contributes, through `agent.capability.Seam`, its scheduled tasks, remote
    commands, start jobs, check-in facts and volumes (the state dir's volume is
    always reported). `jobs` are extra runner jobs (see `agent.runner.Job`).
    """
    config = config or RunnerConfig()
    clock = clock or SystemTimer()
    state.ensure()
    creds = state.load_credentials()

    def connect() -> ServerLink:
        # Read the credential file again: a re-enrollment may have replaced it.
        return ServerLink.for_agent(
            state, state.load_credentials(), max_reconnect_seconds=config.retry_cap
        )

    def credential_stamp() -> object:
        try:
            st = state.credentials_path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    with StateLock(state.root), Outbox(state.outbox_path, clock=clock) as outbox:
        store = ConfigStore(state.root)
        setup = Setup(
            config=store,
            clock=clock,
            state_dir=state.root,
            site=creds.site,
            store_link=lambda: StoreCalls(connect()),
        )
        seam = Seam([build(setup) for build in capabilities])
        for name, why in seam.not_configured().items():
            log.info("%s is not configured yet: %s", name, why)
        scheduler = Scheduler(config=store, tasks=seam.tasks(), clock=clock, state_dir=state.root)
        directives = DirectiveLoop(
            connect=connect,
            config=store,
            commands=CommandRunner(state.root, seam.commands(scheduler)),
            site=creds.site,
            backoff=Backoff(base=config.retry_base, cap=config.retry_cap),
            refused_retry=config.refused_retry,
            credential_stamp=credential_stamp,
            timer=clock,
        )
        runner = Runner(
            connect=connect,
            outbox=outbox,
            status=StatusFile(state.status_path),
            facts=lambda: facts.collect(clock, {"state": state.root, **seam.volumes()}),
            clock=clock,
            server=creds.server,
            site=creds.site,
            config=config,
            jobs=[directives, *seam.start_jobs(scheduler), scheduler, *jobs],
            config_revision=lambda: store.revision,
            checkin_facts=seam.checkin,
            credential_stamp=credential_stamp,
            reenroll=reenroll_command(state, creds),
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
