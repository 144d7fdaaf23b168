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
from agent.backoff import Backoff
from agent.backupjob import FirebirdTasks, command_result
from agent.commands import CommandResult, CommandRunner, Handler
from agent.configsync import ConfigStore
from agent.directives import DirectiveLoop
from agent.enroll import reenroll_command
from agent.lock import StateLock
from agent.outbox import Outbox
from agent.reports import FirebirdHealth
from agent.runner import Job, ReportSink, Runner, RunnerConfig
from agent.scheduler import Scheduler
from agent.settings import StateDir
from agent.status import StatusFile
from agent.transport.link import ServerLink
from common.clock import Clock, SystemClock


def not_configured(job: str) -> Handler:
    """A command handler for a job this agent cannot run yet."""

    async def handler() -> CommandResult:
        return CommandResult("rejected", f"no {job} job is configured on this agent yet")

    return handler


DEFAULT_HANDLERS: Mapping[str, Handler] = {
    "sync-now": not_configured("image sync"),
}


def resume_unverified(scheduler: Scheduler, firebird: FirebirdTasks) -> Job:
    """A runner job: at the start, verify the backups an interrupted job left unverified."""

    async def resume(sink: ReportSink) -> None:
        async with scheduler.exclusive():
            reports = await firebird.resume()
        for report in reports:
            sink.submit(report)

    return resume


def run_now(scheduler: Scheduler, task: str, why_not: Callable[[], str | None]) -> Handler:
    """A command handler that runs a scheduled task now, through the scheduler's lock."""

    async def handler() -> CommandResult:
        report = await scheduler.run(task, trigger="remote")
        return command_result(report, why_not())

    return handler


async def serve(
    state: StateDir,
    stop: asyncio.Event,
    *,
    config: RunnerConfig | None = None,
    clock: Clock | None = None,
    jobs: Sequence[Job] = (),
    commands: Mapping[str, Handler] = DEFAULT_HANDLERS,
    volumes: Callable[[], Mapping[str, Path]] | None = None,
    health: Callable[[], FirebirdHealth | None] = lambda: None,
) -> None:
    """Run the agent for the enrolled `state` until `stop` is set.

    `jobs` are the scheduled work (see `agent.runner.Job`); `commands` maps a
    remote command kind ("backup-now", "sync-now") to its handler; `volumes`
    names the paths whose disk space goes into each check-in (label -> path,
    e.g. "data", "backup"; the state dir is always included); `health` gives
    the latest live-database figures.
    """
    config = config or RunnerConfig()
    clock = clock or SystemClock()
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

    def watched(extra: Callable[[], Mapping[str, Path]]) -> dict[str, Path]:
        return {"state": state.root, **extra(), **(volumes() if volumes else {})}

    with StateLock(state.root), Outbox(state.outbox_path, clock=clock) as outbox:
        store = ConfigStore(state.root)
        firebird = FirebirdTasks(store, clock)
        scheduler = Scheduler(
            config=store, tasks=firebird.tasks(), clock=clock, state_dir=state.root
        )
        handlers = {
            "backup-now": run_now(
                scheduler, "backup", lambda: firebird.backup_missing(store.current)
            ),
            **commands,
        }
        directives = DirectiveLoop(
            connect=connect,
            config=store,
            commands=CommandRunner(state.root, handlers),
            site=creds.site,
            backoff=Backoff(base=config.retry_base, cap=config.retry_cap),
            refused_retry=config.refused_retry,
            credential_stamp=credential_stamp,
        )
        runner = Runner(
            connect=connect,
            outbox=outbox,
            status=StatusFile(state.status_path),
            facts=lambda: facts.collect(clock, watched(firebird.backup_volume)),
            clock=clock,
            server=creds.server,
            site=creds.site,
            config=config,
            jobs=[directives, resume_unverified(scheduler, firebird), scheduler, *jobs],
            config_revision=lambda: store.revision,
            health=lambda: health() or firebird.health(),
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
