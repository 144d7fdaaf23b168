"""Admin tokens managed end to end: offline (`storesafe-server admin-token`) and over the
admin API (`storesafe admin-token`), against a real server on SQLite."""

from __future__ import annotations

import getpass
import json
import subprocess

from typer.testing import CliRunner, Result

from cli.main import app
from tests.integration.cli.test_cli import one_error_line
from tests.support.server import BIN, ServerHandle

SERVER = str(BIN / "storesafe-server")


def offline(h: ServerHandle, *args: str) -> subprocess.CompletedProcess[str]:
    """`storesafe-server admin-token ...` on the server's data dir (the server may run)."""
    return subprocess.run(
        [SERVER, "admin-token", *args, "--data-dir", str(h.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def cli(h: ServerHandle, *args: str, token: str | None = None) -> Result:
    env = {**h.cli_env, "STORESAFE_TOKEN": token or h.admin_token}
    return CliRunner().invoke(app, list(args), env=env)


def secrets_in(text: str, *tokens: str) -> list[str]:
    """Which of `tokens` (or the secret part of them) appear in `text`."""
    return [t for t in tokens if t in text or t.rsplit("_", 1)[-1] in text]


def test_offline_admin_tokens_are_unique_listed_revoked_and_audited(server: ServerHandle) -> None:
    made = offline(server, "create", "--name", "alice", "--json")
    assert made.returncode == 0, made.stderr
    alice = json.loads(made.stdout)["admin_token"]

    dup = offline(server, "create", "--name", "alice")
    assert dup.returncode == 3
    assert dup.stderr.strip().splitlines() == [
        "error: an active admin token named 'alice' exists already; choose another name "
        "(or revoke that one first)"
    ]
    bad = offline(server, "create", "--name", "bad name")
    assert bad.returncode == 2 and "not a valid admin token name" in bad.stderr

    listed = offline(server, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["active"]) for r in rows] == [("admin", True), ("alice", True)]
    assert set(rows[0]) == {
        "name",
        "id",
        "active",
        "created_at",
        "created_by",
        "revoked_at",
        "revoked_by",
    }
    me = f"local:{getpass.getuser()}"
    assert rows[1]["created_by"] == me and rows[1]["revoked_at"] is None
    text = offline(server, "list")
    assert text.returncode == 0 and "alice" in text.stdout and "active" in text.stdout
    assert secrets_in(listed.stdout + text.stdout, alice, server.admin_token) == []

    # alice works until revoked, then is refused at once
    assert cli(server, "audit", token=alice).exit_code == 0
    revoked = offline(server, "revoke", "alice")
    assert revoked.returncode == 0, revoked.stderr
    assert "Revoked admin token alice" in revoked.stdout
    refused = cli(server, "sites", token=alice)
    assert refused.exit_code == 4
    assert "the admin token was refused" in one_error_line(refused)
    again = offline(server, "revoke", "alice")
    assert again.returncode == 3
    assert "no active admin token named 'alice'" in again.stderr
    # the name is free again once revoked
    assert offline(server, "create", "--name", "alice").returncode == 0

    audit = json.loads(cli(server, "audit", "--json").stdout)
    mine = [(e["actor"], e["action"], e["target"]) for e in audit]
    assert (me, "admin-token.create", "admin") in mine  # `init` made the first one
    assert mine.count((me, "admin-token.create", "alice")) == 2
    assert (me, "admin-token.revoke", "alice") in mine
    assert secrets_in(json.dumps(audit), alice, server.admin_token) == []
    assert secrets_in(server.log(), alice, server.admin_token) == []


def test_admin_tokens_over_the_api_and_the_last_one_is_never_revoked(
    server: ServerHandle,
) -> None:
    bob = json.loads(offline(server, "create", "--name", "bob", "--json").stdout)["admin_token"]

    listed = cli(server, "admin-token", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["active"]) for r in rows] == [("admin", True), ("bob", True)]
    assert all(r["created_at"].endswith("Z") for r in rows)
    table = cli(server, "admin-token", "list")
    assert table.exit_code == 0 and "bob" in table.stdout
    assert secrets_in(listed.stdout + table.stdout, bob, server.admin_token) == []

    unknown = cli(server, "admin-token", "revoke", "nobody")
    assert unknown.exit_code == 3
    assert one_error_line(unknown) == "error: there is no active admin token named 'nobody'"

    # bob revokes the first token; then bob is the last one and cannot revoke himself
    done = cli(server, "admin-token", "revoke", "admin", "--json", token=bob)
    assert done.exit_code == 0, done.output
    shown = json.loads(done.stdout)
    assert shown["name"] == "admin" and shown["active"] is False
    assert shown["revoked_by"] == "bob" and shown["revoked_at"].endswith("Z")
    assert cli(server, "sites").exit_code == 4  # the revoked token is refused at once
    last = cli(server, "admin-token", "revoke", "bob", token=bob)
    assert last.exit_code == 5
    assert one_error_line(last) == (
        "error: 'bob' is the last active admin token: revoking it would lock everyone out; "
        "create another one first (storesafe-server admin-token create)"
    )
    assert offline(server, "revoke", "bob").returncode == 5  # offline too
    assert cli(server, "sites", token=bob).exit_code == 0

    audit = json.loads(cli(server, "audit", "--json", token=bob).stdout)
    assert ("bob", "admin-token.revoke", "admin") in [
        (e["actor"], e["action"], e["target"]) for e in audit
    ]
    assert secrets_in(server.log(), bob, server.admin_token) == []
