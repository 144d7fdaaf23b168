"""The wrong-database guard end to end: reports over the real AgentService, the verdict
and its acceptance through the `storesafe` CLI against a real server (TLS, SQLite)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import agent_pb2, types_pb2

from tests.integration.cli.test_cli import one_error_line, run
from tests.support.server import ServerHandle
from tests.support.simagent import SimAgent, aio_channel, close_all, enroll_many

SHOP = {"ACCOUNTS": 10_000, "CUSTOMERS": 2_000, "RATES": 12}
DEMO = {"ACCOUNTS": 40, "CUSTOMERS": 3, "RATES": 12}


def ts(when: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


async def report_backup(
    agent: SimAgent, run_id: str, minutes_ago: int, counts: dict[str, int], database: str
) -> None:
    finished = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes_ago)
    backup = types_pb2.BackupDetails(
        method="gbak",
        file=f"{run_id}.fbk.zst",
        verification=types_pb2.VERIFICATION_PASSED,
        table_counts=counts,
        database=database,
    )
    report = types_pb2.RunReport(
        id=run_id,
        kind=types_pb2.RUN_KIND_BACKUP,
        started_at=ts(finished - dt.timedelta(minutes=1)),
        finished_at=ts(finished),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        backup=backup,
    )
    await agent.stub.ReportRun(
        agent_pb2.ReportRunRequest(report=report), metadata=agent.metadata, timeout=10
    )


def site_json(server: ServerHandle, site: str) -> dict[str, object]:
    shown = run(server, "site", site, "--json")
    assert shown.exit_code == 0, shown.output
    out: dict[str, object] = json.loads(shown.stdout)
    return out


def test_a_backup_of_another_database_is_a_warning_until_accepted(server: ServerHandle) -> None:
    site = "shop-wrongdb"

    async def first_backups() -> str:
        (agent,) = await enroll_many(
            server.address, server.ca_path.read_bytes(), server.admin_token, [site]
        )
        await agent.check_in()
        await report_backup(agent, "run-good-1", 30, SHOP, r"C:\RTOwin\DATA.FDB")
        await report_backup(agent, "run-demo-2", 20, DEMO, r"C:\RTOwin\DEMO.FDB")
        await close_all([agent.channel])
        return agent.credential

    credential = asyncio.run(first_backups())
    shown = site_json(server, site)
    assert shown["status"] == "warning", shown
    (problem,) = shown["problems"]  # type: ignore[misc]
    assert problem.startswith(
        r"backup run-demo-2 from database C:\RTOwin\DEMO.FDB (was C:\RTOwin\DATA.FDB) "
        "differs sharply from the accepted backup run-good-1"
    )
    assert f"storesafe accept-change {site}" in problem
    assert run(server, "check").exit_code == 1

    unknown_run = run(server, "accept-change", site, "--run", "no-such-run")
    assert unknown_run.exit_code == 3
    assert one_error_line(unknown_run) == f"error: site {site!r} has no run 'no-such-run'"

    accepted = run(server, "accept-change", site)
    assert accepted.exit_code == 0, accepted.output
    assert accepted.stdout.startswith(
        f"Accepted backup run-demo-2 as the baseline of site {site}; cleared: backup run-demo-2"
    )
    assert site_json(server, site)["status"] == "ok"
    audit = json.loads(run(server, "audit", "--json").stdout)
    entry = next(e for e in audit if e["action"] == "figures.accept")
    assert (entry["actor"], entry["target"]) == ("admin", site)
    assert entry["details"].startswith("run=run-demo-2 cleared=")

    async def next_backup() -> None:
        channel = aio_channel(server.address, server.ca_path.read_bytes())
        agent = SimAgent(site, credential, channel)
        await agent.check_in()
        await report_backup(agent, "run-demo-3", 10, DEMO, r"C:\RTOwin\DEMO.FDB")
        await close_all([agent.channel])

    asyncio.run(next_backup())
    assert site_json(server, site)["status"] == "ok"  # compared with the accepted backup
    again = run(server, "accept-change", site, "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout) == {"site": site, "run_id": "run-demo-3", "cleared": None}
