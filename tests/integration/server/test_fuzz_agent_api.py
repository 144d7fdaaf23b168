"""Fuzz every AgentService RPC of the real server on loopback (hypothesis): random bytes,
mutated valid messages and valid messages with random values, with the agent's
credential and without one. No call may end UNKNOWN or INTERNAL, the server log gets no
traceback, and the server still answers health afterwards.

Reproducible: derandomized, a fixed number of examples per RPC, no deadline.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storesafe.v1 import admin_pb2, agent_pb2, types_pb2

from tests.support.protofuzz import NASTY_TEXT, hostile_bytes
from tests.support.sealed import put_request, site_upload
from tests.support.server import (
    PG_ENV,
    ServerHandle,
    enroll_agent,
    fresh_pg_database,
    set_config,
    start_server,
)

SITE = "fuzz-a"
SERVICE = "/storesafe.v1.AgentService/"
EXAMPLES = 200
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NEVER = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED,
}
TEXTS = [*NASTY_TEXT, SITE, SITE]  # the agent's own site, so that calls get past the site check


def _ts(when: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


def _seeds() -> dict[str, list[bytes]]:
    now = dt.datetime.now(dt.UTC)
    health = types_pb2.FirebirdHealth(oit=10, oat=11, ost=11, next_transaction=12, page_size=8192)
    report = types_pb2.RunReport(
        id="6a7b8c9d-0000-4000-8000-000000000001",
        kind=types_pb2.RUN_KIND_BACKUP,
        started_at=_ts(now - dt.timedelta(minutes=3)),
        finished_at=_ts(now),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        trigger="schedule",
        backup=types_pb2.BackupDetails(
            method="gbak",
            file="storesafe-shop-gbak-1.fbk.zst",
            size_raw=1000,
            size_compressed=300,
            checksum="sha256:" + "0f" * 32,
            verification=types_pb2.VERIFICATION_PASSED,
            verification_seconds=1.5,
            table_counts={"CUSTOMERS": 10, "RENTALS": 3},
            health=health,
            problems=["a problem"],
            backup_seconds=2.5,
        ),
    )
    checkin = agent_pb2.CheckInRequest(
        agent_version="1.0",
        hostname="pos-1",
        os="Windows 10",
        agent_time=_ts(now),
        config_revision=1,
        disks=[types_pb2.DiskUsage(label="data", path="C:\\", total_bytes=100, free_bytes=40)],
        firebird=health,
        outbox_pending=2,
        site=SITE,
    )
    ack = agent_pb2.AckConfigRequest(revision=1, applied=False, error="bad value", site=SITE)
    cmd = agent_pb2.AckCommandRequest(command_id="c-0", outcome=1, message="done", site=SITE)
    watch = agent_pb2.WatchConfigRequest(running_revision=0, site=SITE)
    up = site_upload(SITE)
    return {
        "PutSiteKey": [up.site_key_request(SITE).SerializeToString()],
        "MissingChunks": [
            agent_pb2.MissingChunksRequest(
                ids=[c.chunk_id for c in up.chunks], site=SITE
            ).SerializeToString()
        ],
        "PutChunks": [put_request(c, site=SITE).SerializeToString() for c in up.chunks],
        "CommitSnapshot": [m.SerializeToString() for m in up.commit_requests(batch=3)],
        "Enroll": [
            agent_pb2.EnrollRequest(
                token="sset_00_11", site=SITE, hostname="pos", agent_version="1", os="w"
            ).SerializeToString()
        ],
        "CheckIn": [checkin.SerializeToString()],
        "ReportRun": [agent_pb2.ReportRunRequest(report=report, site=SITE).SerializeToString()],
        "AckConfig": [ack.SerializeToString()],
        "AckCommand": [cmd.SerializeToString()],
        "WatchConfig": [watch.SerializeToString()],
        "Session": [
            agent_pb2.AgentEvent(open=watch).SerializeToString(),
            agent_pb2.AgentEvent(config_ack=ack).SerializeToString(),
            agent_pb2.AgentEvent(command_ack=cmd).SerializeToString(),
        ],
    }


SEEDS = _seeds()
TYPES = {
    "Enroll": agent_pb2.EnrollRequest,
    "CheckIn": agent_pb2.CheckInRequest,
    "ReportRun": agent_pb2.ReportRunRequest,
    "AckConfig": agent_pb2.AckConfigRequest,
    "AckCommand": agent_pb2.AckCommandRequest,
    "WatchConfig": agent_pb2.WatchConfigRequest,
    "Session": agent_pb2.AgentEvent,
    "PutSiteKey": agent_pb2.PutSiteKeyRequest,
    "MissingChunks": agent_pb2.MissingChunksRequest,
    "PutChunks": agent_pb2.PutChunkRequest,
    "CommitSnapshot": agent_pb2.CommitSnapshotRequest,
}
UPLOAD_STREAMS = ("PutChunks", "CommitSnapshot")
# A second open ends any Session the server accepted, once it read every message before.
END_SESSION = agent_pb2.AgentEvent(open=agent_pb2.WatchConfigRequest()).SerializeToString()


def payload(rpc: str) -> Any:
    return hostile_bytes(TYPES[rpc].DESCRIPTOR, SEEDS[rpc], TEXTS)


SESSION_MESSAGES = st.tuples(st.booleans(), st.lists(payload("Session"), min_size=1, max_size=4))
UPLOAD_MESSAGES = {
    rpc: st.tuples(st.booleans(), st.lists(payload(rpc), min_size=0, max_size=4))
    for rpc in UPLOAD_STREAMS
}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerHandle, str, Any]]:
    """A server (on SQLite, then on PostgreSQL, which refuses NUL in text) with one agent,
    a fleet config revision and an open command for its site: a stream the server
    accepts always gets a first directive at once."""
    with contextlib.ExitStack() as stack:
        db_url = ""
        if request.param == "postgres":
            if not os.environ.get(PG_ENV):
                if os.environ.get("CI"):
                    pytest.fail(f"CI runs the PostgreSQL tests: set {PG_ENV}")
                pytest.skip(f"PostgreSQL tests need {PG_ENV}")
            db_url = stack.enter_context(fresh_pg_database())
        yield from _fuzzed_server(tmp_path_factory, db_url)


def _fuzzed_server(
    tmp_path_factory: pytest.TempPathFactory, db_url: str
) -> Iterator[tuple[ServerHandle, str, Any]]:
    server = start_server(tmp_path_factory.mktemp("fuzz"), db_url=db_url)
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    try:
        credential = enroll_agent(server, SITE)
        set_config(server, admin_pb2.CONFIG_SCOPE_FLEET, backup__keep_daily="5")
        server.admin_stub().SendCommand(
            admin_pb2.SendCommandRequest(site=SITE, kind=agent_pb2.COMMAND_KIND_BACKUP_NOW),
            metadata=server.admin_metadata,
            timeout=10,
        )
        with grpc.secure_channel(server.address, creds) as ch:
            yield server, credential, ch
    finally:
        server.stop()


def send(ch: grpc.Channel, rpc: str, messages: list[bytes], metadata: Any) -> grpc.StatusCode:
    """One call with raw request bytes; its final status (OK for a stream the server
    accepted and answered, which is then cancelled)."""
    method = SERVICE + rpc
    try:
        if rpc == "Session":
            call = ch.stream_stream(method, request_serializer=None, response_deserializer=None)
            for _ in call(iter([*messages, END_SESSION]), metadata=metadata, timeout=10):
                pass
        elif rpc in UPLOAD_STREAMS:
            call = ch.stream_unary(method, request_serializer=None, response_deserializer=None)
            call(iter(messages), metadata=metadata, timeout=10)
        elif rpc == "WatchConfig":
            call = ch.unary_stream(method, request_serializer=None, response_deserializer=None)
            stream = call(messages[0], metadata=metadata, timeout=10)
            next(stream)  # accepted: the open command comes at once
            stream.cancel()
        else:
            call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
            call(messages[0], metadata=metadata, timeout=10)
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def check(fuzzed: tuple[ServerHandle, str, Any], rpc: str, messages: list[bytes]) -> None:
    _server, credential, ch = fuzzed
    code = send(ch, rpc, messages, [("authorization", f"Bearer {credential}")])
    assert code not in NEVER, (rpc, code, messages)
    code = send(ch, rpc, messages, [])
    if rpc == "Enroll":
        assert code not in NEVER, (rpc, code, messages)
    else:
        assert code == grpc.StatusCode.UNAUTHENTICATED, (rpc, code, messages)


def assert_server_healthy(server: ServerHandle, ch: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert server.log_path is not None
    log = Path(server.log_path).read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    assert " ERROR " not in log and " CRITICAL " not in log, log[-4000:]


@pytest.mark.parametrize(
    "rpc",
    ["Enroll", "CheckIn", "ReportRun", "AckConfig", "AckCommand", "PutSiteKey", "MissingChunks"],
)
def test_fuzz_unary_rpcs(fuzzed: tuple[ServerHandle, str, Any], rpc: str) -> None:
    @FUZZ
    @given(data=payload(rpc))
    def one(data: bytes) -> None:
        check(fuzzed, rpc, [data])

    one()
    assert_server_healthy(fuzzed[0], fuzzed[2])


def test_fuzz_watch_config(fuzzed: tuple[ServerHandle, str, Any]) -> None:
    @FUZZ
    @given(data=payload("WatchConfig"))
    def one(data: bytes) -> None:
        check(fuzzed, "WatchConfig", [data])

    one()
    assert_server_healthy(fuzzed[0], fuzzed[2])


def test_fuzz_session(fuzzed: tuple[ServerHandle, str, Any]) -> None:
    @FUZZ
    @given(drawn=SESSION_MESSAGES)
    def one(drawn: tuple[bool, list[bytes]]) -> None:
        opened, rest = drawn
        check(fuzzed, "Session", [SEEDS["Session"][0], *rest] if opened else rest)

    one()
    assert_server_healthy(fuzzed[0], fuzzed[2])


@pytest.mark.parametrize("rpc", UPLOAD_STREAMS)
def test_fuzz_upload_streams(fuzzed: tuple[ServerHandle, str, Any], rpc: str) -> None:
    """Client streams of hostile messages, some after the valid first one (the header)."""

    @FUZZ
    @given(drawn=UPLOAD_MESSAGES[rpc])
    def one(drawn: tuple[bool, list[bytes]]) -> None:
        valid_first, rest = drawn
        check(fuzzed, rpc, [SEEDS[rpc][0], *rest] if valid_first else rest)

    one()
    assert_server_healthy(fuzzed[0], fuzzed[2])
