"""The storage contract of the off-site store's index: site data keys, the blob index
and committed snapshots (the sealed bytes themselves live in the blob store)."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Sequence

from server.domain.offsite import ChunkRecord, SiteKeyRecord, SnapshotRecord


class StoreState(abc.ABC):
    """Durable index of the off-site store. Every write MUST be durable when it returns,
    and MUST NOT wait behind (or delay) the batches of check-ins and reports. Agents'
    calls only add rows (and rescue condemned chunks); only maintenance
    (store_gc_base.StoreGcState) deletes them, and the store checks' findings
    (record_check) are replaced by each check. Every method that names a
    site by id takes it from the agent's credential; those taking a name MUST raise
    NotFound for an unknown site."""

    @abc.abstractmethod
    async def add_site_key(self, site_id: int, key: SiteKeyRecord) -> bool:
        """Store a data key; False (nothing changed) when the site has that key id
        already. The caller compares the stored text when it gets False."""

    @abc.abstractmethod
    async def site_key(self, site_id: int, data_key_id: str) -> SiteKeyRecord | None:
        """The site's data key with that id, or None."""

    @abc.abstractmethod
    async def site_keys(self, site: str) -> list[SiteKeyRecord]:
        """The site's data keys, oldest first."""

    @abc.abstractmethod
    async def chunks(self, site_id: int, ids: Sequence[str]) -> dict[str, ChunkRecord]:
        """Those of `ids` in the site's index, with their state (`stored` or `deleting`;
        any number of ids; only this site's rows MUST be seen)."""

    @abc.abstractmethod
    async def indexed(self, site_id: int, ids: Sequence[str]) -> set[str]:
        """Those of `ids` in the site's index, in any state (a restore's existence check:
        ids only; any number of ids; only this site's rows MUST be seen)."""

    @abc.abstractmethod
    async def add_chunk(self, site_id: int, chunk: ChunkRecord, now: dt.datetime) -> bool:
        """Index a chunk whose blob is durable; False when the site had that id already."""

    async def add_chunks(
        self, site_id: int, chunks: Sequence[ChunkRecord], now: dt.datetime
    ) -> set[str]:
        """Index chunks whose blobs are durable, in ONE transaction; the ids it added
        (those missing had their id indexed already)."""
        return {c.chunk_id for c in chunks if await self.add_chunk(site_id, c, now)}

    @abc.abstractmethod
    async def rescue_chunk(self, site_id: int, chunk_id: str) -> bool:
        """Clear the chunk's condemnation if it is stored; whether it is stored now (False:
        it is being deleted or gone)."""

    async def rescue_chunks(self, site_id: int, ids: Sequence[str]) -> set[str]:
        """`rescue_chunk` for each of `ids` in ONE transaction; those stored now."""
        return {one for one in ids if await self.rescue_chunk(site_id, one)}

    @abc.abstractmethod
    async def unstored(self, site_id: int, ids: Sequence[str]) -> list[str]:
        """Those of the distinct `ids` that are not stored (`deleting`, or not in the
        site's index), in the order given; any number of ids, read without a lock."""

    @abc.abstractmethod
    async def commit_snapshot(
        self, site_id: int, snap: SnapshotRecord, references: Sequence[str]
    ) -> tuple[bool, list[str]]:
        """In ONE transaction: check that every reference is stored (not `deleting`, not
        gone), rescue the condemned chunks among them, and insert the snapshot with their
        stored bytes. A sweep's move to `deleting` MUST NOT interleave: the write lock is
        held from the check to the commit, or each rescued row is locked and re-checked as
        it is rescued. Returns (inserted, missing): missing references mean nothing was
        inserted; inserted is False (and nothing checked) when the site had that snapshot
        id already."""

    @abc.abstractmethod
    async def snapshot(self, site_id: int, snapshot_id: str) -> SnapshotRecord | None:
        """The site's committed snapshot with that id, or None."""

    @abc.abstractmethod
    async def add_snapshot(self, site_id: int, snap: SnapshotRecord) -> bool:
        """Record a committed snapshot; False when the site had that id already."""

    @abc.abstractmethod
    async def find_snapshot(self, site: str, snapshot_id: str) -> SnapshotRecord:
        """The named snapshot of the site; NotFound when there is none."""

    @abc.abstractmethod
    async def copy_of_backup(self, site: str, backup_run_id: str) -> SnapshotRecord | None:
        """The site's newest database snapshot copying that backup run, or None."""

    @abc.abstractmethod
    async def list_snapshots(self, site: str, *, kind: str, limit: int) -> list[SnapshotRecord]:
        """The site's snapshots of `kind` ("" for all), newest (created_at) first."""

    # -- store checks (their findings are the one kind of row that is replaced) --

    @abc.abstractmethod
    async def sites_with_chunks(self) -> list[tuple[int, str]]:
        """(id, name) of every site that has stored chunks, by name."""

    @abc.abstractmethod
    async def count_chunks(self, site_id: int, ranges: Sequence[tuple[str, str | None]]) -> int:
        """How many of the site's chunks have ids in the [low, high) ranges (high None:
        no upper bound)."""

    @abc.abstractmethod
    async def chunk_page(
        self, site_id: int, low: str, high: str | None, after: str, limit: int
    ) -> list[ChunkRecord]:
        """Up to `limit` of the site's chunks with ids in [low, high) and above `after`,
        in id order."""

    @abc.abstractmethod
    async def all_snapshots(self, site_id: int) -> list[SnapshotRecord]:
        """Every committed snapshot of the site."""

    @abc.abstractmethod
    async def check_state(self, site_id: int) -> tuple[str, dict[str, str]]:
        """The site's store-check cursor ("" before the first check) and the chunks the
        checks know damaged or missing ({chunk id: state})."""

    @abc.abstractmethod
    async def record_check(
        self, site_id: int, *, damage: dict[str, str], summary: str, cursor: str, now: dt.datetime
    ) -> None:
        """Replace what the checks know of the site's damage with `damage` and move its
        cursor; the site's row shows the count and `summary` (its status reads them)."""

    @abc.abstractmethod
    async def site_id(self, site: str) -> int:
        """The id of the site named `site`; NotFound when there is none."""
