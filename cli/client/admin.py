"""The admin CLI's only gRPC code: connect to the server, call it, and translate.

Commands get plain `cli.models` records and `common.errors` exceptions from
here; they never see protobuf messages or `grpc.RpcError`. Status codes map to
errors in one table, `_STATUS_ERRORS`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, TypeVar

# gRPC core logs connection and TLS failures on stderr; the CLI reports them as
# one sentence instead. Read when grpc is first imported, so set before that.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, types_pb2

from cli.models import (
    COMMAND_KINDS,
    KINDS,
    SCOPES,
    STATUSES,
    AdminToken,
    AlertDelivery,
    AlertList,
    AuditEntry,
    Command,
    ConfigChange,
    ConfigEntry,
    ConfigRevision,
    Disk,
    EnrollmentToken,
    FirebirdHealth,
    RolloutRow,
    Run,
    SiteConfig,
    SiteDetail,
    SiteSummary,
)
from common import errors
from common.version import VERSION

MAX_RECEIVE_BYTES = 64 * 1024 * 1024  # 10,000+ site rows fit with room to spare
MAX_SEND_BYTES = 4 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_ADDRESS = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[^:\[\]\s]+):(?P<port>\d{1,5})")

_SERVER = "the StoreSafe server at {server}"
_FAILED = "the StoreSafe server failed: {details}"
_NO_SERVER = "cannot reach " + _SERVER + ": is it running?"
_NO_PLAIN_SERVER = "cannot reach " + _SERVER + " without TLS: is it running with plaintext allowed?"
_REFUSED = "the admin token was refused by " + _SERVER + ": check --token or STORESAFE_TOKEN"
_OLDER = _SERVER + " does not offer this: is it older than the CLI?"
_Code = grpc.StatusCode

# One table: gRPC status -> (error class, sentence). `{server}`, `{details}` and
# `{timeout}` are filled in; an empty `{details}` falls back to `_FALLBACK`.
_STATUS_ERRORS: dict[grpc.StatusCode, tuple[type[errors.StoreSafeError], str]] = {
    _Code.UNAVAILABLE: (errors.Unavailable, _NO_SERVER),
    _Code.DEADLINE_EXCEEDED: (errors.Unavailable, _SERVER + " did not answer within {timeout:g}s"),
    _Code.CANCELLED: (errors.Unavailable, "the call to {server} was cancelled"),
    _Code.ABORTED: (errors.Unavailable, "{details}"),
    _Code.UNAUTHENTICATED: (errors.Unauthenticated, _REFUSED),
    _Code.PERMISSION_DENIED: (errors.PermissionDenied, "{details}"),
    _Code.NOT_FOUND: (errors.NotFound, "{details}"),
    _Code.INVALID_ARGUMENT: (errors.InvalidArgument, "{details}"),
    _Code.OUT_OF_RANGE: (errors.InvalidArgument, "{details}"),
    _Code.ALREADY_EXISTS: (errors.AlreadyExists, "{details}"),
    _Code.FAILED_PRECONDITION: (errors.FailedPrecondition, "{details}"),
    _Code.RESOURCE_EXHAUSTED: (errors.ResourceExhausted, "{details}"),
    _Code.UNIMPLEMENTED: (errors.FailedPrecondition, _OLDER),
    _Code.INTERNAL: (errors.Internal, _FAILED),
    _Code.UNKNOWN: (errors.Internal, _FAILED),
    _Code.DATA_LOSS: (errors.Internal, _FAILED),
}
_FALLBACK = "the StoreSafe server refused the request ({code})"
_TLS_FAILURE = "cannot make a TLS connection to " + _SERVER + ": is --ca (STORESAFE_CA) the "
_TLS_FAILURE += "CA certificate from the server's data dir?"
_TLS = re.compile(r"handshake|certificate|ssl|tsi_|alpn", re.IGNORECASE)
_NO_HOST = "cannot resolve the host name '{host}': check --server or STORESAFE_SERVER"
# What gRPC's resolvers (c-ares and the system's) say when the server's host name does not
# resolve; it names the address, unlike a reason the server gives (its database's host).
_DNS = re.compile(r"(?:dns resolution failed for|errors resolving) (?P<target>\S+?):? ", re.I)
# What gRPC itself says when there is no connection (unlike a reason the server gives).
_NO_CONNECTION = re.compile(
    r"connect|socket|dns|resolution|broken pipe|goaway|endpoint|keepalive|unreachable|backends",
    re.IGNORECASE,
)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Settings:
    """How to reach the server, from the global options or the environment."""

    server: str | None = None
    token: str | None = None
    ca: Path | None = None
    insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT


def error_for(
    code: grpc.StatusCode, details: str | None, *, server: str, timeout: float
) -> errors.StoreSafeError:
    """Turn a gRPC status into the matching StoreSafe error with one sentence."""
    text = (details or "").strip().splitlines()[0] if (details or "").strip() else ""
    if code is grpc.StatusCode.UNAVAILABLE and _resolves_not(text, server):
        return errors.Unavailable(_NO_HOST.format(host=server.rpartition(":")[0].strip("[]")))
    if code is grpc.StatusCode.UNAVAILABLE and _TLS.search(text):
        return errors.Unavailable(_TLS_FAILURE.format(server=server))
    if code is grpc.StatusCode.UNAVAILABLE and text and not _NO_CONNECTION.search(text):
        return errors.Unavailable(text)  # the server's own reason, e.g. its database is down
    cls, template = _STATUS_ERRORS.get(code, (errors.Internal, "{details}"))
    if "{details}" in template and not text:
        template = _FALLBACK
    return cls(template.format(server=server, details=text, timeout=timeout, code=code.name))


def _resolves_not(details: str, server: str) -> bool:
    """Whether gRPC says the host name of `server` did not resolve."""
    found = _DNS.search(details)
    return found is not None and found["target"].removeprefix("dns:///") == server


def split_address(address: str) -> tuple[str, int]:
    """Split `HOST:PORT` (or `[v6]:PORT`) and check the port."""
    match = _ADDRESS.fullmatch(address.strip())
    port = int(match["port"]) if match else 0
    if not match or not 1 <= port <= 65535:
        raise errors.InvalidArgument(f"the server address '{address}' is not HOST:PORT")
    return match["host"].strip("[]"), port


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminClient:
    """A connection to the AdminService, opened on first use and closed by `close()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._channel: grpc.Channel | None = None
        self._stub: admin_pb2_grpc.AdminServiceStub | None = None

    @property
    def server(self) -> str:
        """The server address, or a complaint that there is none."""
        if not self.settings.server:
            raise errors.InvalidArgument(
                "no server given: pass --server HOST:PORT or set STORESAFE_SERVER"
            )
        return self.settings.server.strip()

    def close(self) -> None:
        """Close the channel if one was opened."""
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = None

    # --- calls -------------------------------------------------------------

    def create_token(self, site: str, group: str, ttl: dt.timedelta) -> EnrollmentToken:
        """Make a one-time enrollment token for `site`."""
        request = admin_pb2.CreateEnrollmentTokenRequest(
            site=site, group=group, ttl_seconds=int(ttl.total_seconds())
        )
        answer = self._call(self._connect().CreateEnrollmentToken, request)
        return EnrollmentToken(
            site=site, group=group, token=answer.token, expires_at=_time(answer, "expires_at")
        )

    def list_sites(self, status: str | None = None, group: str | None = None) -> list[SiteSummary]:
        """All sites (optionally of one status or group), ordered by name."""
        request = admin_pb2.ListSitesRequest(status=_status_value(status), group=group or "")
        answer = self._call(self._connect().ListSites, request)
        return [_summary(row) for row in answer.sites]

    def get_site(self, site: str) -> SiteDetail:
        """One site in detail."""
        answer = self._call(self._connect().GetSite, admin_pb2.GetSiteRequest(site=site))
        return SiteDetail(
            summary=_summary(answer.summary),
            os=answer.os,
            disks=tuple(Disk(d.label, d.path, d.total_bytes, d.free_bytes) for d in answer.disks),
            firebird=_health(answer.firebird) if answer.HasField("firebird") else None,
            clock_skew_seconds=answer.clock_skew_seconds,
            enrolled_at=_time(answer, "enrolled_at"),
            outbox_pending=answer.outbox_pending,
            last_backup=_run(answer.last_backup) if answer.HasField("last_backup") else None,
            active_agents=answer.active_agents,
        )

    def list_runs(self, site: str, kind: str | None = None, limit: int = 20) -> list[Run]:
        """The newest runs of `site`, at most `limit`, optionally of one kind."""
        request = admin_pb2.ListRunsRequest(site=site, kind=_kind_value(kind), limit=limit)
        answer = self._call(self._connect().ListRuns, request)
        return [_run(row) for row in answer.runs]

    def revoke_agents(self, site: str) -> int:
        """Revoke every agent credential of `site`; return how many there were."""
        request = admin_pb2.RevokeAgentsRequest(site=site)
        return self._call(self._connect().RevokeAgents, request).revoked

    def accept_change(self, site: str, run_id: str = "") -> tuple[str, str]:
        """Accept a good backup's figures as `site`'s baseline; (run id, cleared problem)."""
        request = admin_pb2.AcceptChangeRequest(site=site, run_id=run_id)
        answer = self._call(self._connect().AcceptChange, request)
        return answer.run_id, answer.cleared

    def list_audit(self, limit: int = 50) -> list[AuditEntry]:
        """The newest admin actions, at most `limit`."""
        answer = self._call(self._connect().ListAudit, admin_pb2.ListAuditRequest(limit=limit))
        return [
            AuditEntry(_time(e, "at"), e.actor, e.action, e.target, e.details)
            for e in answer.entries
        ]

    def set_config(
        self, scope: str, target: str, values: dict[str, str], unset: list[str]
    ) -> ConfigChange:
        """Set and unset keys on one layer (the server validates every value)."""
        request = admin_pb2.SetConfigRequest(
            scope=admin_pb2.ConfigScope.Value("CONFIG_SCOPE_" + scope.upper()),
            target=target,
            values=values,
            unset=unset,
        )
        answer = self._call(self._connect().SetConfig, request)
        layer = f"{scope}:{target}" if target else scope
        return ConfigChange(layer, answer.revision, tuple(answer.changed), answer.sites)

    def get_config(self, site: str) -> SiteConfig:
        """The effective configuration of `site`, secrets masked, with each key's layer."""
        answer = self._call(self._connect().GetConfig, admin_pb2.GetConfigRequest(site=site))
        entries = tuple(_record(ConfigEntry, e) for e in answer.entries)
        return _record(SiteConfig, answer, entries=entries)

    def config_history(self, limit: int = 50) -> list[ConfigRevision]:
        """The newest configuration revisions, at most `limit`."""
        request = admin_pb2.ConfigHistoryRequest(limit=limit)
        answer = self._call(self._connect().ConfigHistory, request)
        return [
            _record(ConfigRevision, r, scope=_scope_name(r.scope), changes=dict(r.changes))
            for r in answer.revisions
        ]

    def config_rollout(self, group: str | None = None) -> list[RolloutRow]:
        """Desired vs applied revision of every site (optionally of one group)."""
        request = admin_pb2.ConfigRolloutRequest(group=group or "")
        answer = self._call(self._connect().ConfigRollout, request)
        return [_record(RolloutRow, row) for row in answer.sites]

    def send_command(self, site: str, kind: str) -> str:
        """Queue `backup-now` or `sync-now` for the agent of `site`; return the command id."""
        value = agent_pb2.CommandKind.Value("COMMAND_KIND_" + kind.upper().replace("-", "_"))
        request = admin_pb2.SendCommandRequest(site=site, kind=value)
        return self._call(self._connect().SendCommand, request).command_id

    def list_commands(self, site: str, limit: int = 20) -> list[Command]:
        """The newest remote commands of `site`, at most `limit`."""
        request = admin_pb2.ListCommandsRequest(site=site, limit=limit)
        answer = self._call(self._connect().ListCommands, request)
        return [_record(Command, c, kind=_command_kind_name(c.kind)) for c in answer.commands]

    def list_admin_tokens(self) -> list[AdminToken]:
        """Every admin token, active and revoked, oldest first."""
        request = admin_pb2.ListAdminTokensRequest()
        answer = self._call(self._connect().ListAdminTokens, request)
        return [_record(AdminToken, t) for t in answer.tokens]

    def revoke_admin_token(self, name: str) -> AdminToken:
        """Revoke the active admin token `name`; return it as revoked."""
        request = admin_pb2.RevokeAdminTokenRequest(name=name)
        return _record(AdminToken, self._call(self._connect().RevokeAdminToken, request).token)

    def list_alerts(self, site: str = "", limit: int = 50) -> AlertList:
        """The newest alert deliveries (of one site, or all), with totals."""
        request = admin_pb2.ListAlertsRequest(site=site, limit=limit)
        answer = self._call(self._connect().ListAlerts, request)
        return AlertList(
            deliveries=[_record(AlertDelivery, d) for d in answer.deliveries],
            pending=answer.pending,
            delivered=answer.delivered,
            failed=answer.failed,
            errors=answer.errors,
        )

    # --- plumbing ----------------------------------------------------------

    def _connect(self) -> admin_pb2_grpc.AdminServiceStub:
        if self._stub is None:
            self._channel = self._open_channel()
            self._stub = admin_pb2_grpc.AdminServiceStub(self._channel)
        return self._stub

    def _token(self) -> str:
        """The admin token, checked to be something a header can carry."""
        token = (self.settings.token or "").strip()
        if not token:
            raise errors.InvalidArgument(
                "no admin token given: pass --token or set STORESAFE_TOKEN"
            )
        if not (token.isascii() and token.isprintable()) or " " in token:
            raise errors.InvalidArgument(
                "the admin token holds characters no token has: check --token or STORESAFE_TOKEN"
            )
        return token

    def _open_channel(self) -> grpc.Channel:
        server = self.server
        host, _port = split_address(server)
        self._token()
        options = [
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            ("grpc.primary_user_agent", f"storesafe-cli/{VERSION}"),
        ]
        if self.settings.insecure:
            if not is_loopback(host):
                raise errors.InvalidArgument(
                    f"--insecure is allowed only for loopback addresses, not '{host}'"
                )
            return grpc.insecure_channel(server, options=options)
        return grpc.secure_channel(server, _credentials(self.settings.ca), options=options)

    def _call(self, method: grpc.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
        metadata = (("authorization", f"Bearer {self._token()}"),)
        try:
            return method(request, timeout=self.settings.timeout, metadata=metadata)
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = err.details() if isinstance(err, grpc.Call) else str(err)
            error = error_for(code, details, server=self.server, timeout=self.settings.timeout)
            if self.settings.insecure and error.message == _NO_SERVER.format(server=self.server):
                error = errors.Unavailable(_NO_PLAIN_SERVER.format(server=self.server))
            raise error from None


def _credentials(ca: Path | None) -> grpc.ChannelCredentials:
    """TLS trusting `ca` (the server's private CA), or the system roots when none is given."""
    if ca is None:
        return grpc.ssl_channel_credentials()
    try:
        pem = ca.expanduser().read_bytes()
    except OSError as err:
        raise errors.InvalidArgument(
            f"cannot read the CA certificate {ca}: {err.strerror or err}"
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise errors.InvalidArgument(f"{ca} is not a PEM CA certificate")
    return grpc.ssl_channel_credentials(root_certificates=pem)


# --- protobuf -> records ---------------------------------------------------


def _enum_name(enum: Any, value: int, prefix: str, known: tuple[str, ...]) -> str:
    """`SITE_STATUS_OK` -> `ok`, `RUN_KIND_IMAGE_SYNC` -> `image-sync`; `unknown` otherwise."""
    try:
        name = str(enum.Name(value)).removeprefix(prefix).lower().replace("_", "-")
    except ValueError:
        return "unknown"
    return name if name in known else "unknown"


def _status_value(status: str | None) -> types_pb2.SiteStatus.ValueType:
    if not status:
        return types_pb2.SITE_STATUS_UNSPECIFIED
    return types_pb2.SiteStatus.Value("SITE_STATUS_" + status.upper())


def _kind_value(kind: str | None) -> types_pb2.RunKind.ValueType:
    if not kind:
        return types_pb2.RUN_KIND_UNSPECIFIED
    return types_pb2.RunKind.Value("RUN_KIND_" + kind.upper().replace("-", "_"))


def _status_name(value: int) -> str:
    return _enum_name(types_pb2.SiteStatus, value, "SITE_STATUS_", STATUSES)


def _kind_name(value: int) -> str:
    return _enum_name(types_pb2.RunKind, value, "RUN_KIND_", KINDS)


FILE_STATES = ("kept", "pruned", "damaged", "missing")


def _file_state_name(value: int) -> str | None:
    if value == types_pb2.BACKUP_FILE_STATE_UNSPECIFIED:
        return None
    return _enum_name(types_pb2.BackupFileState, value, "BACKUP_FILE_STATE_", FILE_STATES)


def _outcome_name(value: int) -> str:
    return _enum_name(types_pb2.RunOutcome, value, "RUN_OUTCOME_", ("succeeded", "failed"))


def _verification_name(value: int) -> str:
    return _enum_name(
        types_pb2.Verification, value, "VERIFICATION_", ("passed", "failed", "not-run")
    )


def _scope_name(value: int) -> str:
    return _enum_name(admin_pb2.ConfigScope, value, "CONFIG_SCOPE_", SCOPES)


def _command_kind_name(value: int) -> str:
    return _enum_name(agent_pb2.CommandKind, value, "COMMAND_KIND_", COMMAND_KINDS)


def _record(cls: type[R], message: Any, **given: Any) -> R:
    """A record whose fields carry the proto field names: timestamps become datetimes
    (None for never), other fields are copied; `given` fields are taken as they are."""
    found = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in given:
            value = getattr(message, f.name)
            found[f.name] = _time(message, f.name) if isinstance(value, Timestamp) else value
    return cls(**found, **given)


def _time(message: Any, field: str) -> dt.datetime | None:
    """The timestamp `field` of `message`, or None when it is unset or zero (never)."""
    ts: Timestamp = getattr(message, field)
    if not message.HasField(field) or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return _EPOCH + dt.timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def _summary(row: admin_pb2.SiteSummary) -> SiteSummary:
    return SiteSummary(
        site=row.site,
        group=row.group,
        status=_status_name(row.status),
        last_good_backup_at=_time(row, "last_good_backup_at"),
        last_backup_at=_time(row, "last_backup_at"),
        last_image_sync_at=_time(row, "last_image_sync_at"),
        last_seen_at=_time(row, "last_seen_at"),
        config_revision_desired=row.config_revision_desired,
        config_revision_applied=row.config_revision_applied,
        agent_version=row.agent_version,
        problems=tuple(row.problems),
        hostname=row.hostname,
    )


def _health(h: types_pb2.FirebirdHealth) -> FirebirdHealth:
    """The record's fields carry the proto field names."""
    return FirebirdHealth(
        **{f.name: getattr(h, f.name) for f in dataclasses.fields(FirebirdHealth)}
    )


def _details(report: types_pb2.RunReport) -> dict[str, Any]:
    """The kind-specific figures of a report, with proto field names."""
    which = report.WhichOneof("details")
    if which == "backup":
        b = report.backup
        return {
            "method": b.method,
            "level": b.level,
            "file": b.file,
            "size_raw": b.size_raw,
            "size_compressed": b.size_compressed,
            "checksum": b.checksum,
            "verification": _verification_name(b.verification),
            "verification_seconds": b.verification_seconds,
            "verification_message": b.verification_message,
            "backup_seconds": b.backup_seconds,
            "table_counts": dict(b.table_counts),
            "firebird_version": b.firebird_version,
            "database": b.database,
            "health": dataclasses.asdict(_health(b.health)) if b.HasField("health") else None,
            "problems": list(b.problems),
            "validation_errors": b.validation_errors,
            "validation_warnings": b.validation_warnings,
        }
    if which == "image_sync":
        s = report.image_sync
        return {
            "files_scanned": s.files_scanned,
            "files_copied": s.files_copied,
            "bytes_copied": s.bytes_copied,
            "files_failed": s.files_failed,
        }
    if which == "validation":
        v = report.validation
        return {"errors": v.errors, "warnings": v.warnings, "summary": v.summary}
    if which == "upload":
        return {"file": report.upload.file, "bytes": report.upload.bytes}
    if which == "file_check":
        f = report.file_check
        return {
            "files_checked": f.files_checked,
            "bytes_checked": f.bytes_checked,
            "files_damaged": f.files_damaged,
            "restored": f.restored,
            "summary": f.summary,
        }
    return {}


def _run(row: admin_pb2.Run) -> Run:
    report = row.report
    return Run(
        id=report.id,
        site=row.site,
        kind=_kind_name(report.kind),
        outcome=_outcome_name(report.outcome),
        started_at=_time(report, "started_at"),
        finished_at=_time(report, "finished_at"),
        received_at=_time(row, "received_at"),
        trigger=report.trigger,
        error_class=report.error_class,
        error_message=report.error_message,
        details=_details(report),
        file_state=_file_state_name(row.file_state),
    )
