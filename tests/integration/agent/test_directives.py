"""A running agent applies pushed configuration and answers remote commands."""

from __future__ import annotations

from pathlib import Path

from storesafe.v1 import admin_pb2, agent_pb2

from tests.support.agent import AgentProcess, enroll_agent, wait_for
from tests.support.server import ServerHandle, rollout, set_config


def test_config_push_is_applied_and_a_refusal_is_reported(
    shared_server: ServerHandle, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    assert enroll_agent(shared_server, state, "shop-config").returncode == 0
    agent = AgentProcess.start(state)
    try:
        wait_for(lambda: agent.status()["last_result"] == "ok", what="a check-in")
        good = set_config(
            shared_server, admin_pb2.CONFIG_SCOPE_SITE, "shop-config", backup__keep_daily="9"
        ).revision
        wait_for(
            lambda: rollout(shared_server)["shop-config"].applied_revision == good,
            what="the agent to apply the revision",
        )
        wait_for(lambda: agent.status()["config_revision"] == good, what="check-in revision")
        # A folder that does not exist on this PC: the agent refuses and says why.
        bad = set_config(
            shared_server, admin_pb2.CONFIG_SCOPE_SITE, "shop-config", images__dir="/no/such/images"
        ).revision
        wait_for(
            lambda: rollout(shared_server)["shop-config"].state == "refused",
            what="the refusal",
        )
        row = rollout(shared_server)["shop-config"]
        assert (row.desired_revision, row.applied_revision) == (bad, good)
        assert "images.dir" in row.refused
    finally:
        assert agent.stop() == 0


def test_a_remote_command_is_answered_honestly(shared_server: ServerHandle, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    assert enroll_agent(shared_server, state, "shop-command").returncode == 0
    agent = AgentProcess.start(state)
    stub = shared_server.admin_stub()
    try:
        wait_for(lambda: agent.status()["last_result"] == "ok", what="a check-in")
        sent = stub.SendCommand(
            admin_pb2.SendCommandRequest(
                site="shop-command", kind=agent_pb2.COMMAND_KIND_BACKUP_NOW
            ),
            metadata=shared_server.admin_metadata,
            timeout=10,
        )

        def command() -> admin_pb2.CommandState:
            listed = stub.ListCommands(
                admin_pb2.ListCommandsRequest(site="shop-command"),
                metadata=shared_server.admin_metadata,
                timeout=10,
            )
            return next(c for c in listed.commands if c.id == sent.command_id)

        wait_for(lambda: command().state == "rejected", what="the command's outcome")
        assert command().message == "not run on this agent: firebird.database is not configured"
    finally:
        assert agent.stop() == 0
