"""The wire's enum values and the domain's names for them, both ways.

An enum value a peer sends that the server does not know becomes its number as
text (enum_name), so the one rule that judges the field refuses it naming the
value; an unset one becomes "".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storesafe.v1 import admin_pb2, agent_pb2, types_pb2

from server.domain.status import Status

KIND_NAMES = {
    types_pb2.RUN_KIND_BACKUP: "backup",
    types_pb2.RUN_KIND_IMAGE_SYNC: "image-sync",
    types_pb2.RUN_KIND_UPLOAD: "upload",
    types_pb2.RUN_KIND_VALIDATION: "validation",
    types_pb2.RUN_KIND_FILE_CHECK: "file-check",
    types_pb2.RUN_KIND_DRILL: "drill",
    types_pb2.RUN_KIND_STORE_CHECK: "store-check",
}
KIND_VALUES = {v: k for k, v in KIND_NAMES.items()}
OUTCOME_NAMES = {
    types_pb2.RUN_OUTCOME_SUCCEEDED: "succeeded",
    types_pb2.RUN_OUTCOME_FAILED: "failed",
}
OUTCOME_VALUES = {v: k for k, v in OUTCOME_NAMES.items()}
VERIFICATION_NAMES = {
    types_pb2.VERIFICATION_PASSED: "passed",
    types_pb2.VERIFICATION_FAILED: "failed",
    types_pb2.VERIFICATION_NOT_RUN: "not-run",
}
STATUS_VALUES = {
    Status.OK: types_pb2.SITE_STATUS_OK,
    Status.WARNING: types_pb2.SITE_STATUS_WARNING,
    Status.STALE: types_pb2.SITE_STATUS_STALE,
    Status.FAILING: types_pb2.SITE_STATUS_FAILING,
    Status.NEVER: types_pb2.SITE_STATUS_NEVER,
    Status.OFFLINE: types_pb2.SITE_STATUS_OFFLINE,
}
STATUS_NAMES = {v: k for k, v in STATUS_VALUES.items()}

FILE_STATE_NAMES = {
    types_pb2.BACKUP_FILE_STATE_KEPT: "kept",
    types_pb2.BACKUP_FILE_STATE_PRUNED: "pruned",
    types_pb2.BACKUP_FILE_STATE_DAMAGED: "damaged",
    types_pb2.BACKUP_FILE_STATE_MISSING: "missing",
}
FILE_STATE_VALUES = {v: k for k, v in FILE_STATE_NAMES.items()}

COMMAND_KIND_NAMES = {
    agent_pb2.COMMAND_KIND_BACKUP_NOW: "backup-now",
    agent_pb2.COMMAND_KIND_SYNC_NOW: "sync-now",
}
COMMAND_KIND_VALUES = {v: k for k, v in COMMAND_KIND_NAMES.items()}
COMMAND_OUTCOME_NAMES = {
    agent_pb2.COMMAND_OUTCOME_SUCCEEDED: "succeeded",
    agent_pb2.COMMAND_OUTCOME_FAILED: "failed",
    agent_pb2.COMMAND_OUTCOME_REJECTED: "rejected",
}
SCOPE_NAMES = {
    admin_pb2.CONFIG_SCOPE_FLEET: "fleet",
    admin_pb2.CONFIG_SCOPE_GROUP: "group",
    admin_pb2.CONFIG_SCOPE_SITE: "site",
}
SCOPE_VALUES = {v: k for k, v in SCOPE_NAMES.items()}


def enum_name(names: Mapping[Any, str], value: int) -> str:
    """The domain name of an enum value: "" when unset, the number as text when unknown
    (ingest refuses it, saying which)."""
    found = names.get(value)
    if found is not None:
        return found
    return "" if value == 0 else str(value)
