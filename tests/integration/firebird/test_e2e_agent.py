"""The product end to end: config pushed to a real agent, a remote backup-now, a verified
backup reported to the server, the site turning ok; then a failing backup turns it failing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from storesafe.v1 import admin_pb2, agent_pb2, types_pb2
from typer.testing import CliRunner

from agent.firebird.files import list_backups
from agent.firebird.jobs import BackupSettings, run_backup_job
from agent.firebird.retention import RetentionPolicy
from cli.main import app
from common.clock import SystemClock
from common.firebird.connection import FirebirdTarget
from tests.support.agent import AgentProcess, enroll_agent, wait_for
from tests.support.damage import damage
from tests.support.server import ServerHandle, rollout, set_config

pytestmark = pytest.mark.firebird


def command_done(server: ServerHandle, site: str, command_id: str) -> Callable[[], bool]:
    def check() -> bool:
        cmds = (
            server.admin_stub()
            .ListCommands(admin_pb2.ListCommandsRequest(site=site), metadata=server.admin_metadata)
            .commands
        )
        return any(c.id == command_id and c.finished_at.seconds for c in cmds)

    return check


def pushed_and_applied(server: ServerHandle, site: str, before: int) -> bool:
    """The site's agent applied a revision newer than `before`, the one it should run."""
    row = rollout(server)[site]
    return row.desired_revision > before and row.applied_revision == row.desired_revision


def backup_now(server: ServerHandle, site: str) -> admin_pb2.CommandState:
    sent = server.admin_stub().SendCommand(
        admin_pb2.SendCommandRequest(site=site, kind=agent_pb2.COMMAND_KIND_BACKUP_NOW),
        metadata=server.admin_metadata,
    )
    wait_for(command_done(server, site, sent.command_id), 120, "the backup command to finish")
    cmds = (
        server.admin_stub()
        .ListCommands(admin_pb2.ListCommandsRequest(site=site), metadata=server.admin_metadata)
        .commands
    )
    return next(c for c in cmds if c.id == sent.command_id)


def site_summary(server: ServerHandle, site: str) -> admin_pb2.SiteSummary:
    return (
        server.admin_stub()
        .GetSite(admin_pb2.GetSiteRequest(site=site), metadata=server.admin_metadata)
        .summary
    )


def test_pushed_config_remote_backup_verified_then_a_failing_one(
    shared_server: ServerHandle, shop: FirebirdTarget, backup_dir: Path, tmp_path: Path
) -> None:
    server = shared_server  # its own site; no server restart
    site = "fb-shop"
    state = tmp_path / "agent"
    assert enroll_agent(server, state, site).returncode == 0
    agent = AgentProcess.start(state, interval=0.5)
    try:
        rev = set_config(
            server,
            admin_pb2.CONFIG_SCOPE_SITE,
            site,
            firebird__database=shop.database,
            firebird__password=shop.password,
            backup__dir=str(backup_dir),
        ).revision
        wait_for(lambda: agent.status().get("config_revision") == rev, 30, "config applied")
        assert site_summary(server, site).status == types_pb2.SITE_STATUS_NEVER

        done = backup_now(server, site)
        assert done.state == "succeeded", done.message
        wait_for(
            lambda: site_summary(server, site).status == types_pb2.SITE_STATUS_OK,
            30,
            "the site to turn ok",
        )
        runs = (
            server.admin_stub()
            .ListRuns(
                admin_pb2.ListRunsRequest(site=site, kind=types_pb2.RUN_KIND_BACKUP),
                metadata=server.admin_metadata,
            )
            .runs
        )
        report = runs[0].report
        assert report.trigger == "remote"
        assert report.backup.verification == types_pb2.VERIFICATION_PASSED
        assert report.backup.checksum.startswith("sha256:")
        assert report.backup.file == Path(report.backup.file).name  # a bare name
        assert (backup_dir / report.backup.file).exists()
        assert report.backup.table_counts and report.backup.size_compressed > 0
        assert shop.password not in server.log() and shop.password not in agent.log()

        before = rollout(server)[site].desired_revision
        set_config(server, admin_pb2.CONFIG_SCOPE_SITE, site, firebird__password="wrong-password")
        wait_for(lambda: pushed_and_applied(server, site, before), 30, "the push to land")
        failed = backup_now(server, site)
        assert failed.state == "failed"
        wait_for(
            lambda: site_summary(server, site).status == types_pb2.SITE_STATUS_FAILING,
            30,
            "the site to turn failing",
        )
        problems = list(site_summary(server, site).problems)
        assert any(p.startswith("latest backup failed:") for p in problems), problems
        assert agent.alive()
    finally:
        agent.stop()


def cli_json(server: ServerHandle, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--json"], env=server.cli_env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def backup_file_states(server: ServerHandle, site: str) -> list[tuple[str, str | None]]:
    """(file name, file_state) of the site's backup runs, newest first, from `runs --json`."""
    rows = cli_json(server, "runs", site, "--kind", "backup")
    return [(Path(r["details"]["file"]).name, r["file_state"]) for r in rows]


def test_pruned_and_rotten_backups_show_in_runs_and_keep_the_site_from_ok(
    shared_server: ServerHandle, shop: FirebirdTarget, backup_dir: Path, tmp_path: Path
) -> None:
    server = shared_server  # its own site; no server restart
    site = "fb-rot"
    state = tmp_path / "agent"
    assert enroll_agent(server, state, site).returncode == 0
    agent = AgentProcess.start(state, interval=0.5)
    try:
        rev = set_config(
            server,
            admin_pb2.CONFIG_SCOPE_SITE,
            site,
            firebird__database=shop.database,
            firebird__password=shop.password,
            backup__dir=str(backup_dir),
            backup__keep_daily="1",
            backup__keep_weekly="0",
            backup__keep_monthly="0",
        ).revision
        wait_for(lambda: agent.status().get("config_revision") == rev, 30, "config applied")
        assert backup_now(server, site).state == "succeeded"
        assert backup_now(server, site).state == "succeeded"
        wait_for(
            lambda: [s for _, s in backup_file_states(server, site)] == ["kept", "pruned"],
            30,
            "the first backup of the day to show as pruned",
        )
        assert "retention deleted" in agent.log() and "a newer good backup of" in agent.log()
        newest = backup_file_states(server, site)[0][0]
        damage(backup_dir / newest)

        rev = set_config(
            server, admin_pb2.CONFIG_SCOPE_SITE, site, backup__recheck_schedule="* * * * *"
        ).revision
        wait_for(lambda: agent.status().get("config_revision") == rev, 30, "config applied")
        wait_for(
            lambda: backup_file_states(server, site)[0] == (newest, "damaged"),
            150,
            "the scheduled re-check to report the rotten backup",
        )
        summary = site_summary(server, site)
        assert summary.status == types_pb2.SITE_STATUS_WARNING, list(summary.problems)
        assert any(f"newest good backup {newest} is damaged" in p for p in summary.problems)
        checks = cli_json(server, "runs", site, "--kind", "file-check")
        assert checks[0]["outcome"] == "failed"
        assert checks[0]["details"]["files_damaged"] == 1
        assert (backup_dir / f"{newest}.bad").exists() and not (backup_dir / newest).exists()
        local = agent.status_cli()  # the agent's own status says so too
        assert local["backups_bad"] == [f"{newest}.bad"]
        assert local["newest_good_backup"] is None and local["backups_good"] == 0
        assert agent.alive()
    finally:
        agent.stop()


def test_a_backup_left_unverified_is_verified_and_reported_when_the_agent_starts(
    shared_server: ServerHandle, shop: FirebirdTarget, backup_dir: Path, tmp_path: Path
) -> None:
    server = shared_server  # its own site; no server restart
    site = "fb-resume"
    state = tmp_path / "agent"
    assert enroll_agent(server, state, site).returncode == 0
    agent = AgentProcess.start(state, interval=0.5)
    try:
        rev = set_config(
            server,
            admin_pb2.CONFIG_SCOPE_SITE,
            site,
            firebird__database=shop.database,
            firebird__password=shop.password,
            backup__dir=str(backup_dir),
        ).revision
        wait_for(lambda: agent.status().get("config_revision") == rev, 30, "config applied")
    finally:
        agent.stop()
    # what a kill during verification leaves: a complete backup, never verified or reported
    unverified = BackupSettings(backup_dir, verify=False, retention=RetentionPolicy(0, 0, 0))
    assert run_backup_job(shop, unverified, clock=SystemClock()).succeeded
    [pending] = list_backups(backup_dir)
    assert pending.file.endswith(".unverified")

    agent = AgentProcess.start(state, interval=0.5)
    try:
        wait_for(lambda: bool(cli_json(server, "runs", site)), 60, "the resumed run's report")
        [row] = cli_json(server, "runs", site)
        assert (row["kind"], row["trigger"], row["outcome"]) == ("backup", "resume", "succeeded")
        assert row["details"]["verification"] == "passed"
        assert row["file_state"] == "kept"
        [kept] = list_backups(backup_dir)
        assert Path(row["details"]["file"]).name == kept.file
        assert kept.status.value == "good" and (backup_dir / kept.file).is_file()
        wait_for(
            lambda: site_summary(server, site).status == types_pb2.SITE_STATUS_OK,
            30,
            "the site to turn ok",
        )
    finally:
        agent.stop()
