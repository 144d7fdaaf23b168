"""AgentService at its boundary: bad credentials, malformed and oversized input, other sites."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, agent_pb2, agent_pb2_grpc, types_pb2

from tests.support.server import ServerHandle
from tests.support.simagent import close_all, enroll_many


def ts(when: dt.datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(when)
    return out


NOW = dt.datetime.now(dt.UTC)


def report(**overrides: object) -> types_pb2.RunReport:
    base: dict[str, object] = dict(
        id="7d0c7f1e-0000-4000-8000-000000000001",
        kind=types_pb2.RUN_KIND_BACKUP,
        started_at=ts(NOW - dt.timedelta(minutes=1)),
        finished_at=ts(NOW),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
    )
    base.update(overrides)
    return types_pb2.RunReport(**base)  # type: ignore[arg-type]


def stub(server: ServerHandle) -> agent_pb2_grpc.AgentServiceStub:
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    return agent_pb2_grpc.AgentServiceStub(grpc.secure_channel(server.address, creds))


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [("authorization", "Basic abc")],
        [("authorization", "Bearer not-a-credential")],
        [("authorization", "Bearer ssa_0000000000000000_nosuchsecret")],
    ],
)
def test_bad_credentials_are_unauthenticated(
    shared_server: ServerHandle, metadata: list[tuple[str, str]]
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub(shared_server).CheckIn(agent_pb2.CheckInRequest(), metadata=metadata, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_malformed_oversized_and_foreign_reports(shared_server: ServerHandle) -> None:
    async def body() -> None:
        a, b = await enroll_many(
            shared_server.address,
            shared_server.ca_path.read_bytes(),
            shared_server.admin_token,
            ["api-a", "api-b"],
        )
        await close_all([a.channel, b.channel])
        return a.credential, b.credential

    cred_a, cred_b = asyncio.run(body())
    s = stub(shared_server)
    md_a = [("authorization", f"Bearer {cred_a}")]
    md_b = [("authorization", f"Bearer {cred_b}")]

    def send(rep: types_pb2.RunReport, md: list[tuple[str, str]] = md_a, site: str = "") -> bool:
        return s.ReportRun(
            agent_pb2.ReportRunRequest(report=rep, site=site), metadata=md, timeout=10
        ).duplicate

    bad = [
        report(started_at=None),
        report(kind=types_pb2.RUN_KIND_UNSPECIFIED),
        report(outcome=types_pb2.RUN_OUTCOME_UNSPECIFIED),
        report(id="../../etc/passwd"),
        report(id=""),
        report(started_at=ts(NOW), finished_at=ts(NOW - dt.timedelta(hours=1))),
        report(finished_at=ts(NOW + dt.timedelta(days=3))),
    ]
    for rep in bad:
        with pytest.raises(grpc.RpcError) as err:
            send(rep)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, rep
    with pytest.raises(grpc.RpcError) as err:
        send(report(error_message="x" * (5 * 1024 * 1024)))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    assert send(report()) is False
    assert send(report()) is True  # a replay changes nothing
    with pytest.raises(grpc.RpcError) as err:
        send(report(), md=md_b)  # b replays a's report id
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        send(report(id="7d0c7f1e-0000-4000-8000-000000000002"), site="api-b")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    runs = (
        shared_server.admin_stub()
        .ListRuns(admin_pb2.ListRunsRequest(site="api-a"), metadata=shared_server.admin_metadata)
        .runs
    )
    assert [r.report.id for r in runs] == ["7d0c7f1e-0000-4000-8000-000000000001"]
    assert (
        shared_server.admin_stub()
        .ListRuns(admin_pb2.ListRunsRequest(site="api-b"), metadata=shared_server.admin_metadata)
        .runs
        == []
    )
    # the server lived through all of it
    assert s.CheckIn(agent_pb2.CheckInRequest(), metadata=md_a, timeout=10).server_time.seconds


def test_an_unknown_run_kind_is_refused_alike_in_a_report_and_a_listing(
    shared_server: ServerHandle,
) -> None:
    """One rule judges a run kind: a number the server does not know is refused, naming
    it, whether an agent reports it or an admin filters by it (never read as "all")."""

    async def body() -> str:
        (a,) = await enroll_many(
            shared_server.address,
            shared_server.ca_path.read_bytes(),
            shared_server.admin_token,
            ["api-kind"],
        )
        await close_all([a.channel])
        return a.credential

    md = [("authorization", f"Bearer {asyncio.run(body())}")]
    with pytest.raises(grpc.RpcError) as sent:
        stub(shared_server).ReportRun(
            agent_pb2.ReportRunRequest(report=report(kind=77)), metadata=md, timeout=10
        )
    with pytest.raises(grpc.RpcError) as listed:
        shared_server.admin_stub().ListRuns(
            admin_pb2.ListRunsRequest(site="api-kind", kind=77),  # type: ignore[arg-type]
            metadata=shared_server.admin_metadata,
        )
    for err, field in ((sent, "report.kind"), (listed, "kind")):
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith(f"{field}: '77' is not one of backup")


def test_an_unknown_status_filter_is_refused_not_read_as_every_site(
    shared_server: ServerHandle,
) -> None:
    """ListSites with a status number the server does not know names it and lists
    nothing: a filter that matches nothing is never read as "all sites"."""
    with pytest.raises(grpc.RpcError) as listed:
        shared_server.admin_stub().ListSites(
            admin_pb2.ListSitesRequest(status=77),  # type: ignore[arg-type]
            metadata=shared_server.admin_metadata,
        )
    assert listed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert listed.value.details().startswith("status: '77' is not one of ok, warning")
