"""The capability seam: what one capability (Firebird backup, image sync, off-site upload) adds.

A capability is a package under agent/ with one class deriving from
`Capability`. Through it, and only through it, the capability contributes:

- its scheduled tasks (`tasks`), run one at a time by the scheduler;
- its remote-command handlers (`commands`), keyed by command kind;
- jobs that run once at the start (`start_jobs`), e.g. finishing work a kill
  interrupted;
- its check-in facts and health (`checkin`), added to each check-in;
- the volumes whose free space each check-in reports (`volumes`);
- whether it is configured (`why_not_configured`: None, or the reason).

`agent.service` builds every capability in `agent.installed.CAPABILITIES`
with a `Setup` and wires them through `Seam`; it knows none by name. A
command kind the agent understands (`agent.domain.messages.COMMAND_JOBS`) that
no capability claims is answered "not configured" by the seam itself.
Capabilities never import the transport (a contract in .importlinter).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent.commands import CommandResult, Handler
from agent.configsync import ConfigStore
from agent.domain.messages import COMMAND_JOBS, CheckIn
from agent.domain.offsite import StoreLink
from agent.domain.reports import RunReport
from common.clock import Clock

if TYPE_CHECKING:  # the runner and the scheduler (psutil, croniter) are the service's: a
    # one-off pass (sync-now, backup-now) builds a capability without loading them
    from agent.runner import Job
    from agent.scheduler import Task


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every capability is built with: the running configuration, the clock, the state dir;
    the enrolled site and a way to open the off-site store calls (None: no server to send to)."""

    config: ConfigStore
    clock: Clock
    state_dir: Path
    site: str = ""
    store_link: Callable[[], StoreLink] | None = None


class Host(Protocol):
    """What a capability's commands and start jobs may ask of the agent (the scheduler)."""

    async def run(self, name: str, *, trigger: str) -> RunReport | None:
        """Run the scheduled task `name` now, one job at a time; None if it did not run."""
        ...

    def exclusive(self) -> AbstractAsyncContextManager[None]:
        """Hold the one-job-at-a-time lock for work that is not a scheduled task."""
        ...


class Capability(abc.ABC):
    """One thing the agent can do for the shop; every contribution but `name` has a default."""

    name: str = ""

    @abc.abstractmethod
    def why_not_configured(self) -> str | None:
        """None when the running configuration lets this capability work, else why not."""

    def tasks(self) -> Sequence[Task]:
        """Scheduled tasks; their names are unique across capabilities."""
        return ()

    def commands(self, host: Host) -> Mapping[str, Handler]:
        """Remote-command handlers by kind ("backup-now", "sync-now")."""
        return {}

    def start_jobs(self, host: Host) -> Sequence[Job]:
        """Runner jobs started with the agent (see agent.runner.Job)."""
        return ()

    def checkin(self, checkin: CheckIn) -> CheckIn:
        """The check-in with this capability's facts and health added."""
        return checkin

    def volumes(self) -> Mapping[str, Path]:
        """Label -> path of the volumes whose free space goes into each check-in."""
        return {}


CapabilityFactory = Callable[[Setup], Capability]


def not_configured(job: str) -> Handler:
    """The handler for a command whose job no capability on this agent runs."""

    async def handler() -> CommandResult:
        return CommandResult("rejected", f"no {job} job is configured on this agent yet")

    return handler


class Seam:
    """The agent's capabilities, joined: their tasks, commands, start jobs, facts and volumes."""

    def __init__(self, capabilities: Sequence[Capability]) -> None:
        names = [c.name for c in capabilities]
        if len(set(names)) != len(names):
            raise ValueError(f"capability names must be unique: {names}")
        self.capabilities = tuple(capabilities)

    def tasks(self) -> list[Task]:
        tasks = [t for c in self.capabilities for t in c.tasks()]
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"two capabilities schedule a task of the same name: {names}")
        return tasks

    def commands(self, host: Host) -> dict[str, Handler]:
        """Every claimed command; each known but unclaimed kind answers "not configured"."""
        handlers: dict[str, Handler] = {}
        for capability in self.capabilities:
            for kind, handler in capability.commands(host).items():
                if kind in handlers:
                    raise ValueError(f"two capabilities claim the command {kind!r}")
                handlers[kind] = handler
        for kind, job in COMMAND_JOBS.items():
            handlers.setdefault(kind, not_configured(job))
        return handlers

    def start_jobs(self, host: Host) -> list[Job]:
        return [j for c in self.capabilities for j in c.start_jobs(host)]

    def checkin(self, checkin: CheckIn) -> CheckIn:
        for capability in self.capabilities:
            checkin = capability.checkin(checkin)
        return checkin

    def volumes(self) -> dict[str, Path]:
        return {k: v for c in self.capabilities for k, v in c.volumes().items()}

    def not_configured(self) -> dict[str, str]:
        """Name -> reason, for each capability that cannot work with the running configuration."""
        return {c.name: why for c in self.capabilities if (why := c.why_not_configured())}
