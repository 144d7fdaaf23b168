"""`storesafe-agent service`: the systemd and Windows managers on their fakes, and the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent import servicecli
from agent.main import app
from agent.servicectl import ServiceError, ServiceSpec, ServiceState
from agent.systemdctl import UNIT_NAME, SystemdManager, render_unit, run_command
from agent.winservice import SERVICE_NAME, STATE_DIR_OPTION
from agent.winservicectl import RESET_PERIOD_SECONDS, RESTART_DELAYS_MS, WindowsServiceManager
from tests.support.services import NOT_BOOTED, FakeScm, FakeSystemctl, fake_systemd_manager
from tests.unit.agent.test_main import enrolled, one_line_error

ROOT = Path(__file__).resolve().parents[3]
COMMAND = ("/opt/storesafe/.venv/bin/storesafe-agent",)


def systemd(tmp_path: Path, **kwargs: bool) -> tuple[SystemdManager, FakeSystemctl]:
    return fake_systemd_manager(tmp_path, COMMAND, **kwargs)


# -- systemd ------------------------------------------------------------------


def test_systemd_install_writes_the_unit_reloads_and_enables_now(tmp_path: Path) -> None:
    manager, fake = systemd(tmp_path)
    said = manager.install(ServiceSpec(state_dir=Path("/var/lib/storesafe-agent")))
    assert "installed and started" in said
    unit = manager.unit_path.read_text()
    assert (
        "ExecStart=/opt/storesafe/.venv/bin/storesafe-agent run --state-dir "
        "/var/lib/storesafe-agent" in unit
    )
    assert "StateDirectory=storesafe-agent" in unit
    assert "Restart=always" in unit
    assert fake.verbs() == ["daemon-reload", f"enable --now {UNIT_NAME}"]
    assert fake.loaded[UNIT_NAME] == unit  # the reload saw the written file
    status = manager.status()
    assert (status.state, status.pid, status.exit_code) == (ServiceState.RUNNING, 4242, 0)
    assert status.state_dir == "/var/lib/storesafe-agent"
    assert (status.account, status.start_mode, status.restart_on_failure) == (
        "root",
        "enabled",
        True,
    )
    assert status.line().startswith(f"{UNIT_NAME}: running (pid 4242), state dir ")


def test_systemd_unit_for_an_odd_state_dir_and_account_is_quoted(tmp_path: Path) -> None:
    manager, _ = systemd(tmp_path)
    state_dir = tmp_path / "my state" / "100%"
    manager.install(ServiceSpec(state_dir=state_dir, account="storesafe", start=False))
    unit = manager.unit_path.read_text()
    assert f'--state-dir "{tmp_path}/my state/100%%"' in unit
    assert f'ReadWritePaths="{tmp_path}/my state/100%%"' in unit
    assert "User=storesafe" in unit
    assert "StateDirectory" not in unit
    status = manager.status()
    assert (status.state_dir, status.account) == (str(state_dir), "storesafe")
    assert status.state is ServiceState.STOPPED


@pytest.mark.parametrize("odd", [False, True])
def test_generated_units_pass_systemd_analyze_verify(tmp_path: Path, odd: bool) -> None:
    # systemd-analyze checks a unit offline (no running systemd needed): syntax,
    # known settings, and that ExecStart names an executable file.
    script = tmp_path / "bin" / "storesafe-agent"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    state = tmp_path / "state dir" if odd else Path("/var/lib/storesafe-agent")
    (unit_dir / UNIT_NAME).write_text(render_unit([str(script)], state, "daemon" if odd else None))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit_dir / UNIT_NAME)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert UNIT_NAME not in done.stderr, done.stderr  # no warning about our unit


def test_the_deploy_unit_file_is_the_default_rendering() -> None:
    shipped = (ROOT / "deploy" / "systemd" / "storesafe-agent.service").read_text()
    assert shipped == render_unit(), "regenerate it: python -c 'from agent.systemdctl import ...'"


def test_systemd_stop_start_and_uninstall(tmp_path: Path) -> None:
    manager, fake = systemd(tmp_path)
    manager.install(ServiceSpec(state_dir=tmp_path / "state"))
    assert manager.stop() == f"stopped {UNIT_NAME}"
    status = manager.status()
    assert (status.state, status.pid, status.exit_code) == (ServiceState.STOPPED, None, 3)
    assert manager.start() == f"started {UNIT_NAME}"
    assert manager.status().state is ServiceState.RUNNING
    fake.calls.clear()
    assert "uninstalled" in manager.uninstall()
    assert not manager.unit_path.exists()
    assert fake.verbs() == [
        f"disable --now {UNIT_NAME}",
        "daemon-reload",
        f"reset-failed {UNIT_NAME}",
    ]
    status = manager.status()
    assert (status.state, status.exit_code) == (ServiceState.NOT_INSTALLED, 3)
    assert status.to_json()["installed"] is False
    assert "nothing to do" in manager.uninstall()


def test_systemd_reinstall_with_a_new_state_dir_restarts_the_running_service(
    tmp_path: Path,
) -> None:
    manager, fake = systemd(tmp_path)
    manager.install(ServiceSpec(state_dir=tmp_path / "a"))
    manager.install(ServiceSpec(state_dir=tmp_path / "a"))
    assert fake.restarts == 0  # the same unit: nothing to restart
    manager.install(ServiceSpec(state_dir=tmp_path / "b"))
    assert fake.restarts == 1
    assert manager.status().state_dir == str(tmp_path / "b")


def test_systemd_verbs_before_install_say_what_to_do(tmp_path: Path) -> None:
    manager, fake = systemd(tmp_path)
    for verb in (manager.start, manager.stop):
        with pytest.raises(ServiceError, match="not installed: run `storesafe-agent service"):
            verb()
    assert fake.calls == []


def test_systemd_on_a_machine_without_systemd_is_one_clear_error(tmp_path: Path) -> None:
    manager, _ = systemd(tmp_path, booted=False)
    with pytest.raises(ServiceError) as caught:
        manager.install(ServiceSpec(state_dir=tmp_path / "state"))
    assert str(caught.value) == f"systemctl daemon-reload failed: {NOT_BOOTED.rstrip('.')}"


def test_systemd_a_failing_start_is_reported(tmp_path: Path) -> None:
    manager, fake = systemd(tmp_path)
    fake.fail_start = True
    with pytest.raises(ServiceError, match=f"systemctl enable failed: Job for {UNIT_NAME} failed"):
        manager.install(ServiceSpec(state_dir=tmp_path / "state"))


def test_systemd_an_unwritable_unit_dir_says_run_as_root(tmp_path: Path) -> None:
    fake = FakeSystemctl(tmp_path)
    manager = SystemdManager(fake, unit_dir=tmp_path / "missing", command=COMMAND)
    with pytest.raises(ServiceError, match=r"cannot write .*; run it as root"):
        manager.install(ServiceSpec(state_dir=tmp_path / "state"))


def test_the_real_runner_without_the_program_is_one_clear_error() -> None:
    with pytest.raises(ServiceError, match="was not found: this machine does not seem to run"):
        run_command(["storesafe-no-such-systemctl", "status"])
    assert run_command(["sh", "-c", "echo out; echo err >&2; exit 3"]).returncode == 3


# -- Windows --------------------------------------------------------------------


def test_windows_install_is_delayed_auto_with_restarts_and_the_state_dir(tmp_path: Path) -> None:
    scm = FakeScm()
    manager = WindowsServiceManager(scm)
    said = manager.install(ServiceSpec(state_dir=Path(r"C:\ProgramData\StoreSafe")))
    assert said == (
        f"installed and started {SERVICE_NAME} as LocalSystem "
        r"(state dir C:\ProgramData\StoreSafe)"
    )
    svc = scm.services[SERVICE_NAME]
    assert (svc.account, svc.password) == (None, None)  # LocalSystem
    assert svc.options == {STATE_DIR_OPTION: r"C:\ProgramData\StoreSafe"}
    assert svc.failure == (RESET_PERIOD_SECONDS, RESTART_DELAYS_MS)
    assert svc.state == 4
    status = manager.status()
    assert status.to_json() == {
        "manager": "windows",
        "name": SERVICE_NAME,
        "state": "running",
        "pid": 777,
        "state_dir": r"C:\ProgramData\StoreSafe",
        "account": "LocalSystem",
        "start_mode": "delayed-auto",
        "restart_on_failure": True,
        "running": True,
        "installed": True,
    }
    assert status.line() == (
        rf"{SERVICE_NAME}: running (pid 777), state dir C:\ProgramData\StoreSafe, "
        "account LocalSystem, start delayed-auto, restarts on failure"
    )
    assert scm.logon_rights == set()


def test_windows_a_dedicated_account_needs_its_password_and_gets_the_logon_right() -> None:
    scm = FakeScm()
    manager = WindowsServiceManager(scm)
    with pytest.raises(ServiceError, match=r"the account \.\\shopsvc needs its password"):
        manager.install(ServiceSpec(state_dir=Path("D:/ss"), account="shopsvc"))
    assert scm.services == {}
    manager.install(ServiceSpec(state_dir=Path("D:/ss"), account="shopsvc", password="pw"))
    svc = scm.services[SERVICE_NAME]
    assert (svc.account, svc.password) == (".\\shopsvc", "pw")
    assert scm.logon_rights == {".\\shopsvc"}
    assert "pw" not in repr(ServiceSpec(state_dir=Path("x"), password="pw"))


def test_windows_a_virtual_account_needs_no_password() -> None:
    scm = FakeScm()
    manager = WindowsServiceManager(scm)
    manager.install(
        ServiceSpec(state_dir=Path("D:/ss"), account="NT SERVICE\\StoreSafeAgent", password="x")
    )
    svc = scm.services[SERVICE_NAME]
    assert (svc.account, svc.password) == ("NT SERVICE\\StoreSafeAgent", None)
    assert scm.logon_rights == set()


def test_windows_install_twice_or_without_rights_is_one_clear_sentence() -> None:
    scm = FakeScm()
    manager = WindowsServiceManager(scm)
    manager.install(ServiceSpec(state_dir=Path("C:/ss"), start=False))
    with pytest.raises(ServiceError, match="already installed; run `storesafe-agent service "):
        manager.install(ServiceSpec(state_dir=Path("C:/ss")))
    scm.deny = True
    for verb in (manager.start, manager.stop, manager.uninstall, manager.status):
        with pytest.raises(ServiceError, match="access denied; run it in an elevated prompt"):
            verb()


def test_windows_a_failure_while_configuring_leaves_no_half_installed_service() -> None:
    scm = FakeScm()
    scm.fail_failure_actions = True
    manager = WindowsServiceManager(scm)
    with pytest.raises(ServiceError, match=r"cannot configure .*parameter is incorrect \(Windows"):
        manager.install(ServiceSpec(state_dir=Path("C:/ss")))
    assert scm.services == {}


def test_windows_start_stop_uninstall_and_status_codes() -> None:
    scm = FakeScm()
    manager = WindowsServiceManager(scm)
    status = manager.status()
    assert (status.state, status.exit_code) == (ServiceState.NOT_INSTALLED, 3)
    with pytest.raises(ServiceError, match="not installed: run `storesafe-agent service install"):
        manager.start()
    assert "nothing to do" in manager.uninstall()
    manager.install(ServiceSpec(state_dir=Path("C:/ss"), start=False))
    assert manager.status().exit_code == 3
    assert manager.stop() == f"{SERVICE_NAME} is not running"
    assert manager.start() == f"started {SERVICE_NAME}"
    assert manager.start() == f"{SERVICE_NAME} is already running"
    assert manager.status().exit_code == 0
    assert manager.uninstall() == f"uninstalled {SERVICE_NAME} (the state dir is kept)"
    assert scm.calls[-2:] == ["stop", "remove"]
    assert scm.services == {}


# -- the CLI --------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def fake_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSystemctl:
    manager, fake = systemd(tmp_path)
    monkeypatch.setattr(servicecli, "make_manager", lambda: manager)
    return fake


def test_cli_install_status_stop_with_monitoring_exit_codes(
    tmp_path: Path, fake_systemd: FakeSystemctl
) -> None:
    state = enrolled(tmp_path)
    done = runner.invoke(app, ["service", "install", "--state-dir", str(state.root)])
    assert done.exit_code == 0, done.output
    assert f"installed and started {UNIT_NAME}" in done.stdout
    shown = runner.invoke(app, ["service", "status", "--json"])
    assert shown.exit_code == 0
    data = json.loads(shown.stdout)
    assert (data["state"], data["running"], data["state_dir"]) == (
        "running",
        True,
        str(state.root),
    )
    assert runner.invoke(app, ["service", "stop"]).exit_code == 0
    shown = runner.invoke(app, ["service", "status"])
    assert shown.exit_code == 3
    assert shown.stdout.startswith(f"{UNIT_NAME}: stopped, state dir {state.root}")
    assert runner.invoke(app, ["service", "uninstall"]).exit_code == 0
    shown = runner.invoke(app, ["service", "status", "--json"])
    assert (shown.exit_code, json.loads(shown.stdout)["state"]) == (3, "not-installed")


def test_cli_install_before_enrollment_is_refused(
    tmp_path: Path, fake_systemd: FakeSystemctl
) -> None:
    done = runner.invoke(app, ["service", "install", "--state-dir", str(tmp_path / "none")])
    assert done.exit_code == 5
    assert "not enrolled" in one_line_error(done)
    assert fake_systemd.calls == []


def test_cli_an_os_refusal_is_one_line_with_exit_5(
    tmp_path: Path, fake_systemd: FakeSystemctl
) -> None:
    state = enrolled(tmp_path)
    fake_systemd.booted = False
    done = runner.invoke(app, ["service", "install", "--state-dir", str(state.root)])
    assert done.exit_code == 5
    assert "has not been booted with systemd" in one_line_error(done)


def test_cli_password_file_reaches_the_windows_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scm = FakeScm()
    monkeypatch.setattr(servicecli, "make_manager", lambda: WindowsServiceManager(scm))
    state = enrolled(tmp_path)
    secret = tmp_path / "pw.txt"
    secret.write_text("hunter2\r\n")
    args = ["service", "install", "--state-dir", str(state.root), "--account", "CORP\\svc"]
    missing = runner.invoke(app, [*args, "--password-file", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "cannot read the password file" in one_line_error(missing)
    done = runner.invoke(app, [*args, "--password-file", str(secret), "--no-start"])
    assert done.exit_code == 0, done.output
    assert "hunter2" not in done.output
    svc = scm.services[SERVICE_NAME]
    assert (svc.account, svc.password, svc.state) == ("CORP\\svc", "hunter2", 1)


def test_the_service_command_is_this_installation_of_the_agent() -> None:
    import sys

    from agent.servicectl import agent_command

    [script] = agent_command()
    assert Path(script) == Path(sys.executable).absolute().with_name("storesafe-agent")
    # Without the console script a service can still run `python -m agent`.
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--version"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout.split()[0]) == (0, "storesafe-agent"), done.stderr
