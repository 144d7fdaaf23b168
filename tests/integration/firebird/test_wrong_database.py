"""The wrong-database guard with a real agent and real Firebird: a site pointed at a demo
copy of the shop database turns warning until a technician accepts the change."""

from __future__ import annotations

from pathlib import Path

import pytest
from storesafe.v1 import admin_pb2, types_pb2
from typer.testing import CliRunner

from cli.main import app
from common.firebird.connection import FirebirdTarget
from tests.integration.firebird.conftest import new_target
from tests.integration.firebird.test_e2e_agent import backup_now, site_summary
from tests.support.agent import AgentProcess, enroll_agent, wait_for
from tests.support.server import ServerHandle, set_config

pytestmark = pytest.mark.firebird


def test_a_backup_of_a_demo_database_is_a_warning_until_accepted(
    shared_server: ServerHandle,
    shop: FirebirdTarget,
    fb_root: Path,
    fb_password: str,
    backup_dir: Path,
    tmp_path: Path,
) -> None:
    server = shared_server  # its own site; no server restart
    demo = new_target(fb_root, fb_password, "demo-copy", accounts=20)
    site = "fb-wrongdb"
    state = tmp_path / "agent"
    assert enroll_agent(server, state, site).returncode == 0
    agent = AgentProcess.start(state, interval=0.5)

    def point_at(database: str, **more: str) -> None:
        rev = set_config(
            server, admin_pb2.CONFIG_SCOPE_SITE, site, firebird__database=database, **more
        ).revision
        wait_for(lambda: agent.status().get("config_revision") == rev, 30, "config applied")

    try:
        point_at(shop.database, firebird__password=fb_password, backup__dir=str(backup_dir))
        assert backup_now(server, site).state == "succeeded"
        wait_for(lambda: site_summary(server, site).status == types_pb2.SITE_STATUS_OK, 30, "ok")

        point_at(demo.database)
        done = backup_now(server, site)
        assert done.state == "succeeded", done.message  # a good backup, of the wrong database
        wait_for(
            lambda: site_summary(server, site).status == types_pb2.SITE_STATUS_WARNING,
            30,
            "the site to turn warning",
        )
        (problem,) = site_summary(server, site).problems
        assert f"from database {demo.database} (was {shop.database})" in problem
        assert "ACCOUNTS 300 -> 20 rows" in problem

        accepted = CliRunner().invoke(app, ["accept-change", site], env=server.cli_env)
        assert accepted.exit_code == 0, accepted.output
        assert site_summary(server, site).status == types_pb2.SITE_STATUS_OK
    finally:
        agent.stop()
