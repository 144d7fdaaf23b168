"""`storesafe config ...`, `backup-now` and `commands` against a real server (TLS, SQLite),
with simulated agents over real gRPC acknowledging revisions and commands."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from storesafe.v1 import agent_pb2
from typer.testing import CliRunner, Result

from cli.main import app
from tests.support.server import ServerHandle
from tests.support.simagent import SimAgent, close_all, enroll_many, next_config

STORESAFE = str(Path(sys.executable).parent / "storesafe")
SECRET = "Fb-s3cret-" + uuid.uuid4().hex[:8]


def run(server: ServerHandle, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin, env=server.cli_env)


def ok_json(server: ServerHandle, *args: str) -> Any:
    result = run(server, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def unique(prefix: str = "shop") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_site(server: ServerHandle, site: str, group: str = "default") -> None:
    result = run(server, "token", "create", "--site", site, "--group", group)
    assert result.exit_code == 0, result.output


def layers(server: ServerHandle, site: str) -> dict[str, tuple[str, str]]:
    entries = ok_json(server, "config", "show", site)["entries"]
    return {e["key"]: (e["value"], e["layer"]) for e in entries}


def test_each_layer_then_show_explain(server: ServerHandle) -> None:
    new_site(server, "shop-a", "north")
    new_site(server, "shop-b", "south")
    steps = [
        ("--fleet", [], ["backup.schedule=0 22 * * *", "backup.keep_weekly=3"]),
        ("--group", ["north"], ["backup.keep_daily=10", "backup.keep_weekly=5"]),
        ("--site", ["shop-a"], ["backup.dir=C:\\Backups", "backup.keep_weekly=9"]),
    ]
    for number, (option, target, assignments) in enumerate(steps, start=1):
        result = run(server, "config", "set", option, *target, *assignments)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"Revision {number} on ")

    mine = layers(server, "shop-a")
    assert mine["backup.schedule"] == ("0 22 * * *", "fleet")
    assert mine["backup.keep_daily"] == ("10", "group:north")
    assert mine["backup.dir"] == ("C:\\Backups", "site:shop-a")
    assert mine["backup.keep_weekly"] == ("9", "site:shop-a")  # site beats group beats fleet
    assert mine["backup.method"] == ("gbak", "default")
    other = layers(server, "shop-b")
    assert other["backup.keep_weekly"] == ("3", "fleet")
    assert other["backup.keep_daily"] == ("7", "default")

    text = run(server, "config", "show", "shop-a", "--explain")
    assert text.exit_code == 0, text.output
    assert re.search(r"^KEY +VALUE +SET BY$", text.stdout, re.MULTILINE)
    assert re.search(r"^backup\.keep_daily +10 +group:north$", text.stdout, re.MULTILINE)
    assert re.search(r"^backup\.keep_weekly +9 +site:shop-a$", text.stdout, re.MULTILINE)
    assert re.search(r"^backup\.method +gbak +default$", text.stdout, re.MULTILINE)
    assert re.search(r"^Desired revision +3$", text.stdout, re.MULTILINE)
    assert "SET BY" not in run(server, "config", "show", "shop-a").stdout

    unset = ok_json(server, "config", "set", "--site", "shop-a", "--unset", "backup.keep_weekly")
    assert unset == {"layer": "site:shop-a", "revision": 4, "changed": ["backup.keep_weekly"]}
    assert layers(server, "shop-a")["backup.keep_weekly"] == ("5", "group:north")
    again = run(server, "config", "set", "--group", "north", "backup.keep_daily=10")
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("Nothing changed on group:north")


@pytest.mark.parametrize(
    ("assignment", "sentence"),
    [
        ("backup.retention=7", "unknown configuration key 'backup.retention'; known: backup.dir"),
        ("backup.keep_daily=ten", "backup.keep_daily='ten' is not valid: expected a whole number"),
        (
            "backup.schedule=0 25 * * *",
            "backup.schedule='0 25 * * *' is not valid: expected a 5-field cron expression",
        ),
        ("images.dir=C:\\RTOwin\\Ima*ges", "images.dir='C:\\\\RTOwin\\\\Ima*ges' is not valid: "),
        (
            "firebird.host=host/99999",
            "firebird.host='host/99999' is not valid: the port must be between 1 and 65535",
        ),
        ("firebird.user=", "firebird.user='' is not valid: may not be empty"),
        (
            "backup.schedule=0 0 31 2 *",
            "backup.schedule='0 0 31 2 *' is not valid: it never fires (no time within 8 years)",
        ),
        (
            "upload.max_run_minutes=0",
            "upload.max_run_minutes='0' is not valid: must be at least 1",
        ),
    ],
)
def test_bad_keys_and_values_get_the_servers_sentence(
    shared_server: ServerHandle, assignment: str, sentence: str
) -> None:
    site = unique()
    new_site(shared_server, site)
    result = run(shared_server, "config", "set", "--site", site, assignment)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: " + sentence), lines[0]
    assert layers(shared_server, site)["backup.dir"] == ("", "default")  # nothing stored


def test_rollout_before_any_change_then_a_change_for_a_group_no_site_is_in(
    server: ServerHandle,
) -> None:
    """One fresh server: before any change a site without an agent shows as `no agent`;
    then a change for a group no site is in is made, with a warning."""
    new_site(server, "shop-new")
    (row,) = ok_json(server, "config", "rollout")
    assert (row["site"], row["state"]) == ("shop-new", "no agent")

    new_site(server, "shop-n", "north")
    typo = run(server, "config", "set", "--group", "nrth", "backup.keep_daily=9")
    assert typo.exit_code == 0, typo.output
    assert typo.stdout.startswith("Revision 1 on group:nrth changed backup.keep_daily.")
    assert typo.stderr == (
        "warning: no site is in group 'nrth': the change applies only to sites that join it "
        "later (see 'storesafe sites' for the groups in use)\n"
    )
    known = run(server, "config", "set", "--group", "north", "backup.keep_daily=9")
    assert known.exit_code == 0 and known.stderr == ""
    fleet = run(server, "config", "set", "--fleet", "backup.keep_daily=8")
    assert fleet.exit_code == 0 and fleet.stderr == ""


def test_a_fleet_change_before_any_site_says_so(server: ServerHandle) -> None:
    result = run(server, "config", "set", "--fleet", "backup.keep_daily=8")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "warning: no site is enrolled yet: the change applies to sites as they enroll\n"
    )


def test_path_with_forbidden_character_names_the_character(shared_server: ServerHandle) -> None:
    site = unique()
    new_site(shared_server, site)
    result = run(shared_server, "config", "set", "--site", site, "backup.dir=C:\\Back|ups")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: backup.dir='C:\\\\Back|ups' is not valid: a path may not contain '|'\n"
    )


def test_secret_from_stdin_is_masked_everywhere(shared_server: ServerHandle) -> None:
    site = unique()
    new_site(shared_server, site)
    piped = subprocess.run(
        [STORESAFE, "config", "set", "--site", site, "firebird.password=-", "firebird.user=backup"],
        input=SECRET + "\n",
        env=shared_server.cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert "changed firebird.password, firebird.user" in piped.stdout
    runner = run(shared_server, "config", "set", "--site", site, "firebird.password=-", stdin="x")
    assert runner.exit_code == 0, runner.output

    outputs = [piped.stdout + piped.stderr, runner.output]
    for args in (
        ["config", "show", site, "--explain"],
        ["config", "show", site, "--json"],
        ["config", "history"],
        ["config", "history", "--json"],
        ["audit", "--json"],
    ):
        result = run(shared_server, *args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert all(SECRET not in text for text in outputs)
    assert SECRET not in shared_server.log_path.read_text(errors="replace")  # type: ignore[union-attr]

    assert layers(shared_server, site)["firebird.password"] == ("********", f"site:{site}")
    entry = next(
        e
        for e in ok_json(shared_server, "config", "show", site)["entries"]
        if e["key"] == "firebird.password"
    )
    assert entry["secret"] is True
    mine = [r for r in ok_json(shared_server, "config", "history") if r["target"] == site]
    assert mine[-1]["changes"] == {"firebird.password": "********", "firebird.user": "backup"}


def test_history_is_newest_first(server: ServerHandle) -> None:
    new_site(server, "shop-a", "north")
    for args in (
        ["--fleet", "backup.keep_daily=8"],
        ["--group", "north", "backup.keep_daily=9"],
        ["--site", "shop-a", "--unset", "backup.keep_daily", "backup.dir=/srv/backups"],
    ):
        assert run(server, "config", "set", *args).exit_code == 0
    rows = ok_json(server, "config", "history")
    assert [(r["revision"], r["layer"]) for r in rows] == [
        (3, "site:shop-a"),
        (2, "group:north"),
        (1, "fleet"),
    ]
    assert rows[2]["changes"] == {"backup.keep_daily": "8"}
    assert rows[0]["author"]
    assert rows[0]["at"].endswith("Z")
    assert [r["revision"] for r in ok_json(server, "config", "history", "--limit", "2")] == [3, 2]
    text = run(server, "config", "history").stdout.splitlines()
    assert text[0].split()[:4] == ["REV", "WHEN", "AUTHOR", "LAYER"]
    assert text[1].startswith("3 ") and "backup.dir=/srv/backups" in text[1]


def test_values_read_as_typed_in_history_show_explain_and_audit(
    shared_server: ServerHandle,
) -> None:
    site = unique()
    new_site(shared_server, site)
    typed = ["status.stale_after_hours=30", "status.offline_after_minutes=7.5"]
    assert run(shared_server, "config", "set", "--site", site, *typed).exit_code == 0
    as_typed = "status.offline_after_minutes=7.5, status.stale_after_hours=30"

    history = run(shared_server, "config", "history", "--limit", "1000").stdout
    assert next(line for line in history.splitlines() if f"site:{site}" in line).endswith(as_typed)
    rows = ok_json(shared_server, "config", "history", "--limit", "1000")
    mine = [r["changes"] for r in rows if r["layer"] == f"site:{site}"]
    assert mine == [{"status.offline_after_minutes": "7.5", "status.stale_after_hours": "30"}]
    explain = run(shared_server, "config", "show", site, "--explain").stdout
    assert re.search(rf"^status\.stale_after_hours +30 +site:{site}$", explain, re.M)
    assert re.search(r"^status\.offline_after_minutes +7.5 +site:", explain, re.M)
    assert re.search(r"^upload\.enabled +false +default$", explain, re.M)
    assert layers(shared_server, site)["status.stale_after_hours"] == ("30", f"site:{site}")
    audit = run(shared_server, "audit", "--limit", "1000").stdout
    line = next(line for line in audit.splitlines() if "config.set" in line and site in line)
    assert line.endswith(as_typed)


async def _rollout(server: ServerHandle) -> tuple[list[Any], str, dict[str, Any]]:
    good, bad = await enroll_many(
        server.address,
        server.ca_path.read_bytes(),
        server.admin_token,
        ["shop-good", "shop-bad"],
        group="north",
    )
    try:
        for agent in (good, bad):
            await agent.check_in()
        new_site(server, "shop-idle", "north")  # no agent: nothing applies the revision
        change = ok_json(server, "config", "set", "--group", "north", "backup.dir=/srv/backups")
        for agent, applied in ((good, True), (bad, False)):
            call = agent.watch()
            update = await next_config(call)
            assert update.revision == change["revision"]
            assert update.values["backup.dir"].text == "/srv/backups"
            await agent.ack(update.revision, applied, "" if applied else "/srv/backups is missing")
            call.cancel()
        text = run(server, "config", "rollout")
        assert text.exit_code == 0, text.output  # pending is not an error
        return ok_json(server, "config", "rollout"), text.stdout, change
    finally:
        await close_all([good.channel, bad.channel])


def test_rollout_shows_applied_refused_and_pending(server: ServerHandle) -> None:
    rows, text, change = asyncio.run(_rollout(server))
    by_site = {r["site"]: r for r in rows}
    revision = change["revision"]
    assert by_site["shop-good"]["state"] == "applied"
    assert by_site["shop-good"]["applied_revision"] == revision
    assert by_site["shop-good"]["refused"] is None
    assert by_site["shop-good"]["last_seen_at"].endswith("Z")
    assert by_site["shop-bad"]["state"] == "refused"
    assert by_site["shop-bad"]["refused"] == "/srv/backups is missing"
    assert by_site["shop-bad"]["desired_revision"] == revision
    assert by_site["shop-idle"]["state"] == "no agent"
    assert re.search(r"^shop-bad +north .*refused .*/srv/backups is missing$", text, re.M)
    assert re.search(r"^shop-idle +north .*no agent", text, re.M)
    assert text.rstrip().endswith("3 sites: 1 refused, 1 applied, 1 no agent")
    shown = ok_json(server, "config", "show", "shop-bad")
    assert shown["refused"] == "/srv/backups is missing"
    assert (shown["desired_revision"], shown["applied_revision"]) == (revision, 0)
    assert ok_json(server, "config", "rollout", "--group", "south") == []


def test_backup_now_on_an_unknown_site_exits_3(shared_server: ServerHandle) -> None:
    result = run(shared_server, "backup-now", unique("nope"))
    assert result.exit_code == 3
    assert result.stderr.startswith("error: there is no site named 'nope-")
    assert len(result.stderr.splitlines()) == 1


async def _next_command(call: AsyncIterator[agent_pb2.AgentDirective]) -> agent_pb2.Command:
    async def read() -> agent_pb2.Command:
        async for directive in call:
            if directive.HasField("command"):
                return directive.command
        raise EOFError("stream ended")

    return await asyncio.wait_for(read(), 10)


async def _command_round_trip(server: ServerHandle, site: str) -> list[Any]:
    [agent] = await enroll_many(
        server.address, server.ca_path.read_bytes(), server.admin_token, [site]
    )
    try:
        sent = run(server, "backup-now", site)
        assert sent.exit_code == 0, sent.output
        command_id = re.search(r"as command (\S+)\.", sent.stdout)[1]  # type: ignore[index]
        assert f"storesafe commands {site}" in sent.stdout
        [queued] = ok_json(server, "commands", site)
        assert (queued["id"], queued["kind"], queued["state"]) == (
            command_id,
            "backup-now",
            "queued",
        )
        assert queued["finished_at"] is None
        assert await _acked(agent, command_id) == command_id
        return ok_json(server, "commands", site)
    finally:
        await close_all([agent.channel])


async def _acked(agent: SimAgent, command_id: str) -> str:
    call = agent.watch()
    try:
        command = await _next_command(call)
        assert command.kind == agent_pb2.COMMAND_KIND_BACKUP_NOW
        await agent.stub.AckCommand(
            agent_pb2.AckCommandRequest(
                command_id=command.id,
                outcome=agent_pb2.COMMAND_OUTCOME_REJECTED,
                message="backup is not configured yet: set firebird.database",
            ),
            metadata=agent.metadata,
            timeout=10,
        )
        return command.id
    finally:
        call.cancel()


def test_backup_now_then_commands_shows_queued_then_rejected(shared_server: ServerHandle) -> None:
    site = unique()
    rows = asyncio.run(_command_round_trip(shared_server, site))
    [done] = rows
    assert done["state"] == "rejected"
    assert done["message"] == "backup is not configured yet: set firebird.database"
    assert done["finished_at"].endswith("Z")
    assert done["delivered_at"].endswith("Z")
    text = run(shared_server, "commands", site)
    assert text.exit_code == 0, text.output
    assert re.search(r"backup-now +rejected .*backup is not configured yet", text.stdout)
    synced = ok_json(shared_server, "sync-now", site)
    assert synced["kind"] == "sync-now"
    states = [r["state"] for r in ok_json(shared_server, "commands", site)]
    assert states in (["queued", "rejected"], ["delivered", "rejected"])  # no agent acks it
