"""Domain forms of what the agent and the server say to each other, besides run reports.

agent/transport converts these to and from `storesafe.v1`; nothing else in
the agent sees protobuf.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from agent.domain.reports import DiskUsage, FirebirdHealth
from common.config_schema import Value


@dataclasses.dataclass(frozen=True)
class EnrollRequest:
    """Ask to join the fleet for one site with a one-time token."""

    token: str = dataclasses.field(repr=False)
    site: str
    hostname: str
    agent_version: str
    os: str


@dataclasses.dataclass(frozen=True)
class Enrollment:
    """The server's answer to enrollment: who this agent is and its secret."""

    agent_id: str
    credential: str = dataclasses.field(repr=False)
    site: str
    group: str


@dataclasses.dataclass(frozen=True)
class CheckIn:
    """What the agent knows about itself right now."""

    agent_version: str
    hostname: str
    os: str
    agent_time: dt.datetime
    config_revision: int = 0
    disks: tuple[DiskUsage, ...] = ()
    firebird: FirebirdHealth | None = None
    outbox_pending: int = 0


@dataclasses.dataclass(frozen=True)
class CheckInReply:
    """What the server wants the agent to know; 0 means "not said"."""

    server_time: dt.datetime | None
    desired_config_revision: int = 0
    checkin_interval_seconds: int = 0


@dataclasses.dataclass(frozen=True)
class ConfigPush:
    """The complete effective configuration of one revision, as the server sent it.

    Values are typed but not yet validated; `agent.configsync` validates them.
    """

    revision: int
    values: Mapping[str, Value] = dataclasses.field(repr=False)


# The remote command kinds the agent understands, and the job each one asks for.
COMMAND_JOBS: Mapping[str, str] = {"backup-now": "backup", "sync-now": "image sync"}


@dataclasses.dataclass(frozen=True)
class RemoteCommand:
    """A command from the server; `kind` is "backup-now", "sync-now" or "" (unknown)."""

    id: str
    kind: str
    created_at: dt.datetime | None = None
    created_by: str = ""


@dataclasses.dataclass(frozen=True)
class ServerGoingAway:
    """The server is stopping: reconnect at a random moment within `within_seconds`."""

    within_seconds: int


Directive = ConfigPush | RemoteCommand | ServerGoingAway
