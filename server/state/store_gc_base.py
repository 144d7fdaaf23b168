"""The storage contract of the off-site store's maintenance: snapshot rows to forget,
chunk rows to condemn, rescue and delete, the maintenance lease and the run records."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Sequence

from server.domain.offsite import SnapshotRecord
from server.domain.store_gc import ChunkRow, MaintenanceRunRecord


class StoreGcState(abc.ABC):
    """Every write MUST be durable when it returns. A chunk row MUST only go from
    `stored` to `deleting` while it is condemned since before the given time (the row
    locked or the database's write lock held, so that a commit that rescues the chunk
    either happens before, and the row is skipped, or after, and sees `deleting`)."""

    @abc.abstractmethod
    async def sites(self) -> list[tuple[int, str, str]]:
        """(id, name, group) of every site that has chunks or snapshots in the index."""

    @abc.abstractmethod
    async def snapshots_of(self, site_id: int) -> list[SnapshotRecord]:
        """Every committed snapshot of the site."""

    @abc.abstractmethod
    async def good_runs(self, site_id: int, run_ids: Sequence[str]) -> dict[str, bool]:
        """For those of `run_ids` the server has as backup runs of the site: good or not."""

    @abc.abstractmethod
    async def snapshot_exists(self, site_id: int, snapshot_id: str) -> bool:
        """Whether the site has a committed snapshot with that id."""

    @abc.abstractmethod
    async def known_chunks(self, site_id: int, ids: Sequence[str]) -> set[str]:
        """Those of `ids` that have a row (in any state)."""

    @abc.abstractmethod
    async def forget_snapshot(self, site_id: int, snapshot_id: str) -> bool:
        """Delete the snapshot's row; False when it was gone already."""

    @abc.abstractmethod
    async def chunk_page(self, site_id: int, *, after: str, limit: int) -> list[ChunkRow]:
        """Up to `limit` of the site's chunk rows with ids above `after`, by id."""

    @abc.abstractmethod
    async def condemn(
        self, site_id: int, ids: Sequence[str], *, now: dt.datetime, stored_before: dt.datetime
    ) -> int:
        """Mark those of `ids` stored before `stored_before`, stored and not condemned yet
        as condemned at `now`; how many."""

    @abc.abstractmethod
    async def acquit(self, site_id: int, ids: Sequence[str]) -> int:
        """Clear the condemnation of those of `ids` still `stored`; how many."""

    @abc.abstractmethod
    async def begin_deleting(
        self, site_id: int, ids: Sequence[str], *, condemned_before: dt.datetime
    ) -> list[str]:
        """In one transaction, move those of `ids` that are stored and condemned before
        `condemned_before` to `deleting`; the ids moved."""

    @abc.abstractmethod
    async def tombstone(self, site_id: int, chunk_id: str, now: dt.datetime) -> bool:
        """Insert a `deleting` row for a blob the index lacks (an orphan about to be
        deleted); False when a row exists (the blob is not an orphan any more)."""

    @abc.abstractmethod
    async def drop_deleting(self, site_id: int, ids: Sequence[str]) -> int:
        """Delete the rows of those of `ids` in state `deleting`; how many. In the same
        transaction, the store check's damage rows of the deleted chunks MUST go and the
        site's count of damaged chunks follow (status names no chunk that is gone)."""

    @abc.abstractmethod
    async def take_lease(
        self, name: str, owner: str, *, now: dt.datetime, until: dt.datetime
    ) -> bool:
        """Own the lease `name` until `until` if it is free (released or never taken),
        expired at `now`, or ours; MUST give it to one caller when several race."""

    @abc.abstractmethod
    async def renew_lease(self, name: str, owner: str, *, until: dt.datetime) -> bool:
        """Extend our lease; False when it is not ours any more."""

    @abc.abstractmethod
    async def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up (if ours) so the next runner need not wait for it to expire."""

    @abc.abstractmethod
    async def database_now(self) -> dt.datetime | None:
        """The database server's clock; None where it has none of its own (SQLite)."""

    @abc.abstractmethod
    async def record_run(self, run: MaintenanceRunRecord) -> None:
        """Store a finished maintenance run."""

    @abc.abstractmethod
    async def last_runs(self, limit: int) -> list[MaintenanceRunRecord]:
        """The newest `limit` maintenance runs, newest first."""
