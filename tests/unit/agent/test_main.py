"""The agent CLI: one sentence and a non-zero exit for every expected failure."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.configsync import ConfigStore
from agent.main import app
from agent.outbox import Outbox
from agent.settings import Credentials, StateDir
from agent.status import CheckInStatus, StatusFile
from common.vault import FleetPrivateKey
from tests.support.agentfakes import T0, report

runner = CliRunner()


def enrolled(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "state")
    state.save_credentials(
        Credentials(
            server="127.0.0.1:7443",
            agent_id="a1",
            credential="s3cr3t",
            site="shop-1",
            group="north",
            ca_file=None,
            enrolled_at=T0,
        ),
        None,
    )
    return state


def one_line_error(result: object) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_status_json_shows_local_state_without_the_secret(tmp_path: Path) -> None:
    state = enrolled(tmp_path)
    StatusFile(state.status_path).save(
        CheckInStatus(last_attempt_at=T0, last_checkin_at=T0, last_result="ok", config_revision=2)
    )
    with Outbox(state.outbox_path) as box:
        box.put(report(1))
    result = runner.invoke(app, ["status", "--json", "--state-dir", str(state.root)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["site"] == "shop-1"
    assert data["server"] == "127.0.0.1:7443"
    assert data["last_checkin_at"] == "2026-11-26T12:00:00Z"
    assert data["last_result"] == "ok"
    assert data["outbox_pending"] == 1
    assert data["config_revision"] == 2
    assert data["last_delivery_at"] is None
    assert "s3cr3t" not in result.stdout


def test_status_of_a_fresh_enrollment_says_never(tmp_path: Path) -> None:
    state = enrolled(tmp_path)
    result = runner.invoke(app, ["status", "--state-dir", str(state.root)])
    assert result.exit_code == 0, result.output
    assert "shop-1" in result.stdout
    assert "never" in result.stdout
    assert "s3cr3t" not in result.stdout


def test_status_text_shows_times_as_the_admin_cli_does(tmp_path: Path) -> None:
    state = enrolled(tmp_path)
    StatusFile(state.status_path).save(CheckInStatus(last_attempt_at=T0, last_checkin_at=T0))
    result = runner.invoke(app, ["status", "--state-dir", str(state.root)])
    assert result.exit_code == 0, result.output
    assert re.search(r"last checkin at +2026-11-26 12:00 UTC *$", result.stdout, re.M)
    assert "2026-11-26T12:00:00" not in result.stdout


def test_status_before_enrollment_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 5
    line = one_line_error(result)
    assert "not enrolled" in line
    assert line.endswith(
        "or name the state dir it was enrolled into with --state-dir or STORESAFE_STATE_DIR"
    )


def test_state_dir_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = enrolled(tmp_path)
    monkeypatch.setenv("STORESAFE_STATE_DIR", str(state.root))
    result = runner.invoke(app, ["status", "--json"])
    assert json.loads(result.stdout)["agent_id"] == "a1"


@pytest.mark.parametrize("command", ["backup-now", "sync-now"])
def test_jobs_not_configured_yet_say_so(command: str) -> None:
    result = runner.invoke(app, [command])
    assert result.exit_code == 5
    assert "not configured" in one_line_error(result) or "no " in one_line_error(result)


def test_enroll_with_a_bad_address(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "enroll",
            "--server",
            "nohost",
            "--token",
            "t",
            "--site",
            "s",
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "HOST:PORT" in one_line_error(result)


def test_enroll_into_an_unwritable_state_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = runner.invoke(
        app,
        [
            "enroll",
            "--server",
            "127.0.0.1:1",
            "--token",
            "t",
            "--site",
            "s",
            "--insecure",
            "--state-dir",
            str(tmp_path / "file" / "state"),
        ],
    )
    assert result.exit_code == 5
    assert "cannot write the state dir" in one_line_error(result)


def test_enroll_with_the_server_down(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "enroll",
            "--server",
            "127.0.0.1:1",
            "--token",
            "t",
            "--site",
            "s",
            "--insecure",
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 6
    assert "cannot reach the StoreSafe server at 127.0.0.1:1" in one_line_error(result)
    assert not StateDir(tmp_path).is_enrolled()


def test_enroll_with_a_host_name_that_does_not_resolve(tmp_path: Path) -> None:
    args = ["enroll", "--server", "no-such-host.invalid:7443", "--token", "t", "--site", "s"]
    result = runner.invoke(app, [*args, "--state-dir", str(tmp_path)])
    assert result.exit_code == 6
    assert one_line_error(result) == (
        "error: cannot resolve the host name 'no-such-host.invalid' of the server "
        "no-such-host.invalid:7443: check --server"
    )
    assert not StateDir(tmp_path).is_enrolled()


def test_enroll_with_a_ca_that_is_not_pem(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("hello")
    result = runner.invoke(
        app,
        [
            "enroll",
            "--server",
            "127.0.0.1:1",
            "--token",
            "t",
            "--site",
            "s",
            "--ca",
            str(bad),
            "--state-dir",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 2
    assert "not a PEM certificate" in one_line_error(result)


def test_run_before_enrollment_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--state-dir", str(tmp_path)])
    assert result.exit_code == 5
    assert "not enrolled" in one_line_error(result)


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("storesafe-agent ")


def test_status_times_are_iso_utc(tmp_path: Path) -> None:
    state = enrolled(tmp_path)
    cet = dt.timezone(dt.timedelta(hours=1))
    StatusFile(state.status_path).save(
        CheckInStatus(last_checkin_at=dt.datetime(2026, 1, 1, 13, 0, tzinfo=cet))
    )
    result = runner.invoke(app, ["status", "--json", "--state-dir", str(state.root)])
    assert json.loads(result.stdout)["last_checkin_at"] == "2026-01-01T12:00:00Z"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "--interval", "abc"], "invalid value for '--interval'"),
        (["enroll", "--server", "h:1"], "missing option"),
        (["bogus"], "no such command"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], words: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert words in one_line_error(result)


def test_sync_now_outside_the_upload_window_runs_nothing_and_says_when_it_opens(
    tmp_path: Path,
) -> None:
    state = enrolled(tmp_path)
    (tmp_path / "Images").mkdir()
    soon = dt.datetime.now().astimezone() + dt.timedelta(minutes=62)
    later = soon + dt.timedelta(minutes=60)
    window = f"{soon:%H:%M}-{later:%H:%M}"
    applied = ConfigStore(state.root).apply(
        1,
        {
            "images.dir": str(tmp_path / "Images"),
            "upload.recovery_key": FleetPrivateKey.generate().public.text,
            "upload.window": window,
        },
    )
    assert applied.applied, applied.error
    result = runner.invoke(app, ["sync-now", "--state-dir", str(state.root)])
    assert result.exit_code == 5
    line = one_line_error(result)
    assert re.fullmatch(
        rf"error: image sync not run: outside the upload window \({window} local time\); "
        r"it next opens in 6[012] min",
        line,
    ), line
    assert not (state.root / "images").exists()  # no index, no data key: nothing ran
    with Outbox(state.outbox_path) as box:
        assert box.pending() == 0
