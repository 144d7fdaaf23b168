"""The `storesafe` CLI against a real server on loopback (TLS, SQLite)."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from tests.support.server import ServerHandle

STORESAFE = str(Path(sys.executable).parent / "storesafe")
SITE_FIELDS = {
    "site",
    "group",
    "status",
    "last_good_backup_at",
    "last_backup_at",
    "last_image_sync_at",
    "last_seen_at",
    "config_revision_desired",
    "config_revision_applied",
    "agent_version",
    "problems",
    "hostname",
}


def run(server: ServerHandle, *args: str, **env: str) -> Result:
    return CliRunner().invoke(app, list(args), env={**server.cli_env, **env})


def unique(prefix: str = "shop") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def one_error_line(result: Result) -> str:
    """The single `error: ...` line a failed command printed, with no traceback."""
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_token_create_text_shows_token_and_enroll_command(shared_server: ServerHandle) -> None:
    site = unique()
    result = run(shared_server, "token", "create", "--site", site, "--expires", "30m")
    assert result.exit_code == 0, result.output
    assert f"Enrollment token for site {site}, valid for 30m" in result.stdout
    token = result.stdout.split("\n\n")[1].strip()
    assert len(token) > 20
    assert (
        f"storesafe-agent enroll --server {shared_server.address} --site {site} --token {token}"
        in result.stdout
    )


def test_token_create_json(shared_server: ServerHandle) -> None:
    before = dt.datetime.now(dt.UTC)
    result = run(
        shared_server,
        "token",
        "create",
        "--site",
        unique(),
        "--group",
        "north",
        "--expires",
        "2h",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["token"]
    assert data["expires_at"].endswith("Z")
    expires = dt.datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=119) < expires - before < dt.timedelta(minutes=121)


def test_token_create_refuses_bad_values_before_calling(shared_server: ServerHandle) -> None:
    result = run(shared_server, "token", "create", "--site", "x", "--expires", "1y")
    assert result.exit_code == 2
    assert one_error_line(result) == (
        "error: '1y' is not a duration: use a number and a unit, like 30m, 24h or 7d"
    )
    result = run(shared_server, "token", "create", "--site", "shop a")
    assert result.exit_code == 2
    assert "is not a valid site name" in one_error_line(result)


def test_an_empty_fleet_then_sites_after_tokens_are_never_backed_up(server: ServerHandle) -> None:
    """One fresh server: first empty, then two sites with tokens and no agent."""
    result = run(server, "sites")
    assert result.exit_code == 0, result.output
    assert "No sites yet" in result.stdout
    assert json.loads(run(server, "sites", "--json").stdout) == []
    check = run(server, "check")
    assert check.exit_code == 3, check.output
    assert check.stdout.startswith("STORESAFE UNKNOWN - no sites enrolled")

    for site, group in (("shop-a", "north"), ("shop-b", "south")):
        assert run(server, "token", "create", "--site", site, "--group", group).exit_code == 0
    table = run(server, "sites")
    assert table.exit_code == 0, table.output
    assert "shop-a" in table.stdout
    assert "north" in table.stdout
    assert "2 sites: 2 never" in table.stdout

    rows = json.loads(run(server, "sites", "--json").stdout)
    assert [r["site"] for r in rows] == ["shop-a", "shop-b"]
    for row in rows:
        assert set(row) >= SITE_FIELDS
        assert row["status"] == "never"
        assert row["last_good_backup_at"] is None
        assert isinstance(row["problems"], list)
        assert row["problems"]

    north = json.loads(run(server, "sites", "--group", "north", "--json").stdout)
    assert [r["site"] for r in north] == ["shop-a"]
    assert json.loads(run(server, "sites", "--status", "ok", "--json").stdout) == []
    never = json.loads(run(server, "sites", "--status", "never", "--json").stdout)
    assert len(never) == 2

    detail = run(server, "site", "shop-a", "--json")
    assert detail.exit_code == 0, detail.output
    data = json.loads(detail.stdout)
    assert (data["site"], data["group"], data["status"]) == ("shop-a", "north", "never")
    assert data["last_backup"] is None
    assert "never" in run(server, "site", "shop-a").stdout

    check = run(server, "check")
    assert check.exit_code == 2
    assert check.stdout.startswith(
        "STORESAFE CRITICAL - 2 of 2 sites need attention: shop-a never, shop-b never |"
    )
    data = json.loads(run(server, "check", "--json").stdout)
    assert (data["state"], data["exit_code"], data["counts"]["never"]) == ("critical", 2, 2)

    # a check of a group that matches nothing is unknown
    typo = run(server, "check", "--group", "nrth")
    assert typo.exit_code == 3, typo.output
    assert typo.stdout.startswith("STORESAFE UNKNOWN - no site in group 'nrth'")
    as_json = run(server, "check", "--group", "nrth", "--json")
    assert as_json.exit_code == 3
    assert json.loads(as_json.stdout)["state"] == "unknown"
    assert run(server, "check", "--group", "north").exit_code == 2  # shop-a: never


def test_runs_of_a_new_site_are_empty(shared_server: ServerHandle) -> None:
    site = unique()
    run(shared_server, "token", "create", "--site", site)
    result = run(shared_server, "runs", site)
    assert result.exit_code == 0, result.output
    assert f"No runs reported for site {site} yet." in result.stdout
    assert json.loads(run(shared_server, "runs", site, "--kind", "backup", "--json").stdout) == []


def test_unknown_site_is_one_sentence(shared_server: ServerHandle) -> None:
    for args in (["site", "nope-site"], ["runs", "nope-site"], ["revoke", "nope-site"]):
        result = run(shared_server, *args)
        assert result.exit_code == 3, (args, result.output)
        assert "nope-site" in one_error_line(result)
        assert result.stdout == ""


def test_revoke_a_site_without_agents(shared_server: ServerHandle) -> None:
    site = unique()
    run(shared_server, "token", "create", "--site", site)
    result = run(shared_server, "revoke", site)
    assert result.exit_code == 0, result.output
    assert f"Site {site} had no active agent credentials." in result.stdout
    data = json.loads(run(shared_server, "revoke", site, "--json").stdout)
    assert data == {"site": site, "revoked": 0}


def test_audit_records_admin_actions(shared_server: ServerHandle) -> None:
    site = unique()
    run(shared_server, "token", "create", "--site", site)
    rows = json.loads(run(shared_server, "audit", "--limit", "1000", "--json").stdout)
    mine = [r for r in rows if r["target"] == site]
    assert mine
    assert mine[0]["action"]
    assert mine[0]["actor"]
    assert mine[0]["at"].endswith("Z")
    text = run(shared_server, "audit", "--limit", "5")
    assert text.exit_code == 0
    assert site in text.stdout


def test_audit_times_read_like_every_other_time(shared_server: ServerHandle) -> None:
    """One format in human output: `2026-11-26 19:04 UTC`, in the WHEN column and in details."""
    site = unique()
    run(shared_server, "token", "create", "--site", site, "--expires", "2h")
    line = next(line for line in run(shared_server, "audit").stdout.splitlines() if site in line)
    minute = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"
    assert re.fullmatch(
        rf"{minute} \(just now\) +\S+ +token\.create +{site} +group=- expires={minute}",
        line,
    ), line


def test_wrong_admin_token(shared_server: ServerHandle) -> None:
    result = run(shared_server, "sites", STORESAFE_TOKEN="ssadm_wrong")
    assert result.exit_code == 4
    assert one_error_line(result) == (
        f"error: the admin token was refused by the StoreSafe server at {shared_server.address}: "
        "check --token or STORESAFE_TOKEN"
    )
    check = run(shared_server, "check", STORESAFE_TOKEN="ssadm_wrong")
    assert check.exit_code == 3
    assert check.stdout.startswith("STORESAFE UNKNOWN - the admin token was refused")


def test_wrong_ca_is_named(shared_server: ServerHandle, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "storesafe-server"),
            "init",
            "--data-dir",
            str(tmp_path / "other"),
            "--json",
        ],
        check=True,
        capture_output=True,
    )
    other.write_bytes((tmp_path / "other" / "ca.pem").read_bytes())
    result = run(shared_server, "sites", STORESAFE_CA=str(other))
    assert result.exit_code == 6
    assert "cannot make a TLS connection" in one_error_line(result)


def test_server_down(server: ServerHandle) -> None:
    server.stop()
    result = run(server, "sites")
    assert result.exit_code == 6
    assert one_error_line(result) == (
        f"error: cannot reach the StoreSafe server at {server.address}: is it running?"
    )
    check = run(server, "check")
    assert check.exit_code == 3
    assert check.stdout == (
        f"STORESAFE UNKNOWN - cannot reach the StoreSafe server at {server.address}: "
        "is it running?\n"
    )
    server.start()
    assert run(server, "sites").exit_code == 0


def test_console_script_errors_have_no_traceback(server: ServerHandle) -> None:
    server.stop()
    proc = subprocess.run(
        [STORESAFE, "site", "shop-a"],
        env=server.cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 6
    assert proc.stdout == ""
    assert proc.stderr == (
        f"error: cannot reach the StoreSafe server at {server.address}: is it running?\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sites", "--status", "bad"], "error: unknown status 'bad'"),
        (["runs", "x", "--kind", "restore"], "error: unknown run kind 'restore'"),
        (["runs", "x", "--limit", "0"], "error: a limit of 0 is out of range: use 1 to 1000"),
        (["audit", "--limit", "1001"], "error: a limit of 1001 is out of range: use 1 to 1000"),
    ],
)
def test_bad_values_are_refused_at_the_boundary(
    shared_server: ServerHandle, args: list[str], message: str
) -> None:
    result = run(shared_server, *args)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(message)
