"""Store checks (`storesafe verify-store`): re-read a share of each site's stored chunks
from the blob store and check their bytes against the index's digest (each with the
algorithm its row names: blake3, or sha256 for chunks of agents before BLAKE3).

Per site: the chunks known damaged or missing are read first, then the sampled arc
(server/domain/storecheck.py says which chunks and why). Reads and hashing run in the
blob store's worker threads, at most READS at a time for all checks of this server
together, so uploads and check-ins go on. The snapshots that reference a bad chunk
are found from their reference lists (refs blobs) with the backup runs they copy.
Each site's result is a run of kind store-check in its runs, and the damage found
replaces what the site's row knew (its status shows it until a check reads those
chunks fine).
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import zstandard

from common.clock import Clock
from common.errors import FailedPrecondition, NotFound
from common.names import check_name
from server.domain import offsite, storecheck
from server.domain.details import STORE_CHECK_DETAILS, checked_fields
from server.domain.offsite import ChunkRecord
from server.domain.records import AdminIdentity, AuditRecord, RunRecord
from server.state.base import FleetState
from server.state.store_base import StoreState
from server.storage import BlobStore

READS = 3
"""Chunks read at once by all store checks together (the blob store has more workers,
so agents' uploads are never starved)."""
PAGE = 256
"""Chunks fetched from the index, and read, per step; each step sends a progress update."""
_MAX_REFS_TEXT = offsite.MAX_REFERENCES * 65


@dataclasses.dataclass(frozen=True)
class CheckProgress:
    """Where the check of one site stands; `result` is set once the site is done."""

    site: str
    checked: int
    total: int
    bytes_checked: int
    result: RunRecord | None = None


class StoreChecks:
    def __init__(
        self,
        fleet: FleetState,
        state: StoreState,
        store: BlobStore,
        clock: Clock,
        *,
        reads: int = READS,
        first_position: Callable[[], int] = lambda: secrets.randbelow(storecheck.CIRCLE),
    ) -> None:
        self._fleet = fleet
        self._state = state
        self._store = store
        self._clock = clock
        self._reads = asyncio.Semaphore(reads)
        self._first_position = first_position

    async def verify(
        self, admin: AdminIdentity, site: str, percent: float
    ) -> AsyncIterator[CheckProgress]:
        """Check `site` (every site with stored chunks when ""), `percent` of each."""
        share = storecheck.check_percent(percent)
        if site:
            name = check_name(site)
            sites = [(await self._state.site_id(name), name)]
        else:
            sites = await self._state.sites_with_chunks()
            if not sites:
                raise FailedPrecondition("no site has chunks in the off-site store yet")
        await self._fleet.audit(
            AuditRecord(
                self._clock.now(), admin.name, "store.verify", site or "*", f"sample={share:g}%"
            )
        )
        return self._run(sites, share)

    async def _run(
        self, sites: Sequence[tuple[int, str]], share: float
    ) -> AsyncIterator[CheckProgress]:
        for site_id, name in sites:
            async for update in self._check_site(site_id, name, share):
                yield update

    async def _check_site(
        self, site_id: int, site: str, share: float
    ) -> AsyncIterator[CheckProgress]:
        started = self._clock.now()
        cursor, known = await self._state.check_state(site_id)
        arc = storecheck.Arc(storecheck.position(cursor, self._first_position()), share)
        still_indexed = await self._state.chunks(site_id, sorted(known))
        outside = [c for c in still_indexed.values() if not arc.holds(c.chunk_id)]
        total = len(outside) + await self._state.count_chunks(site_id, arc.ranges())
        damage: dict[str, str] = {}
        done = [0, 0]  # chunks, bytes
        yield CheckProgress(site, 0, total, 0)

        async def read(chunks: Sequence[ChunkRecord]) -> None:
            results = await asyncio.gather(*(self._read(site, c) for c in chunks))
            for chunk, (state, size) in zip(chunks, results, strict=True):
                if state:
                    damage[chunk.chunk_id] = state
                done[0] += 1
                done[1] += size

        # the known damage first, then the arc (skipping what was just read)
        first = sorted(still_indexed.values(), key=lambda c: c.chunk_id)
        for at in range(0, len(first), PAGE):
            await read(first[at : at + PAGE])
            yield CheckProgress(site, done[0], total, done[1])
        for low, high in arc.ranges():
            after = ""
            while True:
                page = await self._state.chunk_page(site_id, low, high, after, PAGE)
                if not page:
                    break
                await read([c for c in page if c.chunk_id not in still_indexed])
                yield CheckProgress(site, done[0], total, done[1])
                after = page[-1].chunk_id
        await self._drop_collected(site_id, damage)
        findings = storecheck.Findings(damage, await self._broken(site_id, site, damage))
        now = self._clock.now()
        await self._state.record_check(
            site_id,
            damage=damage,
            summary=findings.summary(),
            cursor=storecheck.cursor(arc.next_start),
            now=now,
        )
        details = findings.details(share, done[0], done[1])
        run = RunRecord(
            id=f"sc-{uuid.uuid4().hex}",
            kind="store-check",
            started_at=started,
            finished_at=max(now, started),
            outcome="failed" if damage else "succeeded",
            verification="",
            error_class="store_damage" if damage else "",
            error_message=findings.error_message(),
            trigger="verify-store",
            details={"store_check": checked_fields("store_check", details, STORE_CHECK_DETAILS)},
            site=site,
            received_at=now,
        )
        await self._fleet.store_report(site_id=site_id, run=run, now=now)
        yield CheckProgress(site, done[0], total, done[1], result=run)

    async def _drop_collected(self, site_id: int, damage: dict[str, str]) -> None:
        """A blob absent because garbage collection removed it meanwhile is not missing:
        only chunks still in the index count."""
        gone = [c for c, state in damage.items() if state == storecheck.MISSING]
        if gone:
            indexed = await self._state.chunks(site_id, gone)
            for chunk_id in gone:
                if chunk_id not in indexed:
                    del damage[chunk_id]

    async def _read(self, site: str, chunk: ChunkRecord) -> tuple[str, int]:
        """("" | damaged | missing, bytes read) of one stored chunk."""
        async with self._reads:
            try:
                size, digest = await self._store.digest(
                    offsite.chunk_name(site, chunk.chunk_id), chunk.algorithm
                )
            except NotFound:
                return storecheck.MISSING, 0
        return ("" if digest.hex == chunk.digest else storecheck.DAMAGED), size

    async def _broken(
        self, site_id: int, site: str, damage: dict[str, str]
    ) -> list[tuple[str, str, str]]:
        """(snapshot id, kind, backup run id) of the snapshots that reference a bad chunk;
        a snapshot whose reference list cannot be read counts as broken too."""
        if not damage:
            return []
        bad = set(damage)
        out = []
        for snap in await self._state.all_snapshots(site_id):
            try:
                packed = await self._store.load(offsite.refs_name(site, snap.snapshot_id))
                refs = await asyncio.to_thread(_references, packed)
            except (NotFound, zstandard.ZstdError, UnicodeDecodeError):
                refs = bad  # unreadable: cannot show the snapshot is whole
            if not bad.isdisjoint(refs):
                out.append((snap.snapshot_id, snap.kind, snap.backup_run_id))
        return out


def _references(packed: bytes) -> set[str]:
    text = zstandard.ZstdDecompressor().decompress(packed, max_output_size=_MAX_REFS_TEXT)
    return set(text.decode("ascii").split())
