"""`config ...`, `backup-now`, `sync-now` and `commands` through typer, against a fake client."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from cli import config
from common.errors import InvalidArgument, NotFound
from tests.support.cli import FakeConfigClient, invoke

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def client() -> FakeConfigClient:
    return FakeConfigClient()


@pytest.mark.parametrize(
    ("layer", "scope", "target"),
    [
        (["--fleet"], "fleet", ""),
        (["--group", "north"], "group", "north"),
        (["--site", "x"], "site", "x"),
    ],
)
def test_set_sends_one_layer(
    client: FakeConfigClient, layer: list[str], scope: str, target: str
) -> None:
    result = invoke(client, "config", "set", *layer, "backup.schedule=0 21 * * *", "--unset", "a.b")
    assert result.exit_code == 0, result.output
    assert client.calls == [
        ("set_config", (scope, target, {"backup.schedule": "0 21 * * *"}, ["a.b"]))
    ]
    assert "Revision 6 on" in result.stdout
    assert "changed a.b, backup.schedule." in result.stdout


def test_set_json(client: FakeConfigClient) -> None:
    result = invoke(client, "config", "set", "--site", "shop-a", "backup.dir=/srv/b", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "layer": "site:shop-a",
        "revision": 6,
        "changed": ["backup.dir"],
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backup.dir=/x"], "choose exactly one layer: --fleet, --group GROUP or --site SITE"),
        (["--fleet", "--group", "g", "backup.dir=/x"], "choose exactly one layer"),
        (["--fleet", "backup.dir"], "'backup.dir' is not KEY=VALUE: write it like"),
        (["--fleet"], "give at least one KEY=VALUE or --unset KEY"),
        (["--fleet", "a.b=1", "a.b=2"], "the key a.b is given twice"),
        (["--site", "shop a", "a.b=1"], "'shop a' is not a valid site name"),
    ],
)
def test_set_refuses_bad_shapes_before_calling(
    client: FakeConfigClient, args: list[str], message: str
) -> None:
    result = invoke(client, "config", "set", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: " + message)
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""
    assert client.calls == []


def test_set_passes_unknown_keys_and_values_to_the_server_and_shows_its_sentence() -> None:
    refusal = "backup.keep_daily='ten' is not valid: expected a whole number"
    client = FakeConfigClient(error=InvalidArgument(refusal))
    result = invoke(client, "config", "set", "--fleet", "backup.keep_daily=ten")
    assert (result.exit_code, result.stderr) == (2, f"error: {refusal}\n")
    assert client.calls == [("set_config", ("fleet", "", {"backup.keep_daily": "ten"}, []))]


def test_secret_from_piped_stdin_is_sent_and_never_printed(client: FakeConfigClient) -> None:
    result = invoke(
        client,
        "config",
        "set",
        "--site",
        "shop-a",
        "firebird.password=-",
        "--json",
        stdin=SECRET + "\n",
    )
    assert result.exit_code == 0, result.output
    assert client.calls[0][1][2] == {"firebird.password": SECRET}
    assert SECRET not in result.output
    assert json.loads(result.stdout)["changed"] == ["firebird.password"]


def test_dash_is_literal_for_keys_that_are_not_secret(client: FakeConfigClient) -> None:
    result = invoke(client, "config", "set", "--fleet", "firebird.user=-", stdin=SECRET)
    assert result.exit_code == 0, result.output
    assert client.calls[0][1][2] == {"firebird.user": "-"}


def test_empty_secret_on_stdin_is_refused(client: FakeConfigClient) -> None:
    result = invoke(client, "config", "set", "--fleet", "firebird.password=-", stdin="\n")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: no value for firebird.password was given on stdin: "
        "to clear it, use --unset firebird.password\n"
    )
    assert client.calls == []


def test_secret_on_a_terminal_is_prompted_without_echo(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: dict[str, Any] = {}

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def prompt(text: str, **options: Any) -> str:
        asked.update(options, text=text)
        return SECRET

    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr(config.typer, "prompt", prompt)
    assert config.with_secrets({"firebird.password": "-", "backup.dir": "-"}) == {
        "firebird.password": SECRET,
        "backup.dir": "-",
    }
    assert asked["text"] == "New value for firebird.password"
    assert asked["hide_input"] is True
    assert asked["err"] is True  # the prompt stays off stdout (and out of --json)


def test_show_explain_and_json(client: FakeConfigClient) -> None:
    plain = invoke(client, "config", "show", "shop-a")
    assert plain.exit_code == 0, plain.output
    assert "SET BY" not in plain.stdout
    explained = invoke(client, "config", "show", "shop-a", "--explain")
    assert "group:north" in explained.stdout
    assert "********" in explained.stdout
    data = json.loads(invoke(client, "config", "show", "shop-a", "--json").stdout)
    assert data["site"] == "shop-a"
    assert ("get_config", ("shop-a",)) in client.calls


def test_show_unknown_site_exits_3() -> None:
    client = FakeConfigClient(error=NotFound("there is no site named 'nope'"))
    result = invoke(client, "config", "show", "nope")
    assert (result.exit_code, result.stderr) == (3, "error: there is no site named 'nope'\n")


def test_history(client: FakeConfigClient) -> None:
    result = invoke(client, "config", "history", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert client.calls == [("config_history", (5,))]
    rows = json.loads(invoke(client, "config", "history", "--json").stdout)
    assert [r["revision"] for r in rows] == [3, 2]
    assert invoke(client, "config", "history", "--limit", "0").exit_code == 2


def test_rollout_exits_0_with_pending_and_refused(client: FakeConfigClient) -> None:
    result = invoke(client, "config", "rollout", "--group", "north")
    assert result.exit_code == 0, result.output
    assert client.calls == [("config_rollout", ("north",))]
    assert "3 sites: 1 applied, 1 pending, 1 refused" in result.stdout
    assert "backup.dir is not writable" in result.stdout
    rows = json.loads(invoke(client, "config", "rollout", "--json").stdout)
    assert [r["state"] for r in rows] == ["applied", "pending", "refused"]


@pytest.mark.parametrize("kind", ["backup-now", "sync-now"])
def test_remote_commands_are_queued(client: FakeConfigClient, kind: str) -> None:
    result = invoke(client, kind, "shop-a")
    assert result.exit_code == 0, result.output
    assert client.calls == [("send_command", ("shop-a", kind))]
    assert "as command c0ffee00-0000-4000-8000-000000000001." in result.stdout
    assert "storesafe commands shop-a" in result.stdout
    data = json.loads(invoke(client, kind, "shop-a", "--json").stdout)
    assert data == {
        "command_id": "c0ffee00-0000-4000-8000-000000000001",
        "site": "shop-a",
        "kind": kind,
    }


def test_backup_now_on_an_unknown_site_exits_3() -> None:
    client = FakeConfigClient(error=NotFound("there is no site named 'nope'"))
    result = invoke(client, "backup-now", "nope")
    assert (result.exit_code, result.stderr) == (3, "error: there is no site named 'nope'\n")


def test_commands_list(client: FakeConfigClient) -> None:
    result = invoke(client, "commands", "shop-a", "--limit", "7")
    assert result.exit_code == 0, result.output
    assert client.calls == [("list_commands", ("shop-a", 7))]
    assert "backup is not configured" in result.stdout
    rows = json.loads(invoke(client, "commands", "shop-a", "--json").stdout)
    assert [r["state"] for r in rows] == ["rejected", "queued"]


def test_config_set_help_shows_defaults_as_config_set_takes_them() -> None:
    from cli.config import KEY_LIST

    assert "status.stale_after_hours:" in KEY_LIST
    assert "Default: 26." in KEY_LIST and "Default: 26.0" not in KEY_LIST
    assert "Default: false." in KEY_LIST and "Default: False" not in KEY_LIST
