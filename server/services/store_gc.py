"""Maintenance of the off-site store: retention (forget the snapshots no keep rule
holds), then garbage collection of the chunks no remaining snapshot references.

Safe while uploads run (kopia's maintenance is the model):
- the referenced set is the union of the reference lists (refs blobs) of every
  remaining snapshot, held as 64-bit id prefixes (a collision only keeps a chunk);
- mark: a chunk not referenced and stored more than the margin ago is condemned;
- sweep (a later run): a chunk condemned more than the margin ago and still not
  referenced goes to `deleting` in one transaction, then its blob is deleted, then its
  row. A commit or an upload that uses a condemned chunk rescues it first, in its own
  transaction; one that comes after the move to `deleting` is refused (the agent sends
  the chunk again later). A run that stopped after the move is finished by the next;
- orphans (blobs without a row, older than the margin: a crash between writing a blob
  and indexing it) are deleted too, a chunk orphan behind a `deleting` row first;
- one owner at a time across replicas (a lease row, renewed while the run lasts), and
  no run while this server's clock and the database's disagree by over five minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable

import zstandard

from common.clock import Clock
from common.errors import FailedPrecondition, NotFound, StoreSafeError
from server.domain import offsite as rules
from server.domain.layers import ConfigSnapshot
from server.domain.store_gc import (
    DELETING,
    LEASE_NAME,
    MaintenanceReport,
    MaintenanceRunRecord,
    SiteReport,
    check_clock,
    ref_key,
)
from server.domain.store_retention import RetentionKeys, plan_forget
from server.state.store_gc_base import StoreGcState
from server.storage import BlobStore

log = logging.getLogger(__name__)

PAGE = 1000
LEASE_SECONDS = 600.0
KeysFor = Callable[[str, str], RetentionKeys]
RETENTION_KEYS = (
    "images.keep_snapshots",
    "images.keep_days",
    "upload.keep_daily",
    "upload.keep_weekly",
    "upload.keep_monthly",
)


def retention_keys(snapshot: ConfigSnapshot, site: str, group: str) -> RetentionKeys:
    """The site's effective retention keys from a configuration snapshot."""

    def value(name: str) -> int:
        return int(snapshot.value(site, group, name))

    return RetentionKeys(
        keep_snapshots=value("images.keep_snapshots"),
        keep_days=value("images.keep_days"),
        keep_daily=value("upload.keep_daily"),
        keep_weekly=value("upload.keep_weekly"),
        keep_monthly=value("upload.keep_monthly"),
    )


def new_owner() -> str:
    """Who runs maintenance here: host, process and a random part."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseLost(FailedPrecondition):
    """Another runner took the maintenance lease over (ours expired unrenewed)."""


class StoreMaintenance:
    """One maintenance run at a time, as the lease's owner."""

    def __init__(
        self,
        state: StoreGcState,
        store: BlobStore,
        clock: Clock,
        keys_for: KeysFor,
        *,
        margin: dt.timedelta,
        owner: str | None = None,
        lease_seconds: float = LEASE_SECONDS,
        wall_clock: Clock | None = None,
    ) -> None:
        self._state = state
        # the clock compared with the database's (default: `clock`); tests that move
        # `clock` hours ahead keep the machine's clock here
        self._wall = wall_clock or clock
        self._store = store
        self._clock = clock
        self._keys_for = keys_for
        self.margin = margin
        self.owner = owner or new_owner()
        self._lease = dt.timedelta(seconds=lease_seconds)
        self._lost = False
        self.crash_site = ""  # tests: stop as a crash would, after this site's move

    async def run(self, *, dry_run: bool = False) -> MaintenanceReport:
        """Retention, then garbage collection, over every site; recorded and logged.
        FailedPrecondition when another runner owns the lease or the clocks disagree."""
        now, wall = self._clock.now(), self._wall.now()
        report = MaintenanceReport(now, self.owner, dry_run, self.margin.total_seconds() / 3600)
        check_clock(wall, await self._state.database_now())
        if not dry_run and not await self._state.take_lease(
            LEASE_NAME, self.owner, now=wall, until=wall + self._lease
        ):
            raise FailedPrecondition(
                "another server is running the off-site store's maintenance now; "
                "it runs once at a time (try again when it has finished)"
            )
        self._lost = False
        renewer = None if dry_run else asyncio.create_task(self._renew(), name="gc-lease")
        try:
            for site_id, site, group in await self._state.sites():
                report.sites.append(await self._site(site_id, site, group, dry_run))
        except StoreSafeError as err:
            report.error = err.message
        finally:
            if renewer is not None:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            report.finished_at = self._clock.now()
            if not dry_run:
                await self._state.release_lease(LEASE_NAME, self.owner)
        await self._record(report)
        return report

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._lease.total_seconds() / 3)
            until = self._wall.now() + self._lease
            try:
                renewed = await self._state.renew_lease(LEASE_NAME, self.owner, until=until)
            except Exception:  # cannot prove the lease is still ours: stop deleting
                log.exception("could not renew the store maintenance lease")
                renewed = False
            if not renewed:
                self._lost = True
                return

    def _check_lease(self) -> None:
        if self._lost:
            raise LeaseLost(
                "the maintenance lease was lost (not renewed in time); this run stopped "
                "before deleting more; the next run finishes its work"
            )

    async def _record(self, report: MaintenanceReport) -> None:
        summary = report.as_json()
        finished = report.finished_at or report.started_at
        try:
            await self._state.record_run(
                MaintenanceRunRecord(
                    started_at=report.started_at,
                    finished_at=finished,
                    owner=report.owner,
                    dry_run=report.dry_run,
                    outcome=summary["outcome"],
                    summary=summary,
                    error=report.error or "; ".join(s.error for s in report.sites if s.error),
                )
            )
        except Exception:
            log.exception("could not record the store maintenance run")
        _log(report)

    async def _site(self, site_id: int, site: str, group: str, dry: bool) -> SiteReport:
        out = SiteReport(site)
        try:
            remaining = await self._retention(site_id, site, group, dry, out)
            referenced = await self._referenced(site, remaining)
            await self._collect(site_id, site, referenced, dry, out)
            await self._orphans(site_id, site, set(remaining), dry, out)
        except LeaseLost:
            raise
        except StoreSafeError as err:
            out.error = err.message
        except Exception as exc:  # a damaged refs blob, a database error: this site waits
            log.exception("store maintenance of site %s failed", site)
            out.error = f"unexpected {type(exc).__name__}: {str(exc)[:200]}"
        return out

    async def _retention(
        self, site_id: int, site: str, group: str, dry: bool, out: SiteReport
    ) -> list[str]:
        """Forget what no keep rule holds; the ids of the snapshots that remain."""
        snapshots = await self._state.snapshots_of(site_id)
        runs = [s.backup_run_id for s in snapshots if s.kind == "database"]
        good = await self._state.good_runs(site_id, runs)
        plan = plan_forget(
            snapshots, self._keys_for(site, group), run_good=good, now=self._clock.now()
        )
        gone = {f.snapshot_id for f in plan}
        for forget in plan:
            log.info(
                "site %s: forgetting snapshot %s (%s)", site, forget.snapshot_id, forget.reason
            )
            out.snapshots_forgotten += 1
            if dry:
                continue
            self._check_lease()
            await self._state.forget_snapshot(site_id, forget.snapshot_id)
            # the row first: a crash now leaves orphan blobs, which a later run deletes
            await self._store.remove(rules.snapshot_name(site, forget.snapshot_id))
            await self._store.remove(rules.refs_name(site, forget.snapshot_id))
        return [s.snapshot_id for s in snapshots if s.snapshot_id not in gone]

    async def _referenced(self, site: str, snapshot_ids: Iterable[str]) -> set[int]:
        """The union of the remaining snapshots' reference lists (as id prefixes)."""
        found: set[int] = set()
        for snapshot_id in snapshot_ids:
            try:
                packed = await self._store.load(rules.refs_name(site, snapshot_id))
            except NotFound:
                raise FailedPrecondition(
                    f"the reference list of snapshot {snapshot_id} is missing from the store, "
                    "so which chunks it needs is unknown; no chunk of this site is collected "
                    "until the blob is back (restore it from a backup of the store)"
                ) from None
            await asyncio.to_thread(_add_refs, found, packed)
        return found

    async def _collect(
        self, site_id: int, site: str, referenced: set[int], dry: bool, out: SiteReport
    ) -> None:
        now = self._clock.now()
        cutoff = now - self.margin
        after = ""
        while True:
            page = await self._state.chunk_page(site_id, after=after, limit=PAGE)
            if not page:
                return
            after = page[-1].chunk_id
            acquit, sweep, condemn, finish = [], [], [], []
            sizes = {row.chunk_id: row.size for row in page}
            for row in page:
                used = ref_key(row.chunk_id) in referenced
                if row.state == DELETING:
                    finish.append(row.chunk_id)
                elif used and row.condemned_at is not None:
                    acquit.append(row.chunk_id)
                elif used:
                    continue
                elif row.condemned_at is not None and row.condemned_at < cutoff:
                    sweep.append(row.chunk_id)
                elif row.condemned_at is None and row.stored_at < cutoff:
                    condemn.append(row.chunk_id)
            if dry:
                out.chunks_rescued += len(acquit)
                out.chunks_condemned += len(condemn)
                out.chunks_deleted += len(sweep) + len(finish)
                out.bytes_freed += sum(sizes[c] for c in (*sweep, *finish))
                continue
            out.chunks_rescued += await self._state.acquit(site_id, acquit)
            self._check_lease()
            moved = await self._state.begin_deleting(site_id, sweep, condemned_before=cutoff)
            if moved and site == self.crash_site:
                raise LeaseLost("stopped after the move to deleting (a simulated crash)")
            doomed = [*finish, *moved]
            await self._delete_chunks(site_id, site, doomed)
            out.chunks_deleted += len(doomed)
            out.bytes_freed += sum(sizes[c] for c in doomed)
            out.chunks_condemned += await self._state.condemn(
                site_id, condemn, now=now, stored_before=cutoff
            )

    async def _delete_chunks(self, site_id: int, site: str, ids: list[str]) -> None:
        for chunk_id in ids:
            self._check_lease()
            await self._store.remove(rules.chunk_name(site, chunk_id))
        await self._state.drop_deleting(site_id, ids)

    async def _orphans(
        self, site_id: int, site: str, snapshots: set[str], dry: bool, out: SiteReport
    ) -> None:
        """Delete blobs older than the margin that no row names."""
        cutoff = self._clock.now() - self.margin
        prefix = f"sites/{site}/"
        batch: list[str] = []
        async for info in self._store.list(prefix):
            if info.modified is None or info.modified >= cutoff:
                continue
            kind, _, rest = info.key[len(prefix) :].partition("/")
            name = rest.rsplit("/", 1)[-1]
            if kind == "chunks":
                batch.append(name)
                if len(batch) >= PAGE:
                    await self._chunk_orphans(site_id, site, batch, dry, out)
                    batch = []
            elif kind in ("snapshots", "refs") and name not in snapshots:
                if await self._state.snapshot_exists(site_id, name):
                    continue
                out.orphans_deleted += 1
                if not dry:
                    self._check_lease()
                    await self._store.remove(info.key)
        await self._chunk_orphans(site_id, site, batch, dry, out)

    async def _chunk_orphans(
        self, site_id: int, site: str, ids: list[str], dry: bool, out: SiteReport
    ) -> None:
        known = await self._state.known_chunks(site_id, ids)
        for chunk_id in ids:
            if chunk_id in known:
                continue
            out.orphans_deleted += 1
            if dry:
                continue
            self._check_lease()
            # a `deleting` row first: an upload of this id now waits instead of racing us
            if await self._state.tombstone(site_id, chunk_id, self._clock.now()):
                await self._delete_chunks(site_id, site, [chunk_id])


def _add_refs(found: set[int], packed: bytes) -> None:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(packed))
    for line in io.TextIOWrapper(reader, encoding="ascii"):
        ref = line.strip()
        if ref:
            found.add(ref_key(ref))


def _log(report: MaintenanceReport) -> None:
    figures = report.as_json()
    what = (
        f"forgot {figures['snapshots_forgotten']} snapshot(s), condemned "
        f"{figures['chunks_condemned']} chunk(s), rescued {figures['chunks_rescued']}, "
        f"deleted {figures['chunks_deleted']} ({figures['bytes_freed']} bytes) and "
        f"{figures['orphans_deleted']} orphan blob(s) over {len(report.sites)} site(s)"
    )
    if report.dry_run:
        log.info("store maintenance (dry run) would have: %s", what)
    elif report.ok:
        log.info("store maintenance: %s", what)
    else:
        failed = [f"{s.site}: {s.error}" for s in report.sites if s.error]
        log.error(
            "store maintenance failed (%s); so far it %s. Nothing referenced was deleted; "
            "the next run retries (or run `storesafe-server store-gc` now once the cause is "
            "fixed)",
            report.error or "; ".join(failed),
            what,
        )


@dataclasses.dataclass
class MaintenanceSchedule:
    """Runs maintenance every `every` (first after `first_delay`) inside `serve`."""

    maintenance: StoreMaintenance
    every: dt.timedelta
    first_delay: dt.timedelta = dt.timedelta(minutes=5)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.every.total_seconds() > 0:
            self._task = asyncio.create_task(self._loop(), name="store-maintenance")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_delay.total_seconds())
        while True:
            try:
                await self.maintenance.run()
            except asyncio.CancelledError:
                raise
            except StoreSafeError as err:
                log.warning("store maintenance did not run: %s", err.message)
            except Exception:
                log.exception(
                    "store maintenance failed unexpectedly; the next run retries in %s",
                    self.every,
                )
            await asyncio.sleep(self.every.total_seconds())
