"""The Windows service wrapper: maps service control start/stop onto the agent loop.

`ServiceController` holds the logic and speaks to the service control manager
only through the small `ServiceHost` interface, so it is tested on any OS with
a fake. The pywin32 class is built on first use (module `__getattr__`), so
nothing here imports pywin32 unless Windows asks for the service. Install it
with `storesafe-agent service install` (agent/winservicectl.py); the state dir
travels as the service parameter `StateDir`. `python -m agent.winservice debug`
runs it in a console.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from agent.transport import aio
from common.errors import StoreSafeError

log = logging.getLogger(__name__)

SERVICE_NAME = "StoreSafeAgent"
DISPLAY_NAME = "StoreSafe Agent"
STATE_DIR_OPTION = "StateDir"  # a service parameter (registry: Services\StoreSafeAgent\Parameters)
DESCRIPTION = "Hot backups of the shop database, verified by restore, reported to StoreSafe."

Main = Callable[[asyncio.Event], Awaitable[None]]


class ServiceHost(Protocol):
    """What the controller tells the service control manager."""

    def report(self, state: str) -> None:
        """One of "start-pending", "running", "stop-pending", "stopped"."""

    def log_error(self, message: str) -> None:
        """Put one line in the Windows event log."""


class ServiceController:
    """Runs `main(stop)` in its own event loop; `stop()` may come from any thread."""

    def __init__(self, host: ServiceHost, main: Main) -> None:
        self._host = host
        self._main = main
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._stop_requested = False

    def run(self) -> int:
        """Block until the agent stops (SvcDoRun); 0 after a requested stop, else 1."""
        self._host.report("start-pending")
        code = 0
        try:
            aio.run(self._run())
        except StoreSafeError as exc:
            self._host.log_error(f"StoreSafe agent stopped: {exc}")
            code = 1
        except Exception as exc:
            log.exception("the agent service crashed")
            self._host.log_error(f"StoreSafe agent crashed: {exc!r}")
            code = 1
        self._host.report("stopped")
        return code

    def stop(self) -> None:
        """Ask the agent to stop (SvcStop); returns at once."""
        self._host.report("stop-pending")
        with self._lock:
            self._stop_requested = True
            if self._loop is not None and self._event is not None:
                self._loop.call_soon_threadsafe(self._event.set)

    async def _run(self) -> None:
        event = asyncio.Event()
        with self._lock:
            self._loop, self._event = asyncio.get_running_loop(), event
            if self._stop_requested:
                event.set()
        self._host.report("running")
        try:
            await self._main(event)
        finally:
            with self._lock:
                self._loop = self._event = None


def default_main(stop: asyncio.Event, state_root: Path | None = None) -> Awaitable[None]:
    """The agent loop on `state_root` (the service's StateDir parameter, else the default
    or $STORESAFE_STATE_DIR), logging to the rotating `agent.log` in that state dir."""
    from agent.logfile import file_handler, log_to
    from agent.service import serve
    from agent.settings import StateDir, resolve_state_dir
    from common.memory import AGENT_TRIM_THRESHOLD, keep_large_buffers

    keep_large_buffers(AGENT_TRIM_THRESHOLD)  # as `storesafe-agent run` (glibc: not on Windows)
    state = StateDir(resolve_state_dir(state_root))
    state.ensure()
    log_to([file_handler(state.root)])
    return serve(state, stop)


def main_for(state_dir: str | None) -> Main:
    """The service's main for its StateDir parameter (None or empty: the default)."""
    root = Path(state_dir) if state_dir else None
    return functools.partial(default_main, state_root=root)


# -- pywin32, only on Windows and only when asked for --------------------------


class _ScmHost:
    """ServiceHost on top of a pywin32 ServiceFramework instance."""

    def __init__(self, service: Any) -> None:
        self._service = service
        self._win32service = importlib.import_module("win32service")
        self._servicemanager = importlib.import_module("servicemanager")

    def report(self, state: str) -> None:
        codes = {
            "start-pending": self._win32service.SERVICE_START_PENDING,
            "running": self._win32service.SERVICE_RUNNING,
            "stop-pending": self._win32service.SERVICE_STOP_PENDING,
        }
        if state in codes:  # "stopped" is reported by pywin32 once SvcDoRun returns
            self._service.ReportServiceStatus(codes[state])

    def log_error(self, message: str) -> None:
        self._servicemanager.LogErrorMsg(message)


@functools.cache
def _service_class() -> type[Any]:
    win32serviceutil = importlib.import_module("win32serviceutil")

    class StoreSafeAgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc,name-defined]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            state_dir = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, STATE_DIR_OPTION)
            self._controller = ServiceController(_ScmHost(self), main_for(state_dir))

        def SvcDoRun(self) -> None:
            if self._controller.run() != 0:
                # pywin32 then reports STOPPED with an error code: the SCM's
                # failure actions (set by `service install`) restart the service.
                raise RuntimeError("the StoreSafe agent stopped with an error; see agent.log")

        def SvcStop(self) -> None:
            self._controller.stop()

    # Registered by name, so the class must claim its importable home even under `-m`.
    StoreSafeAgentService.__module__ = "agent.winservice"
    return StoreSafeAgentService


def __getattr__(name: str) -> Any:
    # pythonservice.exe loads "agent.winservice.StoreSafeAgentService" by name.
    if name == "StoreSafeAgentService":
        return _service_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """`python -m agent.winservice install|start|stop|remove|debug`."""
    win32serviceutil = importlib.import_module("win32serviceutil")
    win32serviceutil.HandleCommandLine(_service_class())


if __name__ == "__main__":
    main()
