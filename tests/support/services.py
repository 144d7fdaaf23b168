"""Stand-ins for the OS service managers: systemctl (a command runner) and the Windows SCM.

- `FakeSystemctl`: a `Runner` for agent.systemdctl that keeps a small model of
  systemd (units loaded at daemon-reload, enabled, active) and records every
  command; `booted=False` answers like a container without systemd.
- `FakeScm`: a `Win32Api` for agent.winservicectl that keeps the services it
  was asked to create, with their configuration, and answers with the Windows
  error codes the real SCM uses; `deny` makes every call fail with access denied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from agent.systemdctl import Completed, SystemdManager
from agent.winservicectl import (
    ERROR_ACCESS_DENIED,
    ERROR_SERVICE_ALREADY_RUNNING,
    ERROR_SERVICE_DOES_NOT_EXIST,
    ERROR_SERVICE_EXISTS,
    ERROR_SERVICE_NOT_ACTIVE,
    Win32Error,
    WinServiceConfig,
)

NOT_BOOTED = "System has not been booted with systemd as init system (PID 1). Can't operate."


class FakeSystemctl:
    """systemctl for one machine; units are read from `unit_dir` at daemon-reload."""

    def __init__(self, unit_dir: Path, *, booted: bool = True) -> None:
        self.unit_dir = unit_dir
        self.booted = booted
        self.calls: list[list[str]] = []
        self.loaded: dict[str, str] = {}  # unit -> text seen at the last daemon-reload
        self.enabled: set[str] = set()
        self.active: set[str] = set()
        self.restarts = 0
        self.fail_start = False

    def __call__(self, argv: Sequence[str]) -> Completed:
        argv = list(argv)
        self.calls.append(argv)
        assert argv[0] == "systemctl"
        if not self.booted:
            return Completed(1, "", NOT_BOOTED + "\nFailed to connect to bus: Host is down\n")
        verb, args = argv[1], argv[2:]
        units = [a for a in args if not a.startswith("-")]
        if verb == "daemon-reload":
            self.loaded = {p.name: p.read_text() for p in self.unit_dir.glob("*.service")}
            return Completed(0)
        for unit in units:
            if unit not in self.loaded and verb not in ("reset-failed", "disable"):
                return Completed(5, "", f"Failed to {verb} {unit}: Unit {unit} not found.\n")
        now = "--now" in args
        for unit in units:
            if verb == "enable":
                self.enabled.add(unit)
                if now:
                    if self.fail_start:
                        return Completed(1, "", f"Job for {unit} failed.\n")
                    self.active.add(unit)
            elif verb == "disable":
                self.enabled.discard(unit)
                if now:
                    self.active.discard(unit)
            elif verb == "start":
                if self.fail_start:
                    return Completed(1, "", f"Job for {unit} failed.\n")
                self.active.add(unit)
            elif verb == "stop":
                self.active.discard(unit)
            elif verb == "try-restart":
                self.restarts += unit in self.active
            elif verb == "show":
                return Completed(0, self._show(unit))
            elif verb == "reset-failed":
                pass
            else:
                return Completed(1, "", f"Unknown command verb {verb}.\n")
        return Completed(0)

    def _show(self, unit: str) -> str:
        active = unit in self.active
        return (
            f"MainPID={4242 if active else 0}\n"
            f"LoadState={'loaded' if unit in self.loaded else 'not-found'}\n"
            f"ActiveState={'active' if active else 'inactive'}\n"
            f"SubState={'running' if active else 'dead'}\n"
            f"UnitFileState={'enabled' if unit in self.enabled else 'disabled'}\n"
        )

    def verbs(self) -> list[str]:
        return [" ".join(c[1:]) for c in self.calls]


@dataclasses.dataclass
class FakeService:
    display_name: str
    description: str
    account: str | None
    password: str | None
    delayed: bool = True
    start_type: int = 2
    state: int = 1  # stopped
    options: dict[str, str] = dataclasses.field(default_factory=dict)
    failure: tuple[int, tuple[int, ...]] | None = None


class FakeScm:
    """The Windows service control manager, in memory."""

    def __init__(self) -> None:
        self.services: dict[str, FakeService] = {}
        self.logon_rights: set[str] = set()
        self.calls: list[str] = []
        self.deny = False
        self.fail_failure_actions = False

    def _check(self, call: str, name: str | None = None, *, exists: bool = True) -> None:
        self.calls.append(call)
        if self.deny:
            raise Win32Error(ERROR_ACCESS_DENIED, call, "Access is denied.")
        if name is not None and exists and name not in self.services:
            raise Win32Error(
                ERROR_SERVICE_DOES_NOT_EXIST, call, "The specified service does not exist."
            )

    def install(
        self,
        *,
        name: str,
        display_name: str,
        description: str,
        account: str | None,
        password: str | None,
    ) -> None:
        self._check("install")
        if name in self.services:
            raise Win32Error(ERROR_SERVICE_EXISTS, "CreateService", "The service already exists.")
        self.services[name] = FakeService(display_name, description, account, password)

    def grant_logon_as_service(self, account: str) -> None:
        self._check("grant_logon_as_service")
        self.logon_rights.add(account)

    def set_failure_actions(
        self, name: str, *, reset_seconds: int, restart_delays_ms: tuple[int, ...]
    ) -> None:
        self._check("set_failure_actions", name)
        if self.fail_failure_actions:
            raise Win32Error(87, "ChangeServiceConfig2", "The parameter is incorrect.")
        self.services[name].failure = (reset_seconds, restart_delays_ms)

    def set_option(self, name: str, option: str, value: str) -> None:
        self._check("set_option", name)
        self.services[name].options[option] = value

    def get_option(self, name: str, option: str) -> str | None:
        self._check("get_option", name)
        return self.services[name].options.get(option)

    def start(self, name: str) -> None:
        self._check("start", name)
        if self.services[name].state == 4:
            raise Win32Error(ERROR_SERVICE_ALREADY_RUNNING, "StartService", "already running")
        self.services[name].state = 4

    def stop(self, name: str) -> None:
        self._check("stop", name)
        if self.services[name].state != 4:
            raise Win32Error(ERROR_SERVICE_NOT_ACTIVE, "ControlService", "not started")
        self.services[name].state = 1

    def remove(self, name: str) -> None:
        self._check("remove", name)
        del self.services[name]

    def query(self, name: str) -> tuple[int, int | None]:
        self._check("query", name)
        state = self.services[name].state
        return state, (777 if state == 4 else None)

    def config(self, name: str) -> WinServiceConfig:
        self._check("config", name)
        svc = self.services[name]
        restarts = len(svc.failure[1]) if svc.failure else 0
        return WinServiceConfig(svc.start_type, svc.delayed, svc.account or "LocalSystem", restarts)


def fake_systemd_manager(
    tmp_path: Path, command: Sequence[str], **kwargs: bool
) -> tuple[SystemdManager, FakeSystemctl]:
    """A real SystemdManager driving a FakeSystemctl, with its unit dir under `tmp_path`."""
    unit_dir = tmp_path / "units"
    unit_dir.mkdir(exist_ok=True)
    fake = FakeSystemctl(unit_dir, **kwargs)
    return SystemdManager(fake, unit_dir=unit_dir, command=tuple(command)), fake
