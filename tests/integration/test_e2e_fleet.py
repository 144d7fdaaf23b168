"""End to end: init a server, enroll two real agents, watch the fleet view and `check`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.agent import AgentProcess, enroll_agent, wait_for
from tests.support.server import BIN, init_server


def storesafe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "storesafe"), *args], capture_output=True, text=True, env=env, timeout=60
    )


def sites(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    done = storesafe(env, "sites", "--json")
    assert done.returncode == 0, done.stderr
    return {row["site"]: row for row in json.loads(done.stdout)}


def test_two_agents_never_then_one_offline_and_check_is_critical(tmp_path: Path) -> None:
    server = init_server(tmp_path, extra_args=("--offline-after-minutes", "0.05"))
    server.start()
    agents: list[AgentProcess] = []
    try:
        for site in ("shop-east", "shop-west"):
            state = tmp_path / site
            done = enroll_agent(server, state, site, group="demo")
            assert done.returncode == 0, done.stderr
            agents.append(AgentProcess.start(state, interval=0.5))
        env = server.cli_env

        def both_fresh() -> bool:
            rows = sites(env)
            return all(rows[s]["agent_version"] for s in ("shop-east", "shop-west"))

        wait_for(both_fresh, 30, "both agents to check in")
        rows = sites(env)
        assert {r["status"] for r in rows.values()} == {"never"}
        assert rows["shop-east"]["last_good_backup_at"] is None
        assert rows["shop-east"]["group"] == "demo"
        assert "no verified backup yet" in rows["shop-east"]["problems"]

        assert agents[1].stop() == 0
        wait_for(lambda: sites(env)["shop-west"]["status"] == "offline", 30, "shop-west offline")
        rows = sites(env)
        assert rows["shop-east"]["status"] == "never"  # still checking in
        assert any(p.startswith("agent not seen for") for p in rows["shop-west"]["problems"])

        check = storesafe(env, "check")
        assert check.returncode == 2, check.stdout + check.stderr
        assert "shop-west offline" in check.stdout
        table = storesafe(env, "sites")
        assert table.returncode == 0 and "shop-west" in table.stdout
        offline = storesafe(env, "sites", "--status", "offline", "--json")
        assert [r["site"] for r in json.loads(offline.stdout)] == ["shop-west"]
    finally:
        for agent in agents:
            agent.stop()
        server.stop()
