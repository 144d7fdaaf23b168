"""Every `--json` output is valid JSON whatever the database holds (NaN and infinities,
which JSON cannot hold, written there directly, come out as null)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import agent_pb2, agent_pb2_grpc, types_pb2
from typer.testing import CliRunner

from cli.main import app
from tests.support.server import ServerHandle, enroll_agent


def strict_json(text: str) -> Any:
    """json.loads that refuses NaN, Infinity and -Infinity (which are not JSON)."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def ts(when: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def test_json_is_valid_with_nan_and_infinity_in_the_database(server: ServerHandle) -> None:
    cred = enroll_agent(server, "json-nan")
    now = dt.datetime.now(dt.UTC)
    md = [("authorization", f"Bearer {cred}")]
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    with grpc.secure_channel(server.address, creds) as ch:
        stub = agent_pb2_grpc.AgentServiceStub(ch)
        stub.CheckIn(
            agent_pb2.CheckInRequest(hostname="pos-1", agent_time=ts(now)), metadata=md, timeout=10
        )
        report = types_pb2.RunReport(
            id="5e0c1d2a-0000-4000-8000-000000000001",
            kind=types_pb2.RUN_KIND_BACKUP,
            started_at=ts(now - dt.timedelta(minutes=1)),
            finished_at=ts(now),
            outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
            backup=types_pb2.BackupDetails(method="gbak", verification_seconds=2.0),
        )
        stub.ReportRun(agent_pb2.ReportRunRequest(report=report), metadata=md, timeout=10)
    # what an older server (or a hand edit) may have left in the database
    with sqlite3.connect(server.data_dir / "storesafe.db") as db:
        details = {"backup": {"method": "gbak", "verification_seconds": "NaN"}}
        details["backup"]["backup_seconds"] = "-Infinity"
        db.execute("UPDATE runs SET details_json = ?", (json.dumps(details),))
        db.execute("UPDATE sites SET clock_skew_seconds = 9e999 WHERE name = 'json-nan'")
    env = server.cli_env
    runner = CliRunner()
    runs = runner.invoke(app, ["runs", "json-nan", "--json"], env=env)
    assert runs.exit_code == 0, runs.output
    [row] = strict_json(runs.stdout)
    assert row["details"]["verification_seconds"] is None
    assert row["details"]["backup_seconds"] is None
    site = runner.invoke(app, ["site", "json-nan", "--json"], env=env)
    assert site.exit_code == 0, site.output
    detail = strict_json(site.stdout)
    assert detail["clock_skew_seconds"] is None
    assert detail["last_backup"]["details"]["verification_seconds"] is None
    for args in (["sites", "--json"], ["check", "--json"], ["audit", "--json"]):
        result = runner.invoke(app, args, env=env)
        strict_json(result.stdout)
