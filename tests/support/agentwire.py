"""A test oracle that decodes the agent's wire run reports back into its domain form.

The agent only encodes reports (agent/transport/convert.py); the round-trip
test decodes them here, independently: enum values map by their proto names,
detail fields by the dataclass field names.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from storesafe.v1 import types_pb2

from agent.domain.reports import (
    BackupDetails,
    Details,
    FileChange,
    FileCheckDetails,
    FileState,
    FirebirdHealth,
    ImageSyncDetails,
    Outcome,
    RunKind,
    RunReport,
    UploadDetails,
    ValidationDetails,
    Verification,
)

_DETAILS: dict[str, type[Any]] = {
    "backup": BackupDetails,
    "image_sync": ImageSyncDetails,
    "validation": ValidationDetails,
    "upload": UploadDetails,
    "file_check": FileCheckDetails,
}


def _enum_value(name: str, prefix: str) -> str:
    """RUN_KIND_IMAGE_SYNC -> image-sync (the domain enums' spelling)."""
    return name.removeprefix(prefix).lower().replace("_", "-")


def _time(ts: Any) -> dt.datetime:
    return ts.ToDatetime(tzinfo=dt.UTC)  # type: ignore[no-any-return]


def health_from_proto(msg: types_pb2.FirebirdHealth) -> FirebirdHealth:
    return FirebirdHealth(
        **{f.name: getattr(msg, f.name) for f in dataclasses.fields(FirebirdHealth)}
    )


def _details(msg: types_pb2.RunReport) -> Details | None:
    which = msg.WhichOneof("details")
    if which is None:
        return None
    sub = getattr(msg, which)
    dtype = _DETAILS[which]
    values: dict[str, Any] = {}
    for field in dataclasses.fields(dtype):
        value = getattr(sub, field.name)
        if field.name == "health":
            value = health_from_proto(value) if sub.HasField("health") else None
        elif field.name == "verification":
            name = types_pb2.Verification.Name(value)
            value = Verification(_enum_value(name, "VERIFICATION_"))
        elif field.name == "table_counts":
            value = dict(value)
        elif field.name == "problems":
            value = tuple(value)
        values[field.name] = value
    return dtype(**values)  # type: ignore[no-any-return]


def report_from_proto(msg: types_pb2.RunReport) -> RunReport:
    """The domain form of a wire report, as the agent encoded it."""
    return RunReport(
        id=msg.id,
        kind=RunKind(_enum_value(types_pb2.RunKind.Name(msg.kind), "RUN_KIND_")),
        started_at=_time(msg.started_at),
        finished_at=_time(msg.finished_at),
        outcome=Outcome(_enum_value(types_pb2.RunOutcome.Name(msg.outcome), "RUN_OUTCOME_")),
        error_class=msg.error_class,
        error_message=msg.error_message,
        trigger=msg.trigger,
        details=_details(msg),
        file_changes=tuple(
            FileChange(
                c.file,
                FileState(
                    _enum_value(types_pb2.BackupFileState.Name(c.state), "BACKUP_FILE_STATE_")
                ),
                c.reason,
            )
            for c in msg.file_changes
        ),
    )
