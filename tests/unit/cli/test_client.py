"""`cli.client` over real gRPC on loopback, against a scripted AdminService.

The scripted service lets these tests force every status code, slow answers
and huge fleets; tests/integration/cli runs the same client against the real
server.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, admin_pb2_grpc, types_pb2

from cli.client.admin import FETCH_MESSAGE_BYTES, AdminClient
from cli.client.channel import is_loopback, split_address
from cli.client.errors import error_for
from cli.client.settings import Settings
from common import errors

WHEN = dt.datetime(2026, 11, 26, 19, 0, tzinfo=dt.UTC)


def ts(when: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


class Scripted(admin_pb2_grpc.AdminServiceServicer):
    """Answers each RPC with `self.answer(method, request, context)`; records metadata."""

    def __init__(self) -> None:
        self.metadata: list[tuple[str, str]] = []
        self.requests: list[Any] = []
        self.answer: Callable[[str, Any, grpc.ServicerContext], Any] = lambda m, r, c: None

    def _handle(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        self.metadata = [(k, str(v)) for k, v in context.invocation_metadata()]
        self.requests.append(request)
        return self.answer(method, request, context)

    def ListSites(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("ListSites", request, context)

    def GetSite(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("GetSite", request, context)

    def ListRuns(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("ListRuns", request, context)

    def CreateEnrollmentToken(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("CreateEnrollmentToken", request, context)

    def RevokeAgents(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("RevokeAgents", request, context)

    def ListAudit(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("ListAudit", request, context)

    def ListAdminTokens(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("ListAdminTokens", request, context)

    def RevokeAdminToken(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("RevokeAdminToken", request, context)

    def FetchChunks(self, request: Any, context: grpc.ServicerContext) -> Any:
        yield from self._handle("FetchChunks", request, context)


@pytest.fixture
def scripted() -> Iterator[tuple[Scripted, str]]:
    service = Scripted()  # type: ignore[abstract]  # RPCs the CLI does not call stay UNIMPLEMENTED
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_send_message_length", 128 * 1024 * 1024)],
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield service, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def client(address: str, **changes: Any) -> AdminClient:
    settings = Settings(server=address, token="secret-token", insecure=True, timeout=5)
    return AdminClient(Settings(**{**settings.__dict__, **changes}))


def test_list_sites_sends_the_bearer_token_and_filters(scripted: tuple[Scripted, str]) -> None:
    service, address = scripted
    service.answer = lambda m, r, c: admin_pb2.ListSitesResponse(
        sites=[
            admin_pb2.SiteSummary(
                site="shop-a",
                group="north",
                status=types_pb2.SITE_STATUS_FAILING,
                last_good_backup_at=ts(WHEN),
                last_seen_at=ts(WHEN),
                problems=["backup failed"],
                config_revision_desired=4,
                config_revision_applied=3,
                agent_version="0.1.0",
                hostname="PC1",
            ),
            admin_pb2.SiteSummary(site="shop-b", status=types_pb2.SITE_STATUS_NEVER),
        ]
    )
    rows = client(address).list_sites(status="failing", group="north")
    assert ("authorization", "Bearer secret-token") in service.metadata
    assert service.requests[0].status == types_pb2.SITE_STATUS_FAILING
    assert service.requests[0].group == "north"
    a, b = rows
    assert (a.site, a.group, a.status, a.hostname) == ("shop-a", "north", "failing", "PC1")
    assert a.last_good_backup_at == WHEN
    assert a.last_backup_at is None
    assert a.problems == ("backup failed",)
    assert (a.config_revision_desired, a.config_revision_applied) == (4, 3)
    assert (b.status, b.last_seen_at) == ("never", None)


def test_unknown_enum_values_become_unknown(scripted: tuple[Scripted, str]) -> None:
    service, address = scripted
    service.answer = lambda m, r, c: admin_pb2.ListSitesResponse(
        sites=[admin_pb2.SiteSummary(site="x", status=99)]  # type: ignore[arg-type]
    )
    assert client(address).list_sites()[0].status == "unknown"


def test_runs_carry_kind_outcome_and_details(scripted: tuple[Scripted, str]) -> None:
    service, address = scripted
    report = types_pb2.RunReport(
        id="r1",
        kind=types_pb2.RUN_KIND_BACKUP,
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        started_at=ts(WHEN),
        finished_at=ts(WHEN + dt.timedelta(minutes=2)),
        trigger="schedule",
        backup=types_pb2.BackupDetails(
            method="gbak",
            file="a.fbk.zst",
            size_compressed=1000,
            verification=types_pb2.VERIFICATION_PASSED,
            table_counts={"CUSTOMERS": 12},
            health=types_pb2.FirebirdHealth(oit=5, oat=9),
        ),
    )
    sync = types_pb2.RunReport(
        id="r2",
        kind=types_pb2.RUN_KIND_IMAGE_SYNC,
        outcome=types_pb2.RUN_OUTCOME_FAILED,
        error_class="disk.full",
        error_message="the backup disk is full",
        image_sync=types_pb2.ImageSyncDetails(files_scanned=10, files_failed=2),
    )
    service.answer = lambda m, r, c: admin_pb2.ListRunsResponse(
        runs=[
            admin_pb2.Run(site="shop-a", report=report, received_at=ts(WHEN)),
            admin_pb2.Run(site="shop-a", report=sync),
        ]
    )
    backup, image = client(address).list_runs("shop-a", kind="image-sync", limit=7)
    request = service.requests[0]
    assert (request.site, request.kind, request.limit) == (
        "shop-a",
        types_pb2.RUN_KIND_IMAGE_SYNC,
        7,
    )
    assert (backup.kind, backup.outcome, backup.trigger) == ("backup", "succeeded", "schedule")
    assert backup.finished_at == WHEN + dt.timedelta(minutes=2)
    assert backup.details["verification"] == "passed"
    assert backup.details["table_counts"] == {"CUSTOMERS": 12}
    assert backup.details["health"]["oat"] == 9
    assert (image.kind, image.outcome, image.error_class) == ("image-sync", "failed", "disk.full")
    assert {k: image.details[k] for k in ("files_scanned", "files_copied", "files_failed")} == {
        "files_scanned": 10,
        "files_copied": 0,
        "files_failed": 2,
    }
    assert image.details["skipped"] == {} and image.details["snapshot_id"] == ""


def test_get_site_token_revoke_audit(scripted: tuple[Scripted, str]) -> None:
    service, address = scripted
    answers = {
        "GetSite": admin_pb2.GetSiteResponse(
            summary=admin_pb2.SiteSummary(site="shop-a", status=types_pb2.SITE_STATUS_OK),
            os="Windows 10",
            disks=[types_pb2.DiskUsage(label="backup", total_bytes=10, free_bytes=4)],
            firebird=types_pb2.FirebirdHealth(ods="12.0"),
            clock_skew_seconds=-1.5,
            active_agents=1,
        ),
        "CreateEnrollmentToken": admin_pb2.CreateEnrollmentTokenResponse(
            token="tok", expires_at=ts(WHEN)
        ),
        "RevokeAgents": admin_pb2.RevokeAgentsResponse(revoked=2),
        "ListAudit": admin_pb2.ListAuditResponse(
            entries=[admin_pb2.AuditEntry(at=ts(WHEN), actor="admin", action="agents.revoke")]
        ),
    }
    service.answer = lambda m, r, c: answers[m]
    c = client(address)
    detail = c.get_site("shop-a")
    assert (detail.summary.status, detail.os, detail.active_agents) == ("ok", "Windows 10", 1)
    assert detail.disks[0].free_bytes == 4
    assert detail.firebird is not None and detail.firebird.ods == "12.0"
    assert detail.last_backup is None
    assert detail.enrolled_at is None
    token = c.create_token("shop-a", "north", dt.timedelta(hours=2))
    assert service.requests[-1].ttl_seconds == 7200
    assert (token.token, token.expires_at) == ("tok", WHEN)
    assert c.revoke_agents("shop-a") == 2
    assert c.list_audit(limit=5)[0].action == "agents.revoke"
    assert service.requests[-1].limit == 5
    c.close()


def test_a_fleet_of_12000_sites_fits_in_one_answer(scripted: tuple[Scripted, str]) -> None:
    service, address = scripted
    row = admin_pb2.SiteSummary(
        group="g",
        status=types_pb2.SITE_STATUS_WARNING,
        problems=["x" * 200, "y" * 200],
        last_seen_at=ts(WHEN),
        hostname="H" * 40,
        agent_version="0.1.0",
    )
    big = admin_pb2.ListSitesResponse(
        sites=[admin_pb2.SiteSummary(site=f"shop-{i:05d}", **_fields(row)) for i in range(12000)]
    )
    assert big.ByteSize() > 4 * 1024 * 1024  # past gRPC's default receive limit
    service.answer = lambda m, r, c: big
    rows = client(address).list_sites()
    assert len(rows) == 12000
    assert rows[-1].site == "shop-11999"


def _fields(row: admin_pb2.SiteSummary) -> dict[str, Any]:
    return {f.name: v for f, v in row.ListFields()}


@pytest.mark.parametrize(
    ("code", "details", "cls", "message"),
    [
        (grpc.StatusCode.NOT_FOUND, "no site named 'x'", errors.NotFound, "no site named 'x'"),
        (
            grpc.StatusCode.INVALID_ARGUMENT,
            "bad site name",
            errors.InvalidArgument,
            "bad site name",
        ),
        (
            grpc.StatusCode.PERMISSION_DENIED,
            "not an admin",
            errors.PermissionDenied,
            "not an admin",
        ),
        (grpc.StatusCode.ALREADY_EXISTS, "exists", errors.AlreadyExists, "exists"),
        (grpc.StatusCode.FAILED_PRECONDITION, "not now", errors.FailedPrecondition, "not now"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many", errors.ResourceExhausted, "too many"),
        (
            grpc.StatusCode.UNAUTHENTICATED,
            "unknown token",
            errors.Unauthenticated,
            "the admin token was refused by the StoreSafe server at {a}: "
            "check --token or STORESAFE_TOKEN",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "the database is down",
            errors.Unavailable,
            "the database is down",
        ),
        (grpc.StatusCode.INTERNAL, "boom", errors.Internal, "the StoreSafe server failed: boom"),
        (
            grpc.StatusCode.NOT_FOUND,
            "",
            errors.NotFound,
            "the StoreSafe server refused the request (NOT_FOUND)",
        ),
    ],
)
def test_status_codes_map_to_one_sentence_errors(
    scripted: tuple[Scripted, str],
    code: grpc.StatusCode,
    details: str,
    cls: type[errors.StoreSafeError],
    message: str,
) -> None:
    service, address = scripted
    service.answer = lambda m, r, c: c.abort(code, details)
    with pytest.raises(cls) as caught:
        client(address).get_site("x")
    assert type(caught.value) is cls
    assert caught.value.message == message.format(a=address)


def test_fetch_chunks_takes_many_a_message_and_one_from_an_older_server(
    scripted: tuple[Scripted, str],
) -> None:
    service, address = scripted
    blobs = [(f"{n:02x}" * 32, bytes([n]) * (100 + n)) for n in range(5)]

    def packed(method: str, request: Any, context: grpc.ServicerContext) -> Any:
        sealed = [admin_pb2.SealedBlob(id=i, data=d) for i, d in blobs]
        return [
            admin_pb2.FetchedChunk(chunks=sealed[:3]),
            admin_pb2.FetchedChunk(chunks=sealed[3:]),
        ]

    service.answer = packed
    ids = [i for i, _ in blobs]
    assert list(client(address).fetch_chunks("shop-a", ids)) == blobs
    asked = service.requests[-1]
    assert (asked.site, list(asked.ids)) == ("shop-a", ids)
    assert asked.max_message_bytes == FETCH_MESSAGE_BYTES
    # a server before max_message_bytes ignores it and sends one chunk a message
    service.answer = lambda m, r, c: [admin_pb2.FetchedChunk(id=i, data=d) for i, d in blobs]
    assert list(client(address).fetch_chunks("shop-a", ids)) == blobs
    # NOT_FOUND after some messages: what came before is kept, the error names the chunk
    got: list[tuple[str, bytes]] = []

    def cut(method: str, request: Any, context: grpc.ServicerContext) -> Any:
        yield admin_pb2.FetchedChunk(chunks=[admin_pb2.SealedBlob(id=ids[0], data=blobs[0][1])])
        context.abort(grpc.StatusCode.NOT_FOUND, f"site shop-a has no stored chunk {ids[1]}")

    service.answer = cut
    with pytest.raises(errors.NotFound, match=ids[1]):
        got.extend(client(address).fetch_chunks("shop-a", ids))
    assert got == blobs[:1]


def test_a_slow_server_hits_the_deadline(scripted: tuple[Scripted, str]) -> None:
    service, address = scripted

    def slow(method: str, request: Any, context: grpc.ServicerContext) -> Any:
        time.sleep(1.0)
        return admin_pb2.ListAuditResponse()

    service.answer = slow
    with pytest.raises(errors.Unavailable, match=r"did not answer within 0.2s"):
        client(address, timeout=0.2).list_audit()


def test_nobody_listening_is_unavailable() -> None:
    with pytest.raises(errors.Unavailable) as caught:
        client("127.0.0.1:1", insecure=False).list_sites()
    message = caught.value.message
    assert message == "cannot reach the StoreSafe server at 127.0.0.1:1: is it running?"
    assert caught.value.exit_code == 6
    with pytest.raises(errors.Unavailable, match=r"1 without TLS: is it running with plaintext"):
        client("127.0.0.1:1").list_sites()


def test_tls_to_a_plaintext_server_names_the_ca(scripted: tuple[Scripted, str]) -> None:
    _, address = scripted
    with pytest.raises(errors.Unavailable, match=r"cannot make a TLS connection .*--ca"):
        client(address, insecure=False).list_sites()


def test_transport_failures_are_told_apart_from_server_reasons() -> None:
    def msg(details: str) -> str:
        return error_for(grpc.StatusCode.UNAVAILABLE, details, server="h:1", timeout=1).message

    refused = "failed to connect to all addresses; last error: UNKNOWN: Connection refused"
    assert msg(refused) == "cannot reach the StoreSafe server at h:1: is it running?"
    assert msg("Socket closed") == "cannot reach the StoreSafe server at h:1: is it running?"
    assert msg("") == "cannot reach the StoreSafe server at h:1: is it running?"
    assert msg("Tls handshake failed (TSI_PROTOCOL_FAILURE)").startswith("cannot make a TLS")
    assert msg("the database is down\nmore") == "the database is down"
    no_host = "cannot resolve the host name 'h': check --server or STORESAFE_SERVER"
    assert msg("DNS resolution failed for h:1: C-ares status is not ARES_SUCCESS") == no_host
    assert msg("errors resolving h:1: [address lookup failed: Domain name not found]") == no_host
    assert msg("DNS resolution failed for h:1: Name or service not known") == no_host
    db_down = 'cannot use the database postgresql://s@db/s: "db": Name or service not known'
    assert msg(db_down) == db_down  # the server's own reason: its database's host


def test_a_code_from_the_server_picks_the_class_and_vouches_for_its_reason() -> None:
    def err(code: grpc.StatusCode, details: str, sent: str | None) -> errors.StoreSafeError:
        return error_for(code, details, server="h:1", timeout=1, error_code=sent)

    # gRPC's own words without a code; the server's reason with one
    down = "cannot connect to the database postgresql://s@db/s"
    assert err(grpc.StatusCode.UNAVAILABLE, down, None).message.startswith("cannot reach")
    assert err(grpc.StatusCode.UNAVAILABLE, down, "unavailable").message == down
    assert err(grpc.StatusCode.UNAVAILABLE, "", "unavailable").message == (
        "the StoreSafe server refused the request (UNAVAILABLE)"
    )
    # the code names the class; an unknown code leaves it to the status
    assert type(err(grpc.StatusCode.FAILED_PRECONDITION, "x", "not_found")) is errors.NotFound
    unknown = err(grpc.StatusCode.FAILED_PRECONDITION, "x", "site_on_fire")
    assert (type(unknown), unknown.message) == (errors.FailedPrecondition, "x")


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:7443", "127.0.0.1", 7443),
        ("[::1]:9", "::1", 9),
        ("backup.example.com:443", "backup.example.com", 443),
    ],
)
def test_split_address(address: str, host: str, port: int) -> None:
    assert split_address(address) == (host, port)


@pytest.mark.parametrize("address", ["localhost", "host:0", "host:70000", ":80", "a b:1", "h:p"])
def test_split_address_refuses(address: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="is not HOST:PORT"):
        split_address(address)


def test_loopback() -> None:
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.5")
    assert is_loopback("::1")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("localhost.example.com")


def test_ca_file_problems_are_one_sentence(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(errors.InvalidArgument, match=r"cannot read the CA certificate .*nope.pem"):
        client("127.0.0.1:1", insecure=False, ca=missing).list_sites()
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(errors.InvalidArgument, match=r"junk.pem is not a PEM CA certificate"):
        client("127.0.0.1:1", insecure=False, ca=junk).list_sites()


@pytest.mark.parametrize("token", ["tök", "a b", "a\nb", "   "])
def test_tokens_a_header_cannot_carry_are_refused_before_sending(token: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="admin token"):
        client("127.0.0.1:1", token=token).list_sites()


def test_admin_tokens_are_listed_and_revoked_by_name(scripted: tuple[Scripted, str]) -> None:
    service, address = scripted
    active = admin_pb2.AdminToken(name="alice", id="a1", created_at=ts(WHEN), created_by="bob")
    gone = admin_pb2.AdminToken(
        name="old", id="o1", created_at=ts(WHEN), revoked_at=ts(WHEN), revoked_by="alice"
    )

    def answer(method: str, request: Any, context: grpc.ServicerContext) -> Any:
        if method == "ListAdminTokens":
            return admin_pb2.ListAdminTokensResponse(tokens=[active, gone])
        if request.name == "last":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "'last' is the last active one")
        return admin_pb2.RevokeAdminTokenResponse(token=gone)

    service.answer = answer
    c = client(address)
    a, o = c.list_admin_tokens()
    assert (a.name, a.id, a.created_at, a.created_by, a.active) == (
        "alice",
        "a1",
        WHEN,
        "bob",
        True,
    )
    assert (o.revoked_at, o.revoked_by, o.active) == (WHEN, "alice", False)
    assert c.revoke_admin_token("old").name == "old"
    assert service.requests[-1].name == "old"
    with pytest.raises(errors.FailedPrecondition, match="last active one"):
        c.revoke_admin_token("last")
    c.close()
