"""The small JSON file in the state dir that records the last check-in, for `status`.

The running agent writes it (atomically) after every check-in attempt; the
`status` command reads it. It holds no secret.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

from agent.settings import write_atomic
from common.clock import iso

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CheckInStatus:
    """What the last check-in attempts showed; None means never."""

    last_attempt_at: dt.datetime | None = None
    last_checkin_at: dt.datetime | None = None
    last_result: str | None = None
    last_error: str = ""
    server_time: dt.datetime | None = None
    checkin_interval_seconds: float | None = None
    config_revision: int = 0
    desired_config_revision: int = 0
    last_delivery_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "last_attempt_at": iso(self.last_attempt_at),
            "last_checkin_at": iso(self.last_checkin_at),
            "last_result": self.last_result,
            "last_error": self.last_error,
            "server_time": iso(self.server_time),
            "checkin_interval_seconds": self.checkin_interval_seconds,
            "config_revision": self.config_revision,
            "desired_config_revision": self.desired_config_revision,
            "last_delivery_at": iso(self.last_delivery_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckInStatus:
        return cls(
            last_attempt_at=_time(data.get("last_attempt_at")),
            last_checkin_at=_time(data.get("last_checkin_at")),
            last_result=data.get("last_result"),
            last_error=str(data.get("last_error") or ""),
            server_time=_time(data.get("server_time")),
            checkin_interval_seconds=data.get("checkin_interval_seconds"),
            config_revision=int(data.get("config_revision") or 0),
            desired_config_revision=int(data.get("desired_config_revision") or 0),
            last_delivery_at=_time(data.get("last_delivery_at")),
        )


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


class StatusFile:
    """Reads and replaces the status file; a damaged or missing file reads as "never"."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> CheckInStatus:
        try:
            return CheckInStatus.from_json(json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return CheckInStatus()
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring the unreadable status file %s: %s", self.path, exc)
            return CheckInStatus()

    def save(self, status: CheckInStatus) -> None:
        """Replace the file; a failure is logged, never fatal (it is only for display)."""
        try:
            write_atomic(self.path, json.dumps(status.to_json(), indent=2).encode(), mode=0o644)
        except OSError as exc:
            log.warning("cannot write the status file %s: %s", self.path, exc)
