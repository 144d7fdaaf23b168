"""The agent as a systemd service: the unit file it runs from, and systemctl to drive it.

`render_unit` is the one source of the unit: `deploy/systemd/storesafe-agent.service`
is its rendering for the default install (a test keeps the two equal), and
`service install` writes it to /etc/systemd/system with this machine's
ExecStart and state dir. `SystemdManager` runs systemctl through an injected
`Runner`, so its logic is tested without systemd.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.servicectl import ServiceError, ServiceSpec, ServiceState, ServiceStatus
from agent.settings import ENV_STATE_DIR, write_atomic

UNIT_NAME = "storesafe-agent.service"
UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_STATE_DIR = Path("/var/lib/storesafe-agent")
DEFAULT_COMMAND = ("/opt/storesafe/.venv/bin/storesafe-agent",)


@dataclasses.dataclass(frozen=True)
class Completed:
    """What a command did: exit code and its output."""

    returncode: int
    stdout: str = ""
    stderr: str = ""


Runner = Callable[[Sequence[str]], Completed]


def run_command(argv: Sequence[str]) -> Completed:
    """The real runner: run `argv`, capture its output, never raise for a non-zero exit."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    except FileNotFoundError as exc:
        raise ServiceError(
            f"{argv[0]} was not found: this machine does not seem to run systemd"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"`{' '.join(argv)}` did not finish within 120 s") from exc
    return Completed(done.returncode, done.stdout, done.stderr)


def quote(value: str) -> str:
    """One word of a unit setting: `%` escaped, double-quoted when it holds spaces or quotes."""
    word = value.replace("%", "%%")
    if re.search(r"[\s\"'\\;]", word) or not word:
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def exec_quote(arg: str) -> str:
    """One ExecStart word: as `quote`, and `$` escaped (ExecStart expands variables)."""
    return quote(arg.replace("$", "$$"))


def unquote(word: str) -> str:
    """The value of one word written by `quote`."""
    if len(word) >= 2 and word[0] == word[-1] == '"':
        word = re.sub(r"\\(.)", r"\1", word[1:-1])
    return word.replace("%%", "%")


def render_unit(
    command: Sequence[str] = DEFAULT_COMMAND,
    state_dir: Path = DEFAULT_STATE_DIR,
    user: str | None = None,
) -> str:
    """The unit that runs `command run --state-dir state_dir` (as `user`, default root)."""
    exec_start = " ".join(exec_quote(a) for a in [*command, "run", "--state-dir", str(state_dir)])
    if state_dir == DEFAULT_STATE_DIR:
        where = "StateDirectory=storesafe-agent\nStateDirectoryMode=0700\n"
    else:  # outside /var/lib: keep it writable under the hardening below
        where = f"ReadWritePaths={quote(str(state_dir))}\n"
    account = f"User={user}\n" if user else ""
    return f"""\
# StoreSafe agent: hot backups of the shop database, reported to the StoreSafe server.
#
# Written by `storesafe-agent service install` (see deploy/README.md); by hand, as root:
#   cp deploy/systemd/storesafe-agent.service /etc/systemd/system/
#   storesafe-agent enroll --server HOST:PORT --token TOKEN --site SITE --ca /path/to/ca.pem
#   systemctl daemon-reload && systemctl enable --now storesafe-agent
# Logs: journalctl -u storesafe-agent, and agent.log (rotated) in the state dir.
[Unit]
Description=StoreSafe agent
Wants=network-online.target
After=network-online.target firebird3.0.service firebird.service

[Service]
Type=exec
{account}ExecStart={exec_start}
# The state dir (credential, outbox, status, agent.log).
{where}Environment={quote(f"{ENV_STATE_DIR}={state_dir}")}
# SIGTERM stops the loop gracefully; undelivered reports stay in the outbox.
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=always
RestartSec=10
# Backups run in the background: the shop's own work goes first.
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
# Hardening that leaves backup directories (configured on the server) writable.
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
ProtectHome=read-only
ProtectKernelTunables=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
UMask=0077

[Install]
WantedBy=multi-user.target
"""


_ACTIVE = {
    "active": ServiceState.RUNNING,
    "reloading": ServiceState.RUNNING,
    "activating": ServiceState.STARTING,
    "deactivating": ServiceState.STOPPING,
    "inactive": ServiceState.STOPPED,
    "failed": ServiceState.FAILED,
}


class SystemdManager:
    """ServiceManager on systemd: one system unit, `storesafe-agent.service`."""

    kind = "systemd"
    name = UNIT_NAME

    def __init__(
        self, run: Runner, *, unit_dir: Path = UNIT_DIR, command: Sequence[str] = DEFAULT_COMMAND
    ) -> None:
        self._run = run
        self.unit_path = unit_dir / UNIT_NAME
        self._command = tuple(command)

    def install(self, spec: ServiceSpec) -> str:
        text = render_unit(self._command, spec.state_dir.absolute(), spec.account)
        existed = self.unit_path.exists()
        changed = not existed or self.unit_path.read_text(encoding="utf-8") != text
        try:
            write_atomic(self.unit_path, text.encode("utf-8"), mode=0o644)
        except OSError as exc:
            raise ServiceError(
                f"cannot write {self.unit_path} ({exc.strerror or exc}); run it as root"
            ) from exc
        self._systemctl("daemon-reload")
        if spec.start:
            self._systemctl("enable", "--now", UNIT_NAME)
            if existed and changed:
                self._systemctl("try-restart", UNIT_NAME)
            return f"installed and started {UNIT_NAME} (state dir {spec.state_dir})"
        self._systemctl("enable", UNIT_NAME)
        return f"installed {UNIT_NAME} (state dir {spec.state_dir}); start it with `service start`"

    def uninstall(self) -> str:
        if not self.unit_path.exists():
            return f"{UNIT_NAME} is not installed; nothing to do"
        self._systemctl("disable", "--now", UNIT_NAME)
        try:
            self.unit_path.unlink()
        except OSError as exc:
            raise ServiceError(
                f"cannot remove {self.unit_path} ({exc.strerror or exc}); run it as root"
            ) from exc
        self._systemctl("daemon-reload")
        self._run(["systemctl", "reset-failed", UNIT_NAME])  # fine if it never failed
        return f"uninstalled {UNIT_NAME} (the state dir is kept)"

    def start(self) -> str:
        self._require_installed()
        self._systemctl("start", UNIT_NAME)
        return f"started {UNIT_NAME}"

    def stop(self) -> str:
        self._require_installed()
        self._systemctl("stop", UNIT_NAME)
        return f"stopped {UNIT_NAME}"

    def status(self) -> ServiceStatus:
        if not self.unit_path.exists():
            return ServiceStatus(self.kind, UNIT_NAME, ServiceState.NOT_INSTALLED)
        props = self._show()
        if props.get("LoadState") == "not-found":
            return ServiceStatus(self.kind, UNIT_NAME, ServiceState.NOT_INSTALLED)
        state = _ACTIVE.get(props.get("ActiveState", ""), ServiceState.STOPPED)
        pid = int(props.get("MainPID", "0") or 0) if props.get("MainPID", "").isdigit() else 0
        unit = self.unit_path.read_text(encoding="utf-8")
        return ServiceStatus(
            manager=self.kind,
            name=UNIT_NAME,
            state=state,
            pid=pid or None,
            state_dir=_unit_value(unit, f"Environment {ENV_STATE_DIR}"),
            account=_unit_value(unit, "User") or "root",
            start_mode=props.get("UnitFileState") or None,
            restart_on_failure=_unit_value(unit, "Restart") in ("always", "on-failure"),
        )

    def _show(self) -> dict[str, str]:
        done = self._systemctl(
            "show",
            UNIT_NAME,
            "--property=LoadState,ActiveState,SubState,MainPID,UnitFileState",
        )
        props = {}
        for line in done.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value.strip()
        return props

    def _require_installed(self) -> None:
        if not self.unit_path.exists():
            raise ServiceError(
                f"{UNIT_NAME} is not installed: run `storesafe-agent service install` first"
            )

    def _systemctl(self, *args: str) -> Completed:
        done = self._run(["systemctl", *args])
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            reason = why[0] if why else f"exit code {done.returncode}"
            raise ServiceError(f"systemctl {args[0]} failed: {reason.rstrip('.')}")
        return done


def _unit_value(unit: str, key: str) -> str | None:
    """The value of `key` in the unit; `Environment=VAR` gives the variable's value."""
    setting, _, var = key.partition(" ")
    for line in unit.splitlines():
        name, sep, value = line.partition("=")
        if not sep or name.strip() != setting:
            continue
        value = unquote(value.strip())
        if not var:
            return value
        if value.startswith(f"{var}="):
            return value[len(var) + 1 :]
    return None
