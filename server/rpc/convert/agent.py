"""What agents send, as the domain's input records, and what the server sends them.

Decoding copies fields without judging them: server/domain/ingest.py judges every
value (an unknown enum value arrives as its number in text, see enums.py). The
hot inputs (check-ins and reports) are decoded in the writer, off the event loop
(server/deferred.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from storesafe.v1 import agent_pb2, types_pb2

from common.config_schema import Value
from common.errors import InvalidArgument
from server.domain import ingest
from server.domain.records import CommandRecord, FileChange
from server.domain.status import Disk
from server.rpc.convert.enums import (
    COMMAND_KIND_VALUES,
    COMMAND_OUTCOME_NAMES,
    FILE_STATE_NAMES,
    KIND_NAMES,
    OUTCOME_NAMES,
    VERIFICATION_NAMES,
    enum_name,
)
from server.rpc.convert.protodict import message_dict, scalar_dict_converter
from server.rpc.convert.stamps import stamp, ts
from server.services.agents import AgentEvent, CommandAck, ConfigAck
from server.services.push import ConfigDirective, Directive, ReconnectDirective

_FIREBIRD_TO_DICT = scalar_dict_converter(types_pb2.FirebirdHealth.DESCRIPTOR)


def checkin_input(req: agent_pb2.CheckInRequest) -> ingest.CheckInInput:
    """A check-in's fields as sent (ingest.checkin_facts judges them)."""
    disks = tuple(Disk(d.label, d.path, int(d.total_bytes), int(d.free_bytes)) for d in req.disks)
    firebird = _FIREBIRD_TO_DICT(req.firebird) if req.HasField("firebird") else None
    return ingest.CheckInInput(
        agent_version=req.agent_version,
        hostname=req.hostname,
        os=req.os,
        agent_time=stamp(req, "agent_time"),
        config_revision=req.config_revision,
        disks=disks,
        firebird=firebird,
        outbox_pending=req.outbox_pending,
    )


async def session_open(events: AsyncIterator[agent_pb2.AgentEvent]) -> agent_pb2.WatchConfigRequest:
    """The first message of a Session stream, which must open it."""
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise InvalidArgument("a session starts with an open message") from None
    if first.WhichOneof("kind") != "open":
        raise InvalidArgument("a session starts with an open message")
    return first.open


async def agent_events(events: AsyncIterator[agent_pb2.AgentEvent]) -> AsyncIterator[AgentEvent]:
    """The acks that follow a Session's open message, as domain events (judged by the
    service, as the same acks sent by AckConfig and AckCommand are)."""
    async for event in events:
        kind = event.WhichOneof("kind")
        if kind == "config_ack":
            ack = event.config_ack
            yield ConfigAck(ack.revision, ack.applied, ack.error, ack.site)
        elif kind == "command_ack":
            cmd = event.command_ack
            yield CommandAck(cmd.command_id, command_outcome(cmd.outcome), cmd.message, cmd.site)
        else:
            raise InvalidArgument("a session is opened once; later messages must be acks")


def command_outcome(value: int) -> str:
    return enum_name(COMMAND_OUTCOME_NAMES, value)


def run_input(report: types_pb2.RunReport) -> ingest.RunInput:
    """A run report's fields as sent (ingest.run_record judges them)."""
    which = report.WhichOneof("details")
    details: dict[str, Any] = {}
    verification = ""
    if which is not None:
        details = message_dict(getattr(report, which))
        if which == "backup":
            verification = enum_name(VERIFICATION_NAMES, report.backup.verification)
    return ingest.RunInput(
        id=report.id,
        kind=enum_name(KIND_NAMES, report.kind),
        started_at=stamp(report, "started_at"),
        finished_at=stamp(report, "finished_at"),
        outcome=enum_name(OUTCOME_NAMES, report.outcome),
        error_class=report.error_class,
        error_message=report.error_message,
        trigger=report.trigger,
        details_kind=which,
        details=details,
        verification=verification,
        file_changes=file_changes(report),
    )


def file_changes(report: types_pb2.RunReport) -> tuple[FileChange, ...]:
    """The earlier backups whose file changed state, as sent (an unknown state as its
    number: ingest refuses it, naming the field)."""
    return tuple(
        FileChange(c.file, enum_name(FILE_STATE_NAMES, c.state), c.reason)
        for c in report.file_changes
    )


def config_value(value: Value) -> agent_pb2.ConfigValue:
    if isinstance(value, bool):
        return agent_pb2.ConfigValue(flag=value)
    if isinstance(value, int):
        return agent_pb2.ConfigValue(integer=value)
    if isinstance(value, float):
        return agent_pb2.ConfigValue(number=value)
    return agent_pb2.ConfigValue(text=value)


def command_msg(cmd: CommandRecord) -> agent_pb2.Command:
    return agent_pb2.Command(
        id=cmd.id,
        kind=COMMAND_KIND_VALUES.get(cmd.kind, agent_pb2.COMMAND_KIND_UNSPECIFIED),
        created_at=ts(cmd.created_at),
        created_by=cmd.created_by,
    )


def directive(d: Directive) -> agent_pb2.AgentDirective:
    if isinstance(d, ConfigDirective):
        update = agent_pb2.ConfigUpdate(revision=d.revision)
        for k, v in d.values.items():
            update.values[k].CopyFrom(config_value(v))
        return agent_pb2.AgentDirective(config=update)
    if isinstance(d, ReconnectDirective):
        reconnect = agent_pb2.Reconnect(within_seconds=d.within_seconds)
        return agent_pb2.AgentDirective(reconnect=reconnect)
    return agent_pb2.AgentDirective(command=command_msg(d.command))
