"""Each command end to end through typer, against answers held in memory."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from common.errors import NotFound, PermissionDenied
from tests.support.cli import FakeAdminClient, invoke


def test_sites_table(fake: FakeAdminClient) -> None:
    result = invoke(fake, "sites")
    assert result.exit_code == 0, result.output
    assert "shop-a" in result.stdout
    assert "disk nearly full" in result.stdout
    assert "3 sites: 1 ok, 1 warning, 1 offline" in result.stdout


def test_sites_json_is_a_list_of_rows(fake: FakeAdminClient) -> None:
    rows = json.loads(invoke(fake, "sites", "--json").stdout)
    assert [r["site"] for r in rows] == ["shop-a", "shop-b", "shop-c"]
    assert rows[2]["status"] == "offline"


def test_sites_filters_are_checked_then_sent(fake: FakeAdminClient) -> None:
    result = invoke(fake, "sites", "--status", "Offline", "--group", "default", "--json")
    assert result.exit_code == 0
    assert [r["site"] for r in json.loads(result.stdout)] == ["shop-c"]
    assert fake.calls == [("list_sites", ("offline", "default"))]


def test_bad_status_is_one_sentence_and_no_call(fake: FakeAdminClient) -> None:
    result = invoke(fake, "sites", "--status", "broken")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: unknown status 'broken': use one of ok, warning, stale, failing, never, offline\n"
    )
    assert result.stdout == ""
    assert fake.calls == []


def test_site_detail(fake: FakeAdminClient) -> None:
    result = invoke(fake, "site", "shop-a")
    assert result.exit_code == 0, result.output
    assert "Windows 10" in result.stdout
    assert "verified" in result.stdout
    data = json.loads(invoke(fake, "site", "shop-a", "--json").stdout)
    assert data["site"] == "shop-a"
    assert data["last_backup"]["details"]["verification"] == "passed"


def test_server_errors_become_one_line_with_the_error_exit_code() -> None:
    client = FakeAdminClient(error=NotFound("no site named 'nope'"))
    result = invoke(client, "site", "nope")
    assert result.exit_code == 3
    assert result.stderr == "error: no site named 'nope'\n"
    assert "Traceback" not in result.output
    result = invoke(FakeAdminClient(error=PermissionDenied("not allowed")), "audit")
    assert (result.exit_code, result.stderr) == (4, "error: not allowed\n")


def test_runs(fake: FakeAdminClient) -> None:
    result = invoke(fake, "runs", "shop-a", "--kind", "backup", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert "verified" in result.stdout
    assert "shop-20261126.fbk.zst" in result.stdout
    assert fake.calls == [("list_runs", ("shop-a", "backup", 5))]
    rows = json.loads(invoke(fake, "runs", "shop-a", "--json").stdout)
    assert rows[0]["details"]["method"] == "gbak"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "restore"], "error: unknown run kind 'restore'"),
        (["--limit", "0"], "error: a limit of 0 is out of range: use 1 to 1000"),
        (["--limit", "5000"], "error: a limit of 5000 is out of range: use 1 to 1000"),
    ],
)
def test_runs_refuses_bad_values(fake: FakeAdminClient, args: list[str], message: str) -> None:
    result = invoke(fake, "runs", "shop-a", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert fake.calls == []


def test_audit(fake: FakeAdminClient) -> None:
    result = invoke(fake, "audit", "--limit", "10")
    assert result.exit_code == 0, result.output
    assert "token.create" in result.stdout
    rows = json.loads(invoke(fake, "audit", "--json").stdout)
    assert rows == [
        {
            "at": "2026-11-26T22:00:00Z",
            "actor": "admin",
            "action": "token.create",
            "target": "shop-a",
            "details": "group=default",
        }
    ]


def test_token_create_text_shows_the_token_and_the_enroll_command(fake: FakeAdminClient) -> None:
    result = invoke(fake, "token", "create", "--site", "shop-a", "--expires", "7d")
    assert result.exit_code == 0, result.output
    assert "    tok-123\n" in result.stdout
    assert "valid for 7d (until 2026-12-03 22:00 UTC)" in result.stdout
    assert "storesafe-agent enroll --server 127.0.0.1:7443 --site shop-a --token tok-123" in (
        result.stdout
    )
    assert fake.calls == [("create_token", ("shop-a", "", dt.timedelta(days=7)))]


def test_token_create_json(fake: FakeAdminClient) -> None:
    result = invoke(fake, "token", "create", "--site", "shop-a", "--group", "north", "--json")
    data = json.loads(result.stdout)
    assert data == {"token": "tok-123", "expires_at": "2026-11-27T22:00:00Z", "site": "shop-a"}
    assert fake.calls[0][1][1] == "north"


def test_token_create_refuses_a_bad_duration(fake: FakeAdminClient) -> None:
    result = invoke(fake, "token", "create", "--site", "shop-a", "--expires", "soon")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: 'soon' is not a duration: use a number and a unit, like 30m, 24h or 7d\n"
    )
    assert fake.calls == []


def test_revoke(fake: FakeAdminClient) -> None:
    result = invoke(fake, "revoke", "shop-a")
    assert result.exit_code == 0
    assert "Revoked 1 agent credential of site shop-a;" in result.stdout
    assert json.loads(invoke(fake, "revoke", "shop-a", "--json").stdout) == {
        "site": "shop-a",
        "revoked": 1,
    }


def test_missing_settings_are_named() -> None:
    env = {"STORESAFE_SERVER": None, "STORESAFE_TOKEN": None, "STORESAFE_CA": None}
    result = CliRunner().invoke(app, ["sites"], env=env)
    assert result.exit_code == 2
    assert (
        result.stderr == "error: no server given: pass --server HOST:PORT or set STORESAFE_SERVER\n"
    )
    result = CliRunner().invoke(app, ["--server", "127.0.0.1:1", "sites"], env=env)
    assert result.stderr == "error: no admin token given: pass --token or set STORESAFE_TOKEN\n"


def test_insecure_only_on_loopback() -> None:
    args = ["--server", "backup.example.com:7443", "--token", "t", "--insecure", "sites"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --insecure is allowed only for loopback addresses, not 'backup.example.com'\n"
    )


def test_a_host_name_that_does_not_resolve_is_one_sentence() -> None:
    env = {"STORESAFE_SERVER": "no-such-host.invalid:7443", "STORESAFE_TOKEN": "t"}
    result = CliRunner().invoke(app, ["sites"], env=env)
    assert result.exit_code == 6
    assert result.stderr == (
        "error: cannot resolve the host name 'no-such-host.invalid': "
        "check --server or STORESAFE_SERVER\n"
    )


def test_help_works_without_settings() -> None:
    result = CliRunner().invoke(app, ["sites", "--help"], env={"STORESAFE_SERVER": None})
    assert result.exit_code == 0
    assert "List every site" in result.stdout


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("storesafe ")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["token", "create"],
            "error: missing option '--site' (see 'storesafe token create --help')",
        ),
        (["bogus"], "error: no such command 'bogus' (see 'storesafe --help')"),
        (["sites", "--bogus"], "error: no such option: --bogus (see 'storesafe sites --help')"),
        (["--timeout", "0", "sites"], "error: invalid value for '--timeout'"),
        (["runs", "x", "--limit", "many"], "error: invalid value for '--limit'"),
    ],
)
def test_usage_errors_are_one_line_too(args: list[str], line: str) -> None:
    result = CliRunner().invoke(app, args, prog_name="storesafe")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(line)


def test_no_arguments_shows_help() -> None:
    result = CliRunner().invoke(app, [], prog_name="storesafe")
    assert "Usage: storesafe" in result.output
    assert "sites" in result.output
