"""What reaches the real server from a hostile client: undecodable bytes, no credential,
absurd values and huge fields. Every answer is a precise status naming the field, in
a short text; nothing is stored and the log gets no traceback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from storesafe.v1 import admin_pb2, agent_pb2, agent_pb2_grpc, types_pb2

from tests.support.server import (
    ServerHandle,
    create_enrollment_token,
    enroll_agent,
    start_server,
)

SERVICE = "/storesafe.v1.AgentService/"
UNARY = ["Enroll", "CheckIn", "ReportRun", "AckConfig", "AckCommand"]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field number of 0 with a truncated varint


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, str]]:
    handle = start_server(tmp_path_factory.mktemp("ingress"))
    try:
        yield handle, enroll_agent(handle, "ingress-a")
    finally:
        handle.stop()


def channel(server: ServerHandle) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    return grpc.secure_channel(server.address, creds)


def md(credential: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {credential}")]


def raw_unary(ch: grpc.Channel, method: str, data: bytes, metadata: Any = ()) -> Any:
    call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
    return call(data, metadata=metadata, timeout=10)


def raw_stream(
    ch: grpc.Channel, method: str, messages: list[bytes], metadata: Any = ()
) -> list[bytes]:
    if method.endswith("/Session"):
        call = ch.stream_stream(method, request_serializer=None, response_deserializer=None)
        return list(call(iter(messages), metadata=metadata, timeout=10))
    call = ch.unary_stream(method, request_serializer=None, response_deserializer=None)
    return list(call(messages[0], metadata=metadata, timeout=10))


def status_of(fn: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value.code(), err.value.details() or ""


def full_log(server: ServerHandle) -> str:
    assert server.log_path is not None
    return Path(server.log_path).read_text(errors="replace")


def ts(when: dt.datetime, nanos: int | None = None) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    if nanos is not None:
        out.nanos = nanos
    return out


def test_garbage_without_a_credential_is_refused_before_it_is_decoded(
    api: tuple[ServerHandle, str],
) -> None:
    server, _cred = api
    with channel(server) as ch:
        for name in UNARY[1:]:
            code, _ = status_of(lambda n=name: raw_unary(ch, SERVICE + n, GARBAGE))
            assert code == grpc.StatusCode.UNAUTHENTICATED, name
            code, _ = status_of(
                lambda n=name: raw_unary(ch, SERVICE + n, GARBAGE, md("ssa_0123_nosuchsecret"))
            )
            assert code == grpc.StatusCode.UNAUTHENTICATED, name
        for name in ("Session", "WatchConfig"):
            code, _ = status_of(lambda n=name: raw_stream(ch, SERVICE + n, [GARBAGE]))
            assert code == grpc.StatusCode.UNAUTHENTICATED, name
        # Enroll needs no credential: its garbage is undecodable, not unauthenticated
        code, details = status_of(lambda: raw_unary(ch, SERVICE + "Enroll", GARBAGE))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "could not be decoded" in details
    log = full_log(server)
    assert "Traceback" not in log and " ERROR " not in log


def test_garbage_with_a_credential_is_invalid_argument_and_logged_sparingly(
    api: tuple[ServerHandle, str],
) -> None:
    server, cred = api
    open_msg = agent_pb2.AgentEvent(open=agent_pb2.WatchConfigRequest()).SerializeToString()
    with channel(server) as ch:
        for _ in range(25):
            for name in UNARY[1:]:
                code, details = status_of(
                    lambda n=name: raw_unary(ch, SERVICE + n, GARBAGE, md(cred))
                )
                assert code == grpc.StatusCode.INVALID_ARGUMENT, name
                assert "could not be decoded" in details
        code, _ = status_of(lambda: raw_stream(ch, SERVICE + "WatchConfig", [GARBAGE], md(cred)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = status_of(lambda: raw_stream(ch, SERVICE + "Session", [GARBAGE], md(cred)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        # a later message of a Session can be the garbage one
        code, details = status_of(
            lambda: raw_stream(ch, SERVICE + "Session", [open_msg, GARBAGE], md(cred))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "could not be decoded" in details
        # the admin service and health: never UNKNOWN or INTERNAL either
        admin = "/storesafe.v1.AdminService/ListSites"
        code, _ = status_of(lambda: raw_unary(ch, admin, GARBAGE))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code, _ = status_of(lambda: raw_unary(ch, admin, GARBAGE, server.admin_metadata))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = status_of(lambda: raw_unary(ch, "/grpc.health.v1.Health/Check", GARBAGE))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    log = full_log(server)
    assert "Traceback" not in log and " ERROR " not in log
    # 25 undecodable CheckIns in well under a minute: one line about them
    assert log.count("refused an undecodable /storesafe.v1.AgentService/CheckIn") == 1


def _checkin(**fields: Any) -> agent_pb2.CheckInRequest:
    return agent_pb2.CheckInRequest(**{"agent_version": "1.0", "hostname": "pos-1", **fields})


def _report(**fields: Any) -> agent_pb2.ReportRunRequest:
    base: dict[str, Any] = dict(
        id="0b6f4a1e-0000-4000-8000-00000000000a",
        kind=types_pb2.RUN_KIND_BACKUP,
        started_at=ts(NOW - dt.timedelta(minutes=2)),
        finished_at=ts(NOW),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
    )
    base.update(fields)
    return agent_pb2.ReportRunRequest(report=types_pb2.RunReport(**base))


def _backup(**fields: Any) -> types_pb2.BackupDetails:
    return types_pb2.BackupDetails(method="gbak", **fields)


HOSTILE_CHECKINS = [
    (_checkin(hostname="pos\x00evil"), "hostname"),
    (_checkin(config_revision=-1), "config_revision"),
    (_checkin(config_revision=2**63 - 1), "config_revision"),
    (_checkin(firebird=types_pb2.FirebirdHealth(oit=-5)), "firebird.oit"),
    (_checkin(firebird=types_pb2.FirebirdHealth(page_size=-4096)), "firebird.page_size"),
    (
        _checkin(disks=[types_pb2.DiskUsage(label="data", total_bytes=10, free_bytes=11)]),
        "disks[0].free_bytes",
    ),
    (_checkin(disks=[types_pb2.DiskUsage(label="d")] * 17), "disks"),
    (_checkin(agent_time=ts(NOW, nanos=-1)), "agent_time"),
]
HOSTILE_REPORTS = [
    (_report(kind=99), "report.kind"),
    (_report(outcome=7), "report.outcome"),
    (_report(started_at=ts(NOW, nanos=-5)), "report.started_at"),
    (_report(backup=_backup(verification_seconds=float("nan"))), "verification_seconds"),
    (_report(backup=_backup(backup_seconds=float("inf"))), "report.backup.backup_seconds"),
    (_report(backup=_backup(verification=42)), "report.backup.verification"),
    (
        _report(backup=_backup(table_counts={f"T{i}": i for i in range(50_000)})),
        "report.backup.table_counts",
    ),
    (_report(backup=_backup(file="../../etc/passwd")), "report.backup.file"),
    (_report(backup=_backup(file="C:\\Backups\\x.fbk")), "report.backup.file"),
    (_report(backup=_backup(health=types_pb2.FirebirdHealth(oat=-1))), "report.backup.health.oat"),
    (
        _report(kind=types_pb2.RUN_KIND_UPLOAD, upload=types_pb2.UploadDetails(file="/etc/x")),
        "report.upload.file",
    ),
    (_report(image_sync=types_pb2.ImageSyncDetails(files_copied=1)), "report.image_sync"),
    (_report(trigger="sched\x00ule"), "report.trigger"),
]


def test_hostile_values_are_refused_naming_the_field_and_nothing_is_stored(
    api: tuple[ServerHandle, str],
) -> None:
    server, cred = api
    with channel(server) as ch:
        s = agent_pb2_grpc.AgentServiceStub(ch)
        calls: list[tuple[Any, str]] = []
        calls += [
            (lambda m=m: s.CheckIn(m, metadata=md(cred), timeout=10), f)
            for m, f in HOSTILE_CHECKINS
        ]
        calls += [
            (lambda m=m: s.ReportRun(m, metadata=md(cred), timeout=10), f)
            for m, f in HOSTILE_REPORTS
        ]
        calls += [
            (
                lambda: s.AckConfig(
                    agent_pb2.AckConfigRequest(revision=-3), metadata=md(cred), timeout=10
                ),
                "revision",
            ),
            (
                lambda: s.AckCommand(
                    agent_pb2.AckCommandRequest(command_id="c-1", outcome=9),
                    metadata=md(cred),
                    timeout=10,
                ),
                "outcome",
            ),
            (
                lambda: s.AckCommand(
                    agent_pb2.AckCommandRequest(command_id="../x", outcome=1),
                    metadata=md(cred),
                    timeout=10,
                ),
                "command_id",
            ),
            (
                lambda: list(
                    s.WatchConfig(
                        agent_pb2.WatchConfigRequest(running_revision=-1),
                        metadata=md(cred),
                        timeout=10,
                    )
                ),
                "running_revision",
            ),
            (
                lambda: list(
                    s.Session(
                        iter(
                            [
                                agent_pb2.AgentEvent(
                                    open=agent_pb2.WatchConfigRequest(running_revision=-2)
                                )
                            ]
                        ),
                        metadata=md(cred),
                        timeout=10,
                    )
                ),
                "running_revision",
            ),
            (
                lambda: list(
                    s.Session(
                        iter(
                            [
                                agent_pb2.AgentEvent(open=agent_pb2.WatchConfigRequest()),
                                agent_pb2.AgentEvent(
                                    config_ack=agent_pb2.AckConfigRequest(revision=2**63 - 1)
                                ),
                            ]
                        ),
                        metadata=md(cred),
                        timeout=10,
                    )
                ),
                "revision",
            ),
            (
                lambda: s.Enroll(
                    agent_pb2.EnrollRequest(
                        token=create_enrollment_token(server, "ingress-e"),
                        site="ingress-e",
                        hostname="pos\x00",
                    ),
                    timeout=10,
                ),
                "hostname",
            ),
        ]
        for call, field in calls:
            code, details = status_of(call)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (field, details)
            assert details.startswith(field) or f"{field}:" in details, (field, details)
            assert len(details) < 200, details
        admin = server.admin_stub()
        site = admin.GetSite(
            admin_pb2.GetSiteRequest(site="ingress-a"), metadata=server.admin_metadata
        )
        assert site.summary.hostname == "pos-1" and site.summary.config_revision_applied == 0
        assert not site.firebird.oit and not site.disks
        runs = admin.ListRuns(
            admin_pb2.ListRunsRequest(site="ingress-a"), metadata=server.admin_metadata
        ).runs
        assert list(runs) == []
        # the same agent's sane traffic is still welcome
        reply = s.CheckIn(
            _checkin(firebird=types_pb2.FirebirdHealth(oit=5, oat=6, page_size=8192)),
            metadata=md(cred),
            timeout=10,
        )
        assert reply.server_time.seconds
        good = _report(backup=_backup(file="storesafe-x.fbk.zst", verification_seconds=1.5))
        assert s.ReportRun(good, metadata=md(cred), timeout=10).duplicate is False
    log = full_log(server)
    assert "Traceback" not in log and " ERROR " not in log


def test_a_huge_field_gets_a_short_reason(api: tuple[ServerHandle, str]) -> None:
    """A 1 MB value is never repeated in the error text (which travels as metadata)."""
    server, cred = api
    huge = "x" * (1024 * 1024)
    with channel(server) as ch:
        s = agent_pb2_grpc.AgentServiceStub(ch)
        cases = [
            (
                lambda: s.CheckIn(_checkin(hostname=huge), metadata=md(cred), timeout=10),
                "INVALID_ARGUMENT",
            ),
            (
                lambda: s.CheckIn(_checkin(site=huge), metadata=md(cred), timeout=10),
                "PERMISSION_DENIED",
            ),
            (
                lambda: s.ReportRun(
                    _report(backup=_backup(file=huge)), metadata=md(cred), timeout=10
                ),
                "INVALID_ARGUMENT",
            ),
            (
                lambda: s.Enroll(agent_pb2.EnrollRequest(token="sset_1_2", site=huge), timeout=10),
                "INVALID_ARGUMENT",
            ),
            (
                lambda: s.AckCommand(
                    agent_pb2.AckCommandRequest(command_id=huge, outcome=1),
                    metadata=md(cred),
                    timeout=10,
                ),
                "INVALID_ARGUMENT",
            ),
        ]
        for call, want in cases:
            code, details = status_of(call)
            assert code.name == want, details[:200]
            assert len(details) < 200, details[:200]


def test_reflection_works_through_the_gate_and_refuses_garbage(
    api: tuple[ServerHandle, str],
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server, _cred = api
    with channel(server) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        [reply] = list(stub.ServerReflectionInfo(iter([ask]), timeout=10))
        names = {s.name for s in reply.list_services_response.service}
        assert {"storesafe.v1.AgentService", "storesafe.v1.AdminService"} <= names
        method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        code, _ = status_of(lambda: raw_stream_bidi(ch, method, [GARBAGE]))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    log = full_log(server)
    assert "Traceback" not in log and " ERROR " not in log


def raw_stream_bidi(ch: grpc.Channel, method: str, messages: list[bytes]) -> list[bytes]:
    call = ch.stream_stream(method, request_serializer=None, response_deserializer=None)
    return list(call(iter(messages), timeout=10))
