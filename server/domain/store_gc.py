"""The off-site store's garbage collection: its records, its safety rules (the time
margin, the clock check, the lease) and the report of a maintenance run.

kopia's maintenance is the model: nothing younger than a margin is collected, a chunk
is first condemned and only deleted by a later run after another margin, one owner
runs maintenance at a time, and a server whose clock disagrees with the database's by
more than five minutes refuses to run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from common.clock import iso
from common.errors import FailedPrecondition, InvalidArgument

LEASE_NAME = "store-gc"
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
DEFAULT_MARGIN_HOURS = 24.0
MIN_MARGIN_HOURS = 1.0
STORED, DELETING = "stored", "deleting"


@dataclasses.dataclass(frozen=True)
class ChunkRow:
    """A chunk's row in the blob index as garbage collection sees it."""

    chunk_id: str
    size: int
    stored_at: dt.datetime
    condemned_at: dt.datetime | None
    state: str


@dataclasses.dataclass
class SiteReport:
    """What one maintenance run did (or, dry, would do) to one site."""

    site: str
    snapshots_forgotten: int = 0
    chunks_condemned: int = 0
    chunks_rescued: int = 0
    chunks_deleted: int = 0
    bytes_freed: int = 0
    orphans_deleted: int = 0
    error: str = ""


@dataclasses.dataclass
class MaintenanceReport:
    """A whole run: per site, and the totals."""

    started_at: dt.datetime
    owner: str
    dry_run: bool
    margin_hours: float
    sites: list[SiteReport] = dataclasses.field(default_factory=list)
    finished_at: dt.datetime | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not any(s.error for s in self.sites)

    def total(self, field: str) -> int:
        return sum(int(getattr(s, field)) for s in self.sites)

    def as_json(self) -> dict[str, Any]:
        totals = (
            "snapshots_forgotten",
            "chunks_condemned",
            "chunks_rescued",
            "chunks_deleted",
            "bytes_freed",
            "orphans_deleted",
        )
        return {
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "owner": self.owner,
            "dry_run": self.dry_run,
            "margin_hours": self.margin_hours,
            "outcome": "succeeded" if self.ok else "failed",
            "error": self.error or None,
            **{name: self.total(name) for name in totals},
            "sites": [dataclasses.asdict(s) for s in self.sites],
        }


@dataclasses.dataclass(frozen=True)
class MaintenanceRunRecord:
    """A recorded maintenance run, as `store-gc --last` shows it."""

    started_at: dt.datetime
    finished_at: dt.datetime
    owner: str
    dry_run: bool
    outcome: str
    summary: dict[str, Any]
    error: str


def check_margin(hours: float) -> dt.timedelta:
    """The margin as a time span; InvalidArgument below an hour."""
    if not hours >= MIN_MARGIN_HOURS:
        raise InvalidArgument(
            f"the garbage collection margin must be at least {MIN_MARGIN_HOURS:g} hour(s), "
            f"not {hours:g}"
        )
    return dt.timedelta(hours=hours)


def check_clock(server_now: dt.datetime, database_now: dt.datetime | None) -> None:
    """FailedPrecondition when the two clocks disagree by more than MAX_CLOCK_SKEW
    (None: the database has no clock of its own, as SQLite, so nothing to compare)."""
    if database_now is None:
        return
    skew = abs((server_now - database_now).total_seconds())
    if skew > MAX_CLOCK_SKEW.total_seconds():
        raise FailedPrecondition(
            f"this server's clock and the database's differ by {skew:.0f} s (more than "
            f"{MAX_CLOCK_SKEW.total_seconds() / 60:.0f} minutes); garbage collection does "
            "not run until they agree: fix the time (NTP) on the server or the database host"
        )


def ref_key(chunk_id: str) -> int:
    """The first 64 bits of a chunk id, as the referenced set holds it: a collision only
    ever keeps a chunk (ids are keyed hashes, so collisions are vanishingly rare)."""
    return int(chunk_id[:16], 16)
