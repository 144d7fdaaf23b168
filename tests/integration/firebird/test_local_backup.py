"""A local `storesafe-agent backup-now` while `storesafe-agent run` runs on the same state dir:
its report reaches the server at once, not at the running agent's next check-in."""

from __future__ import annotations

from pathlib import Path

import pytest
from storesafe.v1 import admin_pb2, types_pb2

from common.firebird.connection import FirebirdTarget
from tests.support.agent import AgentProcess, agent_cli, enroll_agent, wait_for
from tests.support.server import ServerHandle, rollout, set_config

pytestmark = pytest.mark.firebird

CHECKIN_INTERVAL = 3600.0
"""Far longer than the test: a report that waited for a check-in would never arrive in it."""


def backup_runs(server: ServerHandle, site: str) -> list[admin_pb2.Run]:
    request = admin_pb2.ListRunsRequest(site=site, kind=types_pb2.RUN_KIND_BACKUP)
    return list(server.admin_stub().ListRuns(request, metadata=server.admin_metadata).runs)


def test_a_local_backup_is_reported_at_once_while_the_agent_runs(
    shared_server: ServerHandle, shop: FirebirdTarget, backup_dir: Path, tmp_path: Path
) -> None:
    server = shared_server  # its own site; no server restart
    site = "local-shop"
    state = tmp_path / "agent"
    assert enroll_agent(server, state, site).returncode == 0
    agent = AgentProcess.start(state, interval=CHECKIN_INTERVAL)
    try:
        wait_for(lambda: agent.status()["last_checkin_at"] is not None, 30, "the first check-in")
        rev = set_config(
            server,
            admin_pb2.CONFIG_SCOPE_SITE,
            site,
            firebird__database=shop.database,
            firebird__password=shop.password,
            backup__dir=str(backup_dir),
        ).revision
        wait_for(lambda: rollout(server)[site].applied_revision == rev, 30, "config applied")

        done = agent_cli("backup-now", "--state-dir", str(state), timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith("Reported to the server."), done.stdout

        wait_for(lambda: bool(backup_runs(server, site)), 30, "the local backup's report")
        [run] = backup_runs(server, site)
        assert run.report.trigger == "local"
        assert run.report.backup.verification == types_pb2.VERIFICATION_PASSED
        assert agent.status()["outbox_pending"] == 0
        assert agent.alive()
    finally:
        agent.stop()
