"""Real agent processes against a real server: enrollment, outages, restarts, replays."""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
import time
from pathlib import Path

import pytest
from storesafe.v1 import admin_pb2

from agent.outbox import Outbox
from agent.settings import StateDir
from agent.transport.link import ServerLink
from tests.support.agent import AgentProcess, agent_cli, enroll_agent, enroll_with_token, wait_for
from tests.support.agentfakes import report
from tests.support.server import ServerHandle, create_enrollment_token


def stored_run_ids(server: ServerHandle, site: str) -> list[str]:
    runs = server.admin_stub().ListRuns(
        admin_pb2.ListRunsRequest(site=site, limit=1000),
        metadata=server.admin_metadata,
        timeout=10,
    )
    return sorted(r.report.id for r in runs.runs)


def queue(state_dir: Path, *numbers: int) -> None:
    """Record reports the way a job does: into the outbox (the agent may be running).

    Report ids are `<site>-<n>`, unique on a shared server.
    """
    state = StateDir(state_dir)
    site = state.load_credentials().site
    with Outbox(state.outbox_path) as box:
        for n in numbers:
            box.put(report(n, id=f"{site}-{n}"))


def assert_one_line_error(done: object) -> str:
    stderr: str = done.stderr  # type: ignore[attr-defined]
    assert done.returncode != 0  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_enroll_then_run_checks_in_and_delivers(
    shared_server: ServerHandle, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    done = enroll_agent(shared_server, state, "shop-ok")
    assert done.returncode == 0, done.stderr
    assert "enrolled as agent" in done.stdout
    queue(state, 1, 2)
    agent = AgentProcess.start(state)
    try:
        wait_for(lambda: agent.status()["last_result"] == "ok", what="a check-in")
        wait_for(lambda: agent.status()["outbox_pending"] == 0, what="delivery")
        shown = agent.status_cli()
        assert (shown["site"], shown["last_result"], shown["outbox_pending"]) == (
            "shop-ok",
            "ok",
            0,
        )
        assert shown["last_checkin_at"].endswith("Z")
        assert (shown["running"], shown["pid"]) == (True, agent.proc.pid)
        second = agent_cli("run", "--state-dir", str(state))
        assert "already running" in assert_one_line_error(second)
        assert stored_run_ids(shared_server, "shop-ok") == ["shop-ok-1", "shop-ok-2"]
        site = shared_server.admin_stub().GetSite(
            admin_pb2.GetSiteRequest(site="shop-ok"),
            metadata=shared_server.admin_metadata,
            timeout=10,
        )
        assert site.summary.HasField("last_seen_at")
        assert [d.label for d in site.disks] == ["state"]
    finally:
        assert agent.stop() == 0
    assert "Traceback" not in agent.log()
    assert StateDir(state).load_credentials().credential not in agent.log()
    kept = (state / "agent.log").read_text()  # the rotating log in the state dir
    assert "agent running for site shop-ok" in kept
    assert StateDir(state).load_credentials().credential not in kept


def test_bad_enrollment_tokens_are_one_line_errors(
    shared_server: ServerHandle, tmp_path: Path
) -> None:
    def enroll(token: str, site: str, state: str) -> object:
        return enroll_with_token(shared_server, token, site, tmp_path / state)

    wrong = assert_one_line_error(enroll(secrets.token_urlsafe(24), "shop-t", "wrong"))
    assert "token" in wrong

    token = create_enrollment_token(shared_server, "shop-t")
    assert enroll(token, "shop-t", "first").returncode == 0  # type: ignore[attr-defined]
    reused = assert_one_line_error(enroll(token, "shop-t", "second"))
    assert "token" in reused

    other = create_enrollment_token(shared_server, "shop-u")
    assert "shop-u" in assert_one_line_error(enroll(other, "shop-t", "other-site"))

    expiring = create_enrollment_token(shared_server, "shop-t", ttl_seconds=1)
    time.sleep(2.2)
    assert "token" in assert_one_line_error(enroll(expiring, "shop-t", "expired"))

    for name in ("wrong", "second", "other-site", "expired"):
        assert not StateDir(tmp_path / name).is_enrolled()


def test_enroll_without_the_ca_explains_itself(shared_server: ServerHandle, tmp_path: Path) -> None:
    token = create_enrollment_token(shared_server, "shop-ca")
    done = enroll_with_token(shared_server, token, "shop-ca", tmp_path / "a", ca=False)
    assert "--ca" in assert_one_line_error(done)
    # The failed handshake did not spend the token.
    assert enroll_with_token(shared_server, token, "shop-ca", tmp_path / "b").returncode == 0


def test_agent_started_while_the_server_is_down_queues_then_delivers(
    server: ServerHandle, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    assert enroll_agent(server, state, "shop-outage").returncode == 0
    server.stop()
    agent = AgentProcess.start(state)
    try:
        queue(state, 1, 2, 3)
        wait_for(lambda: agent.status()["last_result"] == "unavailable", what="a failed check-in")
        first = agent.status()["last_attempt_at"]
        wait_for(lambda: agent.status()["last_attempt_at"] != first, what="a retried check-in")
        assert agent.alive(), agent.log()
        assert agent.status()["outbox_pending"] == 3
        server.start()
        wait_for(lambda: agent.status()["outbox_pending"] == 0, what="delivery after the outage")
        assert stored_run_ids(server, "shop-outage") == [
            "shop-outage-1",
            "shop-outage-2",
            "shop-outage-3",
        ]
        assert agent.status()["last_result"] == "ok"
    finally:
        assert agent.stop() == 0
    log = agent.log()
    assert log.count("check-in failed: cannot reach") == 1, log
    assert "checked in with" in log


def test_server_restart_while_the_agent_runs(server: ServerHandle, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    assert enroll_agent(server, state, "shop-restart").returncode == 0
    agent = AgentProcess.start(state)
    try:
        wait_for(lambda: agent.status()["last_result"] == "ok", what="a check-in")
        queue(state, 1)
        wait_for(lambda: agent.status()["outbox_pending"] == 0, what="the first delivery")
        server.restart()
        queue(state, 2)
        wait_for(lambda: agent.status()["outbox_pending"] == 0, what="delivery after restart")
        before = agent.status()["last_checkin_at"]
        wait_for(lambda: agent.status()["last_checkin_at"] != before, what="further check-ins")
        assert agent.alive()
        assert stored_run_ids(server, "shop-restart") == ["shop-restart-1", "shop-restart-2"]
    finally:
        assert agent.stop() == 0


def test_a_report_replayed_twice_is_stored_once(
    shared_server: ServerHandle, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    assert enroll_agent(shared_server, state, "shop-replay").returncode == 0
    creds = StateDir(state).load_credentials()
    once = report(1, id="replayed-report")

    async def deliver_twice() -> tuple[bool, bool]:
        async with ServerLink.for_agent(StateDir(state), creds) as link:
            return await link.report_run(once), await link.report_run(once)

    assert asyncio.run(deliver_twice()) == (False, True)
    # The outbox replays it too (a crash after the ack, before the removal): still one row.
    queue(state, 1)
    with Outbox(StateDir(state).outbox_path) as box:
        box.put(once)
    agent = AgentProcess.start(state)
    try:
        wait_for(lambda: agent.status()["outbox_pending"] == 0, what="delivery")
    finally:
        agent.stop()
    assert stored_run_ids(shared_server, "shop-replay") == ["replayed-report", "shop-replay-1"]
    assert "the server had it already" in agent.log()


def test_a_revoked_agent_says_to_re_enroll_and_recovers_after_it(
    shared_server: ServerHandle, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    assert enroll_agent(shared_server, state, "shop-revoked").returncode == 0
    # Slow retries after the refusal (300 s): only the new credential file can wake it.
    agent = AgentProcess.start(state, retry_max=300)
    try:
        wait_for(lambda: agent.status()["last_result"] == "ok", what="a check-in")
        shared_server.admin_stub().RevokeAgents(
            admin_pb2.RevokeAgentsRequest(site="shop-revoked"),
            metadata=shared_server.admin_metadata,
            timeout=10,
        )
        wait_for(lambda: agent.status()["last_result"] == "unauthenticated", what="the refusal")
        queue(state, 1)
        time.sleep(2)
        assert agent.alive()
        assert agent.log().count("refused this agent's credential") == 1
        # The hint is a command that works as printed, once given a new token.
        hint = re.search(r"re-enroll with `([^`]+)`", agent.log())
        assert hint is not None, agent.log()
        args = shlex.split(hint[1])
        assert args[:2] == ["storesafe-agent", "enroll"]
        assert {"--server", "--site", "--state-dir", "--ca"} <= set(args)
        token = create_enrollment_token(shared_server, "shop-revoked")
        again = agent_cli(*[token if a == "NEW_TOKEN" else a for a in args[1:]])
        assert again.returncode == 0, again.stderr
        wait_for(lambda: agent.status()["outbox_pending"] == 0, what="delivery after re-enroll")
        assert agent.status()["last_result"] == "ok"
    finally:
        assert agent.stop() == 0


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_the_agent_stops_cleanly_on_signals(
    shared_server: ServerHandle, tmp_path: Path, signal_name: str
) -> None:
    import signal

    state = tmp_path / "agent"
    assert enroll_agent(shared_server, state, f"shop-{signal_name.lower()}").returncode == 0
    agent = AgentProcess.start(state)
    wait_for(lambda: agent.status()["last_result"] == "ok", what="a check-in")
    agent.proc.send_signal(getattr(signal, signal_name))
    assert agent.proc.wait(timeout=20) == 0
    assert "stopped" in agent.log()
