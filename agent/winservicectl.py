"""The agent as a Windows service: install, configure and drive StoreSafeAgent through the SCM.

`WindowsServiceManager` holds the logic (which account, delayed automatic
start, restart on failure, the state dir as the service parameter `StateDir`,
what each Windows error means for the user) and reaches Windows only through
`Win32Api`, a facade of one call per pywin32 function. `PyWin32Api` is that
facade on pywin32 and the only code here that runs on Windows alone; the
manager is tested everywhere with the fake in tests/support/services.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from typing import Any, Protocol

from agent.servicectl import ServiceError, ServiceSpec, ServiceState, ServiceStatus
from agent.winservice import DESCRIPTION, DISPLAY_NAME, SERVICE_NAME, STATE_DIR_OPTION

# Windows error codes the manager explains.
ERROR_ACCESS_DENIED = 5
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_INVALID_SERVICE_ACCOUNT = 1057
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_LOGON_FAILED = 1069
ERROR_SERVICE_EXISTS = 1073
ERROR_SERVICE_MARKED_FOR_DELETE = 1072

# Restart 10 s, 1 min, then 5 min after each failure; the count resets after a day up.
RESTART_DELAYS_MS = (10_000, 60_000, 300_000)
RESET_PERIOD_SECONDS = 86_400

# Accounts the SCM runs without a password.
_BUILTIN = ("localsystem", "nt authority\\localservice", "nt authority\\networkservice")

_STATES = {
    1: ServiceState.STOPPED,
    2: ServiceState.STARTING,
    3: ServiceState.STOPPING,
    4: ServiceState.RUNNING,
    5: ServiceState.STARTING,  # continue pending
    6: ServiceState.STOPPING,  # pause pending
    7: ServiceState.STOPPED,  # paused
}


class Win32Error(Exception):
    """A failed Windows call: `winerror` is the Windows error code."""

    def __init__(self, winerror: int, function: str, message: str) -> None:
        super().__init__(f"{function}: {message} ({winerror})")
        self.winerror = winerror
        self.function = function
        self.message = message


@dataclasses.dataclass(frozen=True)
class WinServiceConfig:
    """The parts of a service's configuration that `status` shows."""

    start_type: int  # 2 automatic, 3 manual, 4 disabled
    delayed: bool
    account: str
    restarts: int  # number of restart failure actions


class Win32Api(Protocol):
    """One method per SCM call; each raises Win32Error when Windows says no."""

    def install(
        self,
        *,
        name: str,
        display_name: str,
        description: str,
        account: str | None,
        password: str | None,
    ) -> None:
        """Create the service (automatic, delayed start) hosting the agent's pywin32 class."""

    def grant_logon_as_service(self, account: str) -> None:
        """Give `account` the right to log on as a service (SeServiceLogonRight)."""

    def set_failure_actions(
        self, name: str, *, reset_seconds: int, restart_delays_ms: tuple[int, ...]
    ) -> None:
        """Restart after each failure, also when the service stops with an error."""

    def set_option(self, name: str, option: str, value: str) -> None:
        """A service parameter (registry Services\\NAME\\Parameters)."""

    def get_option(self, name: str, option: str) -> str | None: ...

    def start(self, name: str) -> None:
        """Start and wait until running (or the SCM gives up)."""

    def stop(self, name: str) -> None:
        """Stop and wait until stopped."""

    def remove(self, name: str) -> None: ...

    def query(self, name: str) -> tuple[int, int | None]:
        """(current state, pid or None)."""

    def config(self, name: str) -> WinServiceConfig: ...


def logon_name(account: str) -> str:
    """The account as the SCM wants it: a bare local user becomes `.\\user`."""
    return account if "\\" in account or "@" in account else f".\\{account}"


def needs_password(account: str) -> bool:
    """LocalSystem, LocalService, NetworkService and virtual accounts need none."""
    low = account.lower()
    return low not in _BUILTIN and not low.startswith("nt service\\")


class WindowsServiceManager:
    """ServiceManager on the Windows SCM: the service StoreSafeAgent."""

    kind = "windows"
    name = SERVICE_NAME

    def __init__(self, api: Win32Api) -> None:
        self._api = api

    def install(self, spec: ServiceSpec) -> str:
        account = logon_name(spec.account) if spec.account else None
        if account and needs_password(account) and not spec.password:
            raise ServiceError(
                f"the account {account} needs its password: give --password-file FILE "
                f"(or use LocalSystem, or a virtual account like 'NT SERVICE\\{SERVICE_NAME}')"
            )
        password = spec.password if account and needs_password(account) else None
        try:
            self._api.install(
                name=SERVICE_NAME,
                display_name=DISPLAY_NAME,
                description=DESCRIPTION,
                account=account,
                password=password,
            )
        except Win32Error as exc:
            raise self._explain(exc, "install") from None
        try:
            if account and needs_password(account):
                self._api.grant_logon_as_service(account)
            self._api.set_option(SERVICE_NAME, STATE_DIR_OPTION, str(spec.state_dir))
            self._api.set_failure_actions(
                SERVICE_NAME,
                reset_seconds=RESET_PERIOD_SECONDS,
                restart_delays_ms=RESTART_DELAYS_MS,
            )
        except Win32Error as exc:
            self._undo_install()
            raise self._explain(exc, "configure") from None
        who = account or "LocalSystem"
        if not spec.start:
            return f"installed {SERVICE_NAME} as {who} (state dir {spec.state_dir})"
        self.start()
        return f"installed and started {SERVICE_NAME} as {who} (state dir {spec.state_dir})"

    def uninstall(self) -> str:
        try:
            self._api.stop(SERVICE_NAME)
        except Win32Error as exc:
            if exc.winerror == ERROR_SERVICE_DOES_NOT_EXIST:
                return f"{SERVICE_NAME} is not installed; nothing to do"
            if exc.winerror != ERROR_SERVICE_NOT_ACTIVE:
                raise self._explain(exc, "stop") from None
        try:
            self._api.remove(SERVICE_NAME)
        except Win32Error as exc:
            raise self._explain(exc, "remove") from None
        return f"uninstalled {SERVICE_NAME} (the state dir is kept)"

    def start(self) -> str:
        try:
            self._api.start(SERVICE_NAME)
        except Win32Error as exc:
            if exc.winerror == ERROR_SERVICE_ALREADY_RUNNING:
                return f"{SERVICE_NAME} is already running"
            raise self._explain(exc, "start") from None
        return f"started {SERVICE_NAME}"

    def stop(self) -> str:
        try:
            self._api.stop(SERVICE_NAME)
        except Win32Error as exc:
            if exc.winerror == ERROR_SERVICE_NOT_ACTIVE:
                return f"{SERVICE_NAME} is not running"
            raise self._explain(exc, "stop") from None
        return f"stopped {SERVICE_NAME}"

    def status(self) -> ServiceStatus:
        try:
            code, pid = self._api.query(SERVICE_NAME)
            cfg = self._api.config(SERVICE_NAME)
            state_dir = self._api.get_option(SERVICE_NAME, STATE_DIR_OPTION)
        except Win32Error as exc:
            if exc.winerror == ERROR_SERVICE_DOES_NOT_EXIST:
                return ServiceStatus(self.kind, SERVICE_NAME, ServiceState.NOT_INSTALLED)
            raise self._explain(exc, "query") from None
        start_mode = {2: "auto", 3: "manual", 4: "disabled"}.get(cfg.start_type, "other")
        if start_mode == "auto" and cfg.delayed:
            start_mode = "delayed-auto"
        return ServiceStatus(
            manager=self.kind,
            name=SERVICE_NAME,
            state=_STATES.get(code, ServiceState.STOPPED),
            pid=pid or None,
            state_dir=state_dir,
            account=cfg.account,
            start_mode=start_mode,
            restart_on_failure=cfg.restarts > 0,
        )

    def _undo_install(self) -> None:
        with contextlib.suppress(Win32Error):  # the configure error is the one to report
            self._api.remove(SERVICE_NAME)

    def _explain(self, exc: Win32Error, verb: str) -> ServiceError:
        messages = {
            ERROR_ACCESS_DENIED: f"cannot {verb} the service {SERVICE_NAME}: access denied; "
            "run it in an elevated prompt (Run as administrator)",
            ERROR_SERVICE_DOES_NOT_EXIST: f"{SERVICE_NAME} is not installed: run "
            "`storesafe-agent service install` first",
            ERROR_SERVICE_EXISTS: f"{SERVICE_NAME} is already installed; run "
            "`storesafe-agent service uninstall` first to install it anew",
            ERROR_SERVICE_MARKED_FOR_DELETE: f"{SERVICE_NAME} is being removed; close "
            "services.msc (and any other program holding it open) and try again",
            ERROR_INVALID_SERVICE_ACCOUNT: "Windows does not know that account; give it as "
            "USER (local), DOMAIN\\USER or 'NT SERVICE\\StoreSafeAgent'",
            ERROR_SERVICE_LOGON_FAILED: f"{SERVICE_NAME} could not log on as its account: "
            "check the password and that the account may log on as a service",
        }
        text = messages.get(
            exc.winerror,
            f"cannot {verb} the service {SERVICE_NAME}: "
            f"{exc.message.rstrip('.')} (Windows error {exc.winerror})",
        )
        return ServiceError(text)


class PyWin32Api:
    """Win32Api on pywin32 (Windows only; imported on first use)."""

    def __init__(self) -> None:
        self._util: Any = importlib.import_module("win32serviceutil")
        self._svc: Any = importlib.import_module("win32service")
        self._pywintypes: Any = importlib.import_module("pywintypes")

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._pywintypes.error as exc:
            raise Win32Error(exc.winerror, exc.funcname or "", exc.strerror or "") from exc

    def install(
        self,
        *,
        name: str,
        display_name: str,
        description: str,
        account: str | None,
        password: str | None,
    ) -> None:
        from agent.winservice import _service_class

        self._call(
            self._util.InstallService,
            self._util.GetServiceClassString(_service_class()),
            name,
            display_name,
            startType=self._svc.SERVICE_AUTO_START,
            userName=account,
            password=password,
            description=description,
            delayedstart=True,
        )

    def grant_logon_as_service(self, account: str) -> None:
        security: Any = importlib.import_module("win32security")
        lookup = account[2:] if account.startswith(".\\") else account
        sid = self._call(security.LookupAccountName, None, lookup)[0]
        policy = self._call(security.LsaOpenPolicy, None, security.POLICY_ALL_ACCESS)
        try:
            self._call(security.LsaAddAccountRights, policy, sid, ["SeServiceLogonRight"])
        finally:
            security.LsaClose(policy)

    def _with_service(self, name: str, fn: Any) -> Any:
        scm = self._call(self._svc.OpenSCManager, None, None, self._svc.SC_MANAGER_ALL_ACCESS)
        try:
            handle = self._call(self._svc.OpenService, scm, name, self._svc.SERVICE_ALL_ACCESS)
            try:
                return fn(handle)
            finally:
                self._svc.CloseServiceHandle(handle)
        finally:
            self._svc.CloseServiceHandle(scm)

    def set_failure_actions(
        self, name: str, *, reset_seconds: int, restart_delays_ms: tuple[int, ...]
    ) -> None:
        actions = {
            "ResetPeriod": reset_seconds,
            "RebootMsg": None,
            "Command": None,
            "Actions": [(self._svc.SC_ACTION_RESTART, ms) for ms in restart_delays_ms],
        }

        def change(handle: Any) -> None:
            svc = self._svc
            self._call(
                svc.ChangeServiceConfig2, handle, svc.SERVICE_CONFIG_FAILURE_ACTIONS, actions
            )
            # Also restart when the agent stops with an error, not only on a crash.
            self._call(
                svc.ChangeServiceConfig2, handle, svc.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, True
            )

        self._with_service(name, change)

    def set_option(self, name: str, option: str, value: str) -> None:
        self._call(self._util.SetServiceCustomOption, name, option, value)

    def get_option(self, name: str, option: str) -> str | None:
        value = self._call(self._util.GetServiceCustomOption, name, option, None)
        return None if value is None else str(value)

    def start(self, name: str) -> None:
        self._call(self._util.StartService, name)
        self._call(self._util.WaitForServiceStatus, name, self._svc.SERVICE_RUNNING, 30)

    def stop(self, name: str) -> None:
        self._call(self._util.StopService, name)
        self._call(self._util.WaitForServiceStatus, name, self._svc.SERVICE_STOPPED, 30)

    def remove(self, name: str) -> None:
        self._call(self._util.RemoveService, name)

    def query(self, name: str) -> tuple[int, int | None]:
        def ask(handle: Any) -> tuple[int, int | None]:
            info = self._call(self._svc.QueryServiceStatusEx, handle)
            return int(info["CurrentState"]), int(info["ProcessId"]) or None

        result: tuple[int, int | None] = self._with_service(name, ask)
        return result

    def config(self, name: str) -> WinServiceConfig:
        def ask(handle: Any) -> WinServiceConfig:
            svc = self._svc
            cfg = self._call(svc.QueryServiceConfig, handle)
            delayed = self._call(
                svc.QueryServiceConfig2, handle, svc.SERVICE_CONFIG_DELAYED_AUTO_START_INFO
            )
            failure = self._call(
                svc.QueryServiceConfig2, handle, svc.SERVICE_CONFIG_FAILURE_ACTIONS
            )
            restarts = sum(
                1
                for kind, _ in (failure or {}).get("Actions") or ()
                if kind == svc.SC_ACTION_RESTART
            )
            return WinServiceConfig(int(cfg[1]), bool(delayed), str(cfg[7]), restarts)

        result: WinServiceConfig = self._with_service(name, ask)
        return result
