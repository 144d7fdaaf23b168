"""The agent's test stand-ins (the OS service managers are in services.py, the clock in clock.py).

- `FakeLink`: the server connection as the runner sees it, with scripted
  faults (down, refusing the credential, rejecting a report); its slow
  deliveries sleep on the test's clock when it is given one.
- `RecordingServicer`: a real grpc.aio AgentService on loopback that answers
  from memory, for transport tests that must not depend on the real server.
- `FakeServiceHost`: the Windows service control manager, which cannot run here.
- `fake_fs`: a Windows filesystem's "does this file exist", for the client
  library search.
- `make_tls`: a throwaway CA and server certificate for loopback servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc import aio
from storesafe.v1 import agent_pb2, agent_pb2_grpc

from agent.domain.messages import CheckIn, CheckInReply, Directive
from agent.domain.reports import Outcome, RunKind, RunReport
from agent.facts import HostFacts
from common.errors import StoreSafeError, Unavailable
from tests.support.clock import VirtualClock

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def report(n: int = 0, **changes: Any) -> RunReport:
    """A small finished backup report."""
    base = RunReport(
        kind=RunKind.BACKUP,
        started_at=T0 + dt.timedelta(minutes=n),
        finished_at=T0 + dt.timedelta(minutes=n, seconds=30),
        outcome=Outcome.SUCCEEDED,
        id=f"report-{n:04d}",
    )
    return dataclasses.replace(base, **changes)


def host_facts() -> HostFacts:
    return HostFacts(
        hostname="pc1", os="Linux test", agent_version="0.1.0", agent_time=T0, disks=()
    )


class FakeLink:
    """Answers check-ins and stores reports in memory; set `fault` to fail calls."""

    def __init__(self, *, interval: int = 0, clock: VirtualClock | None = None) -> None:
        self.interval = interval
        self.clock = clock
        self.fault: StoreSafeError | None = None
        self.reject: dict[str, StoreSafeError] = {}
        self.checkins: list[CheckIn] = []
        self.stored: dict[str, RunReport] = {}
        self.deliveries: list[str] = []
        self.closed = 0
        self.directives: list[Directive] = []
        self.report_delay = 0.0
        self.in_flight: list[str] = []
        self.watches: list[int] = []
        self.acks: list[tuple[str, object, object, str]] = []

    async def check_in(self, checkin: CheckIn) -> CheckInReply:
        await asyncio.sleep(0)
        if self.fault is not None:
            raise self.fault
        self.checkins.append(checkin)
        return CheckInReply(server_time=T0, checkin_interval_seconds=self.interval)

    async def report_run(self, report: RunReport) -> bool:
        self.in_flight.append(report.id)
        if self.clock is not None:
            await self.clock.sleep(self.report_delay)
        else:
            await asyncio.sleep(self.report_delay)
        if self.fault is not None:
            raise self.fault
        if report.id in self.reject:
            raise self.reject[report.id]
        self.deliveries.append(report.id)
        duplicate = report.id in self.stored
        self.stored.setdefault(report.id, report)
        return duplicate

    async def watch(self, *, running_revision: int, site: str = "") -> AsyncIterator[Directive]:
        self.watches.append(running_revision)
        if self.fault is not None:
            raise self.fault
        for directive in self.directives:
            await asyncio.sleep(0)
            yield directive

    async def ack_config(
        self, *, revision: int, applied: bool, error: str = "", site: str = ""
    ) -> None:
        self.acks.append(("config", revision, applied, error))

    async def ack_command(
        self, *, command_id: str, outcome: str, message: str = "", site: str = ""
    ) -> None:
        self.acks.append(("command", command_id, outcome, message))

    async def close(self) -> None:
        self.closed += 1


DOWN = Unavailable("cannot reach the StoreSafe server at test:1 (down)")


# -- a stand-in gRPC server ---------------------------------------------------


class RecordingServicer(agent_pb2_grpc.AgentServiceServicer):
    """Records requests and metadata; `abort_with` makes every call fail with that status."""

    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []
        self.reports: dict[str, agent_pb2.ReportRunRequest] = {}
        self.abort_with: tuple[grpc.StatusCode, str] | None = None
        self.directives: list[agent_pb2.AgentDirective] = []
        self.hold_stream = False
        self.watch_requests: list[Any] = []
        self.acks: list[Any] = []
        self.stream_acks: list[Any] = []
        self.stream_acked = asyncio.Event()

    async def _enter(self, context: aio.ServicerContext[Any, Any]) -> None:
        self.metadata.append({k: str(v) for k, v in context.invocation_metadata() or ()})
        if self.abort_with is not None:
            await context.abort(*self.abort_with)

    async def Enroll(self, request: Any, context: Any) -> agent_pb2.EnrollResponse:
        await self._enter(context)
        return agent_pb2.EnrollResponse(
            agent_id="a1", credential="secret-" + request.token, site=request.site, group="g"
        )

    async def CheckIn(self, request: Any, context: Any) -> agent_pb2.CheckInResponse:
        await self._enter(context)
        resp = agent_pb2.CheckInResponse(checkin_interval_seconds=42, desired_config_revision=3)
        resp.server_time.FromDatetime(T0)
        return resp

    async def ReportRun(self, request: Any, context: Any) -> agent_pb2.ReportRunResponse:
        await self._enter(context)
        duplicate = request.report.id in self.reports
        self.reports.setdefault(request.report.id, request)
        return agent_pb2.ReportRunResponse(duplicate=duplicate)

    async def WatchConfig(self, request: Any, context: Any) -> Any:
        await self._enter(context)
        self.watch_requests.append(request)
        for directive in self.directives:
            yield directive
        if self.hold_stream:
            await asyncio.Event().wait()

    async def Session(self, request_iterator: Any, context: Any) -> Any:
        await self._enter(context)
        first = await anext(request_iterator)
        self.watch_requests.append(first.open)

        async def record() -> None:
            async for event in request_iterator:
                self.stream_acks.append(getattr(event, event.WhichOneof("kind")))
                self.stream_acked.set()

        reader = asyncio.ensure_future(record())
        try:
            for directive in self.directives:
                yield directive
            if self.hold_stream:
                await asyncio.Event().wait()
        finally:
            reader.cancel()

    async def AckConfig(self, request: Any, context: Any) -> agent_pb2.AckConfigResponse:
        await self._enter(context)
        self.acks.append(request)
        return agent_pb2.AckConfigResponse()

    async def AckCommand(self, request: Any, context: Any) -> agent_pb2.AckCommandResponse:
        await self._enter(context)
        self.acks.append(request)
        return agent_pb2.AckCommandResponse()


@asynccontextmanager
async def recording_server(
    credentials: grpc.ServerCredentials | None = None,
) -> AsyncIterator[tuple[str, RecordingServicer]]:
    """A loopback grpc.aio server with a RecordingServicer; yields (address, servicer)."""
    servicer = RecordingServicer()
    server = aio.server(options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)])
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(grace=None)


# -- a Windows filesystem, for the Firebird client library search ----------------


def fake_fs(*paths: str) -> Callable[[str], bool]:
    """`exists` for these Windows paths only (case-insensitive, as on NTFS)."""
    present = {p.lower() for p in paths}
    return lambda path: path.lower() in present


# -- the Windows service control manager ----------------------------------------


class FakeServiceHost:
    """Records the states a service reports to the service control manager."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.errors: list[str] = []

    def report(self, state: str) -> None:
        self.states.append(state)

    def log_error(self, message: str) -> None:
        self.errors.append(message)


# -- TLS material for a loopback server -----------------------------------------


@dataclasses.dataclass(frozen=True)
class Tls:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)])


def make_tls(hostname: str = "127.0.0.1") -> Tls:
    """A throwaway CA and a server certificate for `hostname` (an IP address here)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: str, key: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(hostname))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    ca = build("test CA", "test CA", ca_key, ca_key, True)
    cert = build(hostname, "test CA", key, ca_key, False)
    pem = serialization.Encoding.PEM
    return Tls(
        ca_pem=ca.public_bytes(pem),
        cert_pem=cert.public_bytes(pem),
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
