"""Ingest validation: the one function per agent message that judges every value it carries.

Pure functions over plain values (no gRPC, no protobuf, no state): the rpc edge
copies a message's fields into the `...Input` records below without judging them,
and the functions here turn those into the domain records the state stores, or
raise InvalidArgument naming the field (`report.backup.file`, `disks[2].free_bytes`).
The rules themselves are server/domain/rules.py (scalars) and
server/domain/details.py (a run's details, Firebird health). An enum value the
server does not know (a kind, an outcome, a file state) arrives as its number in
text and is refused here, by `choice`, the same way for every field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from server.domain.details import DETAILS, FIREBIRD_HEALTH, checked_fields, pattern
from server.domain.records import CheckInFacts, FileChange, RunRecord
from server.domain.rules import (
    MAX_INT64,
    bad,
    choice,
    file_name,
    integer,
    label,
    name,
    revision,
    text,
    timestamp,
)
from server.domain.status import Disk

KINDS = ("backup", "image-sync", "upload", "validation", "file-check")
"""The run kinds an agent reports."""
ADMIN_KINDS = ("drill", "store-check")
"""The run kinds the admin side records: restore drills (the admin CLI) and store checks
(the server itself). Agents never send these."""
ALL_KINDS = KINDS + ADMIN_KINDS
OUTCOMES = ("succeeded", "failed")
VERIFICATIONS = ("passed", "failed", "not-run")
COMMAND_OUTCOMES = ("succeeded", "failed", "rejected")
DETAILS_OF_KIND = {
    "backup": "backup",
    "image-sync": "image_sync",
    "validation": "validation",
    "upload": "upload",
    "file-check": "file_check",
    "drill": "drill",
    "store-check": "store_check",
}
CHANGED_FILE_STATES = ("pruned", "damaged", "missing")  # what a file change may report

MAX_DISKS = 16
MAX_FILE_CHANGES = 1000
MAX_RUN_LENGTH = dt.timedelta(days=30)
MAX_FUTURE = dt.timedelta(days=1)
MAX_TOKEN = 256

_RUN_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_ERROR_CLASS = re.compile(r"[A-Za-z0-9_.:-]{0,64}")
_TRIGGER = re.compile(r"[a-z-]{0,16}")
DRILL_TRIGGERS = ("drill", "restore")

Stamp = tuple[int, int] | None
"""A timestamp as sent: (seconds, nanos), or None when it was not set."""


@dataclasses.dataclass(frozen=True, slots=True)
class RunInput:
    """A run report's fields as sent. Enums arrive as their domain names, "" when
    unset, or the number as text when the value is unknown."""

    id: str
    kind: str
    started_at: Stamp
    finished_at: Stamp
    outcome: str
    error_class: str
    error_message: str
    trigger: str
    details_kind: str | None
    details: dict[str, Any]
    verification: str = ""
    file_changes: tuple[FileChange, ...] = ()  # as sent: a state unknown is its number


@dataclasses.dataclass(frozen=True, slots=True)
class CheckInInput:
    """A check-in's fields as sent; `firebird` in its stored JSON form."""

    agent_version: str
    hostname: str
    os: str
    agent_time: Stamp
    config_revision: int
    disks: tuple[Disk, ...]
    firebird: dict[str, Any] | None
    outbox_pending: int


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollInput:
    """What an agent sends to enroll."""

    token: str
    site: str
    hostname: str
    agent_version: str = ""
    os: str = ""


def run_record(run: RunInput, now: dt.datetime, *, kinds: tuple[str, ...] = KINDS) -> RunRecord:
    """The run report as the server stores it, once every field passed its rule;
    `kinds` are the run kinds this sender may report (an agent's by default)."""
    if not _RUN_ID.fullmatch(run.id):
        raise bad("report.id", "needs 1-64 letters, digits and '-'")
    kind = choice("report.kind", run.kind, kinds)
    outcome = choice("report.outcome", run.outcome, OUTCOMES)
    if run.started_at is None or run.finished_at is None:
        raise bad("report", "a run report needs started_at and finished_at")
    started = timestamp("report.started_at", *run.started_at)
    finished = timestamp("report.finished_at", *run.finished_at)
    if finished < started:
        raise bad("report.finished_at", "a run cannot finish before it started")
    if finished > now + MAX_FUTURE:
        raise bad("report.finished_at", "more than a day in the future")
    if finished - started > MAX_RUN_LENGTH:
        raise bad("report.started_at", "a run cannot last more than 30 days")
    details: dict[str, Any] = {}
    verification = ""
    if run.details_kind is not None:
        if run.details_kind != DETAILS_OF_KIND[kind]:
            raise bad(f"report.{run.details_kind}", f"a {kind} run cannot carry these details")
        spec = DETAILS[run.details_kind]
        where = f"report.{run.details_kind}"
        details = {run.details_kind: checked_fields(where, run.details, spec)}
        if kind == "backup":
            verification = choice(
                "report.backup.verification", run.verification, VERIFICATIONS, required=False
            )
    return RunRecord(
        id=run.id,
        kind=kind,
        started_at=started,
        finished_at=finished,
        outcome=outcome,
        verification=verification,
        error_class=pattern(_ERROR_CLASS, "an error class")("report.error_class", run.error_class),
        error_message=text("report.error_message", run.error_message, 2000),
        trigger=pattern(_TRIGGER, "a trigger")("report.trigger", run.trigger),
        details=details,
        file_changes=_file_changes(run.file_changes),
    )


def drill_record(run: RunInput, now: dt.datetime) -> RunRecord:
    """A restore drill the admin CLI ran, as the server stores it: a run of kind drill
    carrying its drill details, triggered by "drill" or "restore", without file changes."""
    record = run_record(run, now, kinds=("drill",))
    if "drill" not in record.details:
        raise bad("report.drill", "a drill run needs its drill details")
    choice("report.trigger", record.trigger, DRILL_TRIGGERS)
    if record.file_changes:
        raise bad("report.file_changes", "a drill run changes no backup file")
    drill = record.details["drill"]
    passed = drill.get("checksum_ok") is True and drill.get("restored") is True
    if record.outcome == "succeeded" and not (passed and not drill.get("validation_errors")):
        raise bad(
            "report.outcome",
            "a drill succeeds only with checksum_ok, restored and no validation errors",
        )
    return record


def _file_changes(changes: tuple[FileChange, ...]) -> tuple[FileChange, ...]:
    """Earlier backups whose file changed state: each names one file by its bare name."""
    if len(changes) > MAX_FILE_CHANGES:
        raise bad("report.file_changes", f"{len(changes)} entries; at most {MAX_FILE_CHANGES}")
    out = []
    for i, change in enumerate(changes):
        field = f"report.file_changes[{i}]"
        if not change.file:
            raise bad(f"{field}.file", "is required")
        out.append(
            FileChange(
                file_name(f"{field}.file", change.file),
                choice(f"{field}.state", change.state, CHANGED_FILE_STATES),
                text(f"{field}.reason", change.reason, 500),
            )
        )
    return tuple(out)


def checkin_facts(checkin: CheckInInput) -> CheckInFacts:
    """The check-in's facts, once every field passed its rule."""
    if len(checkin.disks) > MAX_DISKS:
        raise bad("disks", f"{len(checkin.disks)} entries; at most {MAX_DISKS}")
    agent_time = None
    if checkin.agent_time is not None:
        agent_time = timestamp("agent_time", *checkin.agent_time)
    firebird = None
    if checkin.firebird is not None:
        firebird = checked_fields("firebird", checkin.firebird, FIREBIRD_HEALTH)
    return CheckInFacts(
        agent_version=label("agent_version", checkin.agent_version, 64),
        hostname=label("hostname", checkin.hostname, 255),
        os=label("os", checkin.os, 255),
        agent_time=agent_time,
        config_revision=revision("config_revision", checkin.config_revision),
        disks=tuple(_disk(f"disks[{i}]", d) for i, d in enumerate(checkin.disks)),
        firebird=firebird,
        outbox_pending=integer("outbox_pending", checkin.outbox_pending, 0, 2**32 - 1),
    )


def _disk(field: str, disk: Disk) -> Disk:
    label(f"{field}.label", disk.label, 32)
    label(f"{field}.path", disk.path, 1024)
    integer(f"{field}.total_bytes", disk.total_bytes, 0, MAX_INT64)
    integer(f"{field}.free_bytes", disk.free_bytes, 0, MAX_INT64)
    if disk.free_bytes > disk.total_bytes:
        raise bad(f"{field}.free_bytes", "larger than total_bytes")
    return disk


def enroll(request: EnrollInput) -> EnrollInput:
    """The enrollment request, once every field passed its rule (the site trimmed)."""
    label("token", request.token, MAX_TOKEN)
    site = name("site", request.site.strip())
    return dataclasses.replace(
        request,
        site=site,
        hostname=label("hostname", request.hostname, 255),
        agent_version=label("agent_version", request.agent_version, 64),
        os=label("os", request.os, 255),
    )


def config_ack_error(error: str) -> str:
    """Why an agent refused a revision, as stored."""
    return text("error", error, 500)


def command_ack(command_id: str, outcome: str, message: str) -> tuple[str, str, str]:
    """(command_id, outcome, message) of a command acknowledgement, as stored."""
    if not _RUN_ID.fullmatch(command_id):
        raise bad("command_id", "needs 1-64 letters, digits and '-'")
    return (
        command_id,
        choice("outcome", outcome, COMMAND_OUTCOMES),
        text("message", message, 2000),
    )
