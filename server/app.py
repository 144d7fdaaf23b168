"""Wiring: build the services on one state and clock, and run the grpc.aio server."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import logging
import signal
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy import Connection
from storesafe.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc

from common.clock import Clock, SystemClock
from common.errors import InvalidArgument
from server import tls
from server.alerting.tasks import AlertTasks
from server.db.engine import make_engine, sqlite_url
from server.db.initialised import migrate_initialised
from server.domain.status import Status, StatusPolicy
from server.domain.store_gc import DEFAULT_MARGIN_HOURS, check_margin
from server.metrics import ServerMetrics
from server.rpc.admin_servicer import AdminServicer
from server.rpc.agent_servicer import AgentServicer
from server.rpc.gate import Gate
from server.rpc.selfprobe import SelfProbe
from server.rpc.storehealth import probe_once, watch_store
from server.services.admin_tokens import AdminTokens
from server.services.auth import Authenticator
from server.services.changefeed import ChangeFeed
from server.services.commands import Commands
from server.services.config import ConfigService
from server.services.drills import Drills
from server.services.enrollment import Enrollment
from server.services.fleet import FleetQueries
from server.services.metered import MeteredTraffic
from server.services.offsite import OffsiteUploads
from server.services.push import RECONNECTS_PER_SECOND, ConfigHub
from server.services.revocation import Revocations
from server.services.secretbox import SecretBox
from server.services.snapshots import SnapshotQueries
from server.services.store_gc import MaintenanceSchedule, StoreMaintenance, retention_keys
from server.services.storecheck import StoreChecks
from server.state.config_state import SqlConfigState
from server.state.sql import SqlFleetState
from server.state.store_gc_state import SqlStoreGcState
from server.state.store_state import SqlStoreState
from server.state.writer_process import batch_writer
from server.storage import BlobStore, open_store
from server.web.edge import HttpEdge
from server.web.wiring import http_edge

log = logging.getLogger(__name__)

MAX_RECEIVE = 16 * 1024 * 1024 + 64 * 1024
"""A 16 MiB sealed chunk (PutChunks) and its message overhead; every other method is held
to SMALL_REQUEST_BYTES by the gate (server/rpc/gate.py) before it is decoded."""
MAX_SEND = 64 * 1024 * 1024
GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_RECEIVE),
    ("grpc.max_send_message_length", MAX_SEND),
    ("grpc.server.max_pending_requests", 20000),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_pings_without_data", 0),
]
"""The serving gRPC server's options (bench/ingest_floor.py serves with the same)."""


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    data_dir: Path
    listen: str = "0.0.0.0:7443"
    db_url: str = ""
    insecure: bool = False
    checkin_interval: int = 60
    offline_after_minutes: float = 15.0
    stale_after_hours: float = 26.0
    grace_seconds: float = 5.0
    poll_seconds: float = 10.0
    reconnects_per_second: float = RECONNECTS_PER_SECOND
    writer_process: bool = True  # see state/writer_process.batch_writer
    alert_interval: float = 15.0  # seconds between alert evaluations
    http_listen: str = ""  # HOST:PORT for /metrics, /healthz and the status page; "" = off
    store_url: str = ""  # the off-site blob store; "" = <data_dir>/store
    maintenance_every: float = 24.0  # hours between store maintenance runs; 0 = off
    gc_margin_hours: float = DEFAULT_MARGIN_HOURS  # garbage collection's time margin

    @property
    def database(self) -> str:
        return self.db_url or sqlite_url(self.data_dir)


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidArgument(f"--listen {listen!r} must be HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(options: ServeOptions, clock: Clock | None = None) -> None:  # noqa: PLR0915
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    host, _port = split_listen(options.listen)
    margin = check_margin(options.gc_margin_hours)
    if options.maintenance_every < 0:
        raise InvalidArgument("--maintenance-every takes hours (0 turns maintenance off)")
    if options.insecure and not is_loopback(host):
        raise InvalidArgument("plaintext (--insecure) is allowed only on a loopback address")
    credentials = None if options.insecure else _server_credentials(options.data_dir)
    box = SecretBox.for_data_dir(options.data_dir)
    engine = make_engine(options.database)
    await asyncio.to_thread(
        migrate_initialised, engine, data_dir=options.data_dir, db_url=options.db_url
    )
    writer = batch_writer(engine, child=options.writer_process)
    state = SqlFleetState(engine, writer)
    config_state = SqlConfigState(state)
    clock = clock or SystemClock()
    store = await _open_store(options)
    store_state = SqlStoreState(engine)
    auth = Authenticator(state)
    enrollment = Enrollment(state, clock)
    hub = ConfigHub(config_state, box, clock)
    await hub.refresh()
    await hub.load_command_sites()
    log.info("cached the credentials of %d active agent(s)", await auth.preload())
    revocations = Revocations(state, auth, hub, clock)
    feed = ChangeFeed(
        hub,
        config_state,
        clock,
        db_url=options.database,
        poll_seconds=options.poll_seconds,
        revocations=revocations,
    )
    fleet = FleetQueries(
        state,
        clock,
        revocations,
        hub,
        StatusPolicy(
            stale_after_hours=options.stale_after_hours,
            offline_after_minutes=options.offline_after_minutes,
        ),
    )
    server = grpc.aio.server(
        interceptors=[Gate(auth)],
        options=GRPC_OPTIONS,
    )
    metrics = ServerMetrics(s.value for s in Status)
    alerts = AlertTasks(
        engine,
        fleet,
        hub,
        box,
        clock,
        interval=options.alert_interval,
        on_outcome=metrics.alert_outcome,
    )
    traffic = MeteredTraffic(
        state, config_state, hub, clock, metrics, checkin_interval=options.checkin_interval
    )
    agent_pb2_grpc.add_AgentServiceServicer_to_server(
        AgentServicer(
            auth, enrollment, traffic, revocations, OffsiteUploads(store_state, store, clock)
        ),
        server,
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(
        AdminServicer(
            auth,
            enrollment,
            fleet,
            ConfigService(state, config_state, box, clock, hub),
            Commands(state, config_state, hub, clock),
            admin_tokens=AdminTokens(state, clock),
            alerts=alerts.queries,
            snapshots=SnapshotQueries(store_state, store),
            drills=Drills(state, clock),
            store_checks=StoreChecks(state, store_state, store, clock),
        ),
        server,
    )
    health_servicer, names = _add_health_and_reflection(server)
    if credentials is None:
        bound = server.add_insecure_port(options.listen)
    else:
        bound = server.add_secure_port(options.listen, credentials)
    if bound == 0:
        state.close()
        raise InvalidArgument(f"cannot listen on {options.listen}: is the port in use?")
    edge = await _start_http(
        options,
        grpc_host=host,
        grpc_port=bound,
        state=state,
        fleet=fleet,
        hub=hub,
        auth=auth,
        metrics=metrics,
        store=store,
    )
    maintenance = MaintenanceSchedule(
        StoreMaintenance(
            SqlStoreGcState(engine),
            store,
            clock,
            lambda site, group: retention_keys(hub.snapshot, site, group),
            margin=margin,
        ),
        dt.timedelta(hours=options.maintenance_every),
    )
    await server.start()
    feed.start()
    maintenance.start()
    alerts.start()
    warm = asyncio.create_task(fleet.list_sites(), name="warm-fleet-view")  # first `sites` fast
    for name in names[:2]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await probe_once(health_servicer, store.check)
    store_watch = asyncio.create_task(watch_store(health_servicer, store.check), name="store")
    log.info(
        "serving on %s:%d (%s), state %s, written by %s",
        host,
        bound,
        "plaintext" if credentials is None else "TLS",
        _safe_url(options.database),
        "a child process" if writer.uses_runner else "a thread",
    )
    log.info("off-site store: %s", store.describe())
    await _wait_for_signal()
    log.info("stopping: finishing calls in flight (up to %.0f s)", options.grace_seconds)
    await health_servicer.enter_graceful_shutdown()
    await _say_goodbye(hub, options.reconnects_per_second)
    warm.cancel()
    store_watch.cancel()
    await maintenance.stop()
    await edge.stop()
    await alerts.stop()
    await feed.stop()
    await server.stop(options.grace_seconds)
    await asyncio.to_thread(state.close)
    await store.close()
    log.info("stopped")


def _add_health_and_reflection(server: grpc.aio.Server) -> tuple[Any, tuple[str, ...]]:
    """gRPC health checking and reflection; returns the health servicer and the names of
    the services served."""
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
        admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
        health.SERVICE_NAME,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    return health_servicer, names


async def _say_goodbye(hub: ConfigHub, per_second: float) -> None:
    streams = hub.stream_count
    window = await hub.goodbye(per_second)
    log.info("told %d connected agent(s) to reconnect within %d s", streams, window)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _server_credentials(data_dir: Path) -> grpc.ServerCredentials:
    key, cert = data_dir / tls.SERVER_KEY, data_dir / tls.SERVER_CERT
    if not key.exists() or not cert.exists():
        raise InvalidArgument(
            f"no server certificate in {data_dir}: run `storesafe-server init --data-dir "
            f"{data_dir}` first"
        )
    return grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])


async def _start_http(
    options: ServeOptions,
    *,
    grpc_host: str,
    grpc_port: int,
    state: SqlFleetState,
    fleet: FleetQueries,
    hub: ConfigHub,
    auth: Authenticator,
    metrics: ServerMetrics,
    store: BlobStore,
) -> HttpEdge:
    """The HTTP edge started on --http-listen (TLS unless --insecure, which is for
    loopback only, as for gRPC); an edge that serves nothing without it."""
    if not options.http_listen:
        return HttpEdge.off()
    ca = None if options.insecure else (options.data_dir / tls.CA_CERT).read_bytes()
    try:
        try:
            host, port = split_listen(options.http_listen)
        except InvalidArgument:
            raise InvalidArgument(
                f"--http-listen {options.http_listen!r} must be HOST:PORT"
            ) from None
        if options.insecure and not is_loopback(host):
            raise InvalidArgument(
                "plaintext (--insecure) HTTP is allowed only on a loopback address"
            )
        edge = http_edge(
            data_dir=options.data_dir,
            insecure=options.insecure,
            grpc_probe=SelfProbe(grpc_host, grpc_port, ca),
            database_probe=lambda: state.read(_select_one),
            store_probe=store.check,
            fleet=fleet,
            hub=hub,
            auth=auth,
            metrics=metrics,
        )
        await edge.start(host, port)
    except InvalidArgument:
        state.close()
        raise
    return edge


async def _open_store(options: ServeOptions) -> BlobStore:
    """The off-site blob store named by --store (a bad URL stops `serve`); one that
    cannot be used now does not: uploads answer UNAVAILABLE and the health service
    storesafe.v1.OffsiteStore says NOT_SERVING until it can (server/rpc/storehealth.py)."""
    return open_store(options.store_url, options.data_dir)


def _select_one(conn: Connection) -> None:
    conn.exec_driver_sql("SELECT 1").scalar_one()


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
