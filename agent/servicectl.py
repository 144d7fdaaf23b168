"""The service seam: install, drive and query the agent as an OS service, one interface.

`storesafe-agent service install|uninstall|start|stop|status` talks to a
`ServiceManager`; `agent/systemdctl.py` implements it with systemctl,
`agent/winservicectl.py` with the Windows service control manager. Each takes
its OS access as an injected object (a command runner, a pywin32 facade), so
its logic runs in tests with the fakes in tests/support/services.py.

`status` exit codes, for monitoring: 0 the service is running; 3 it is not
running (stopped, starting, stopping, failed) or not installed (the JSON says
which); other codes are the agent's usual errors (5: cannot ask the OS).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from pathlib import Path
from typing import Any, Protocol

from common.errors import FailedPrecondition

EXIT_RUNNING = 0
EXIT_NOT_RUNNING = 3


class ServiceError(FailedPrecondition):
    """The OS refused or failed a service operation (not installed, not allowed, ...)."""

    code = "service_error"


class ServiceState(enum.StrEnum):
    RUNNING = "running"
    STARTING = "starting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    NOT_INSTALLED = "not-installed"


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """What `install` sets up: the agent on `state_dir`, run as `account`.

    `account` None means LocalSystem on Windows and root under systemd.
    """

    state_dir: Path
    account: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    start: bool = True


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    """What `status` shows (and `status --json` prints, with these field names)."""

    manager: str  # "systemd" | "windows"
    name: str
    state: ServiceState
    pid: int | None = None
    state_dir: str | None = None
    account: str | None = None
    start_mode: str | None = None  # e.g. "delayed-auto", "enabled"
    restart_on_failure: bool | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_RUNNING if self.state is ServiceState.RUNNING else EXIT_NOT_RUNNING

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        data["running"] = self.state is ServiceState.RUNNING
        data["installed"] = self.state is not ServiceState.NOT_INSTALLED
        return data

    def line(self) -> str:
        """One readable line, e.g. `storesafe-agent.service: running (pid 42), ...`."""
        if self.state is ServiceState.NOT_INSTALLED:
            return f"{self.name}: not installed (storesafe-agent service install sets it up)"
        head = f"{self.name}: {self.state.value}"
        if self.pid:
            head += f" (pid {self.pid})"
        parts = [head]
        if self.state_dir:
            parts.append(f"state dir {self.state_dir}")
        if self.account:
            parts.append(f"account {self.account}")
        if self.start_mode:
            parts.append(f"start {self.start_mode}")
        if self.restart_on_failure is not None:
            parts.append("restarts on failure" if self.restart_on_failure else "no restart")
        return ", ".join(parts)


class ServiceManager(Protocol):
    """Installs and drives the agent's OS service. Each verb returns one line for the user
    and raises ServiceError with one clear sentence when the OS says no."""

    kind: str
    name: str

    def install(self, spec: ServiceSpec) -> str: ...

    def uninstall(self) -> str: ...

    def start(self) -> str: ...

    def stop(self) -> str: ...

    def status(self) -> ServiceStatus: ...


def agent_command() -> list[str]:
    """How the service starts this agent: the console script beside this Python, if any."""
    python = Path(sys.executable)
    name = "storesafe-agent.exe" if sys.platform == "win32" else "storesafe-agent"
    script = python.with_name(name)
    if script.exists():
        return [str(script.absolute())]
    return [str(python.absolute()), "-m", "agent"]
