"""The `storesafe` CLI seeing real agents: check-in facts, revoking credentials."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.main import app
from tests.support.server import ServerHandle

AGENT = str(Path(sys.executable).parent / "storesafe-agent")


def cli_json(server: ServerHandle, *args: str) -> Any:
    result = CliRunner().invoke(app, [*args, "--json"], env=server.cli_env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def enroll(server: ServerHandle, site: str, state_dir: Path) -> None:
    token = cli_json(server, "token", "create", "--site", site)["token"]
    subprocess.run(
        [
            AGENT,
            "enroll",
            "--server",
            server.address,
            "--token",
            token,
            "--site",
            site,
            "--state-dir",
            str(state_dir),
            "--ca",
            str(server.ca_path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_a_checked_in_agent_is_shown_then_revoked(
    shared_server: ServerHandle, tmp_path: Path
) -> None:
    site = f"shop-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "agent"
    enroll(shared_server, site, state)
    log = (tmp_path / "agent.log").open("wb")
    agent = subprocess.Popen([AGENT, "run", "--state-dir", str(state)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not (detail := cli_json(shared_server, "site", site))["agent_version"]:  # checked in
            assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()
            time.sleep(0.3)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert detail["status"] == "never"
    assert detail["last_seen_at"].endswith("Z")
    assert detail["hostname"]
    assert detail["agent_version"]
    assert detail["active_agents"] == 1
    row = next(r for r in cli_json(shared_server, "sites") if r["site"] == site)
    assert row["last_seen_at"] == detail["last_seen_at"]

    text = CliRunner().invoke(app, ["site", site], env=shared_server.cli_env)
    assert re.search(r"^Active agents +1$", text.stdout, re.MULTILINE)
    assert "just now" in text.stdout or "m ago" in text.stdout

    revoked = CliRunner().invoke(app, ["revoke", site], env=shared_server.cli_env)
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked 1 agent credential of site {site};" in revoked.stdout
    assert cli_json(shared_server, "site", site)["active_agents"] == 0
    actions = [e["action"] for e in cli_json(shared_server, "audit") if e["target"] == site]
    assert any("revoke" in action for action in actions)
