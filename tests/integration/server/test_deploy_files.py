"""The files under deploy/: checked with the tools that run here, and their commands run.

There is no container engine and no running systemd on the test machine, so:
the compose file goes through `docker-compose config` (client side), the
systemd units through `systemd-analyze verify` (offline), and the Dockerfile's
HEALTHCHECK and CMD are run against a real server with this checkout's
console scripts in place of the image's.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from server.db.engine import head_revision
from tests.support.server import BIN, ServerHandle, free_port, init_server

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DEPLOY / "container" / "Dockerfile").read_text()
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def test_the_image_runs_as_a_fixed_unprivileged_user() -> None:
    steps = dockerfile()
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    last_user = max(i for i, (word, _) in enumerate(steps) if word == "USER")
    cmd = max(i for i, (word, _) in enumerate(steps) if word == "CMD")
    assert last_user < cmd
    for word, args in steps:
        if word == "COPY":
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_the_healthcheck_and_cmd_work_against_a_real_server(tmp_path: Path) -> None:
    steps = dict(dockerfile())
    health = steps["HEALTHCHECK"]
    assert "CMD" in health
    health_args = exec_form(health.split("CMD", 1)[1].strip())
    serve_args = exec_form(steps["CMD"])
    assert health_args[:2] == ["storesafe-server", "health"]
    assert serve_args[:2] == ["storesafe-server", "serve"]
    handle = init_server(tmp_path)
    port = str(free_port())

    def here(args: list[str]) -> list[str]:
        # The image's /data and port 7443, on this machine.
        out = [str(BIN / args[0])]
        for arg in args[1:]:
            arg = arg.replace("/data", str(handle.data_dir))
            out.append(
                arg.replace("0.0.0.0:7443", f"127.0.0.1:{port}").replace(":7443", f":{port}")
            )
        return out

    probe = here(health_args)
    assert subprocess.run(probe, capture_output=True, check=False).returncode == 1  # not yet up
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(here(serve_args), stdout=log, stderr=log)
    try:
        served = ServerHandle(
            data_dir=handle.data_dir,
            address=f"127.0.0.1:{port}",
            ca_path=handle.ca_path,
            admin_token=handle.admin_token,
            proc=proc,
        )
        served.wait_ready(30)
        done = subprocess.run(probe, capture_output=True, text=True, check=False)
        assert (done.returncode, done.stdout) == (0, "SERVING\n"), done.stderr
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_compose_file_is_valid_with_two_replicas_after_a_migrate_job() -> None:
    folder = DEPLOY / "container"
    check = subprocess.run(
        ["docker-compose", "config", "-q"], cwd=folder, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stderr
    services = subprocess.run(
        ["docker-compose", "config", "--services"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(services) == {"postgres", "migrate", "server-a", "server-b"}
    rendered = subprocess.run(
        ["docker-compose", "config"], cwd=folder, capture_output=True, text=True, check=True
    ).stdout
    assert rendered.count("condition: service_completed_successfully") == 2
    assert "published: 7443" in rendered and "published: 7444" in rendered


@pytest.mark.parametrize(
    "units",
    [
        ("storesafe-server.service",),
        ("storesafe-server-backup.service", "storesafe-server-backup.timer"),
    ],
)
def test_server_units_pass_systemd_analyze_verify(tmp_path: Path, units: tuple[str, ...]) -> None:
    # The units name /opt/storesafe/.venv; verify them with this checkout's scripts there.
    for name in units:
        text = (DEPLOY / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace("/opt/storesafe/.venv/bin/", f"{BIN}/"))
    done = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / n) for n in units)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not any(n in done.stderr for n in units), done.stderr


def test_the_server_unit_commands_run(tmp_path: Path) -> None:
    # ExecStartPre (migrate) on a data dir, as systemd would run it.
    unit = (DEPLOY / "systemd" / "storesafe-server.service").read_text()
    pre = next(line for line in unit.splitlines() if line.startswith("ExecStartPre="))
    data = tmp_path / "data"
    data.mkdir()
    argv = shlex.split(pre.split("=", 1)[1])
    argv = [a.replace("/opt/storesafe/.venv/bin/", f"{BIN}/") for a in argv]
    argv = [a.replace("/var/lib/storesafe-server", str(data)) for a in argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert head_revision() in done.stdout
