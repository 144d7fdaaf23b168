"""The fleet view as a per-replica cache: ListSites costs what changed, not the fleet size.

Every write to a site moves its `updated_at` (the tables' onupdate). The cache
asks only for sites changed since its last look (with an overlap that covers
commit delays and clock differences between replicas) and recomputes their
status. A status can also change with time alone (offline, stale, old image
sync): each entry carries the moment it must be recomputed without a write,
and entries that show a time-based problem are refreshed at least every
minute so their "not seen for N min" stays true. A new configuration
snapshot (thresholds, desired revisions) recomputes every view.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Protocol

from server.domain.records import SiteRow, SiteView
from server.domain.status import Status, StatusPolicy
from server.state.base import FleetState

OVERLAP = dt.timedelta(seconds=2)
TEXT_REFRESH = dt.timedelta(minutes=1)
NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)
EPSILON = dt.timedelta(seconds=1)  # statuses flip once the age is past the limit


class Viewer(Protocol):
    """What the cache needs from FleetQueries."""

    def view(self, row: SiteRow) -> SiteView: ...

    def policy_for(self, row: SiteRow) -> StatusPolicy: ...

    def config_revision(self) -> int: ...

    def now(self) -> dt.datetime: ...


@dataclasses.dataclass
class Entry:
    row: SiteRow
    view: SiteView
    recheck_at: dt.datetime


class SiteCache:
    def __init__(self, state: FleetState, viewer: Viewer) -> None:
        self._state = state
        self._viewer = viewer
        self._entries: dict[int, Entry] = {}
        self._order: list[int] = []
        self._watermark: dt.datetime | None = None
        self._config_revision = -1
        self._lock = asyncio.Lock()

    async def views(self) -> list[SiteView]:
        """Every site's current view, ordered by site name."""
        async with self._lock:
            looked_at = dt.datetime.now(dt.UTC)
            since = None if self._watermark is None else self._watermark - OVERLAP
            changed = await self._state.sites_changed_since(since)
            self._watermark = looked_at
            revision = self._viewer.config_revision()
            rebuild_all = revision != self._config_revision
            self._config_revision = revision
            added = False
            for row in changed:
                added = added or row.id not in self._entries
                self._entries[row.id] = self._entry(row)
            now = self._viewer.now()
            for key, entry in self._entries.items():
                if rebuild_all or entry.recheck_at <= now:
                    self._entries[key] = self._entry(entry.row)
            if added or len(self._order) != len(self._entries):
                self._order = sorted(self._entries, key=lambda k: self._entries[k].row.name)
            return [self._entries[k].view for k in self._order]

    def _entry(self, row: SiteRow) -> Entry:
        view = self._viewer.view(row)
        return Entry(row, view, self._recheck_at(row, view))

    def _recheck_at(self, row: SiteRow, view: SiteView) -> dt.datetime:
        policy = self._viewer.policy_for(row)
        now = self._viewer.now()
        if view.status.status in (Status.OFFLINE, Status.STALE) or any(
            p.startswith("last image sync") for p in view.status.problems
        ):
            return now + TEXT_REFRESH
        moments = []
        seen = row.last_seen_at or row.enrolled_at
        if seen is not None:
            moments.append(seen + dt.timedelta(minutes=policy.offline_after_minutes))
        if row.last_good_backup_at is not None:
            moments.append(row.last_good_backup_at + dt.timedelta(hours=policy.stale_after_hours))
        if row.last_image_sync_at is not None:
            moments.append(
                row.last_image_sync_at + dt.timedelta(hours=policy.image_sync_stale_after_hours)
            )
        future = [m + EPSILON for m in moments if m + EPSILON > now]
        return min(future, default=NEVER)
