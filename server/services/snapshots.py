"""The admin side of the off-site store: a site's snapshots, data keys and sealed chunks,
read for a restore (the server hands out sealed bytes; only the key file opens them)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence

from common.errors import InvalidArgument, NotFound
from common.names import check_name
from server.domain import offsite as rules
from server.domain.offsite import SiteKeyRecord, SnapshotRecord
from server.state.store_base import StoreState
from server.storage import BlobStore

READ_GROUP = 128  # chunks read from the store per hop to its threads (~0.7 MiB at 5 KiB)


@dataclasses.dataclass(frozen=True)
class SnapshotWithRecord:
    """A snapshot and its sealed record."""

    snapshot: SnapshotRecord
    record: bytes


class SnapshotQueries:
    """The four admin reads of the off-site store."""

    def __init__(self, state: StoreState, store: BlobStore) -> None:
        self._state = state
        self._store = store

    async def list_snapshots(self, site: str, *, kind: str, limit: int) -> list[SnapshotRecord]:
        """The site's snapshots of `kind` ("" for every kind), newest first."""
        site = check_name(site)
        if kind:
            rules.check_kind(kind)
        limit = min(limit or rules.SNAPSHOT_LIST_DEFAULT, rules.SNAPSHOT_LIST_MAX)
        return await self._state.list_snapshots(site, kind=kind, limit=limit)

    async def get_snapshot(
        self, site: str, *, snapshot_id: str, kind: str, backup_run_id: str = ""
    ) -> SnapshotWithRecord:
        """One snapshot with its sealed record; without an id, the newest of `kind`, or
        with `backup_run_id` the newest database snapshot copying that backup run."""
        site = check_name(site)
        if backup_run_id:
            if snapshot_id:
                raise InvalidArgument("give a snapshot id or a backup run id, not both")
            if kind and rules.check_kind(kind) != "database":
                raise InvalidArgument("a backup run is copied by database snapshots only")
            run_id = rules.check_run_id(backup_run_id)
            found = await self._state.copy_of_backup(site, run_id)
            if found is None:
                raise NotFound(f"site {site} has no off-site copy of backup run {run_id}")
            snap = found
        elif snapshot_id:
            snap = await self._state.find_snapshot(site, rules.check_id(snapshot_id, "snapshot id"))
        else:
            if kind:
                rules.check_kind(kind)
            newest = await self._state.list_snapshots(site, kind=kind, limit=1)
            if not newest:
                what = f"{kind} snapshot" if kind else "snapshot"
                raise NotFound(f"site {site} has no {what} yet")
            snap = newest[0]
        record = await self._store.load(rules.snapshot_name(site, snap.snapshot_id))
        return SnapshotWithRecord(snap, record)

    async def site_keys(self, site: str) -> list[SiteKeyRecord]:
        """The site's sealed data keys, oldest first."""
        return await self._state.site_keys(check_name(site))

    async def fetch_chunks(
        self, site: str, ids: Sequence[str]
    ) -> AsyncIterator[list[tuple[str, bytes]]]:
        """The site's sealed chunks in request order, in groups of up to `READ_GROUP` (one
        store read each, the next read while a group is sent); NotFound names the first id
        the site's index lacks, before anything is sent."""
        site = check_name(site)
        wanted = rules.check_ids(ids)
        site_id = await self._state.site_id(site)
        found = await self._state.indexed(site_id, wanted)
        for one in wanted:
            if one not in found:
                raise NotFound(f"site {site} has no stored chunk {one}")
        return self._stream(site, wanted)

    async def _stream(self, site: str, ids: list[str]) -> AsyncIterator[list[tuple[str, bytes]]]:
        groups = [ids[at : at + READ_GROUP] for at in range(0, len(ids), READ_GROUP)]
        reading: asyncio.Future[list[bytes]] | None = None
        try:
            for at, group in enumerate(groups):
                if reading is None:
                    reading = self._read(site, group)
                blobs = await reading
                reading = self._read(site, groups[at + 1]) if at + 1 < len(groups) else None
                yield list(zip(group, blobs, strict=True))
        finally:
            if reading is not None:  # the client went away: the read ahead is not wanted
                reading.cancel()
                reading.add_done_callback(_settled)

    def _read(self, site: str, group: list[str]) -> asyncio.Future[list[bytes]]:
        return asyncio.ensure_future(
            self._store.load_many([rules.chunk_name(site, one) for one in group])
        )


def _settled(read: asyncio.Future[list[bytes]]) -> None:
    """Take the outcome of a read ahead nobody waits for (so none is logged as lost)."""
    if not read.cancelled():
        read.exception()
