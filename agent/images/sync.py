"""One image-sync pass: scan the folder with the uploader, then seal and commit the snapshot.

Runs in a worker thread (see agent.images.capability). The snapshot lists
every live file the index holds a stored version of (path, size, mtime in
ns, chunks), whether read in this pass or before; its manifest parts are
sent like content, only when missing. It is committed only after a pass
that was not cut short and whose every chunk is on the server (the uploader
returns a file's ids only then), so a cut pass commits nothing and the next
one resumes by asking which chunks are missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import logging
import ntpath
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from agent.domain.errors import AlreadyRunning
from agent.domain.offsite import MAX_MISSING_IDS, SnapshotCommit, SnapshotKind
from agent.images.errors import PassAlreadyRunning
from agent.images.index import INDEX_FILE, ImageIndex
from agent.images.result import PassResult
from agent.images.scanner import Scanner
from agent.images.uploader import ImageUploader
from agent.lock import StateLock
from agent.offsite.bandwidth import TokenBucket
from agent.offsite.uploader import SendTally, SyncStore, Uploader, batch_bytes, chunk_ref
from common.clock import Clock
from common.errors import FailedPrecondition, StoreSafeError
from common.vault import Entry, SiteKeys, SnapshotInfo, VaultError, seal_snapshot

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    folder: str
    settle_seconds: int
    bandwidth_kbps: int


@dataclasses.dataclass(frozen=True)
class SyncOutcome:
    """A pass, what it sent, and the snapshot it committed ("" when none)."""

    result: PassResult
    sent: SendTally
    snapshot_id: str = ""
    snapshot_entries: int = 0
    unlisted: int = 0  # stored files whose names a manifest cannot hold
    error: str = ""  # why no snapshot was committed after a pass that did not fail


def run_sync(
    state_dir: Path,
    settings: SyncSettings,
    keys: SiteKeys,
    store: SyncStore,
    *,
    clock: Clock,
    sleep: Callable[[float], None],
) -> SyncOutcome:
    """Scan, upload, and commit one snapshot of the image folder."""
    with _one_pass_at_a_time(state_dir):
        return _run(state_dir, settings, keys, store, clock=clock, sleep=sleep)


@contextlib.contextmanager
def _one_pass_at_a_time(state_dir: Path) -> Iterator[None]:
    """Hold the image index for this process (the agent and a local sync-now share it)."""
    lock = StateLock(state_dir)
    try:
        lock.acquire()
    except AlreadyRunning:
        raise PassAlreadyRunning(
            "an image sync pass is running already (the agent's, or another sync-now); "
            "try again when it has finished"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _run(
    state_dir: Path,
    settings: SyncSettings,
    keys: SiteKeys,
    store: SyncStore,
    *,
    clock: Clock,
    sleep: Callable[[float], None],
) -> SyncOutcome:
    bucket = TokenBucket.kbps(settings.bandwidth_kbps, clock=clock, sleep=sleep)
    uploader = Uploader(keys, store, bucket, batch_bytes=batch_bytes(bucket))
    with ImageIndex(state_dir / INDEX_FILE) as index:
        _same_data_key(index, keys)
        scanner = Scanner(
            index, settings.folder, settle_seconds=settings.settle_seconds, clock=clock
        )
        result = scanner.scan(ImageUploader(uploader))
        if result.failed:
            return SyncOutcome(result, uploader.tally)
        entries = _Entries(index)
        try:
            sealed = seal_snapshot(
                keys,
                SnapshotInfo(site=keys.site, created=clock.now(), source=_source(settings.folder)),
                entries,
            )
            uploader.send_sealed(sealed.parts)
            store.commit(
                SnapshotCommit(
                    snapshot_id=sealed.snapshot_id,
                    record=sealed.record,
                    record_sha256=hashlib.sha256(sealed.record).digest(),
                    kind=SnapshotKind.IMAGES,
                    data_key_id=keys.key_id_hex,
                    created_at=clock.now(),
                    entries=sealed.entries,
                    size=sealed.size,
                    references=sorted(sealed.references),
                )
            )
        except StoreSafeError as exc:
            message = exc.message
            if isinstance(exc, FailedPrecondition):
                message += _repair(index, store)
            log.error("image snapshot not committed: %s", message)
            return SyncOutcome(result, uploader.tally, unlisted=entries.unlisted, error=message)
    return SyncOutcome(
        result,
        uploader.tally,
        snapshot_id=sealed.snapshot_id,
        snapshot_entries=sealed.entries,
        unlisted=entries.unlisted,
    )


def _same_data_key(index: ImageIndex, keys: SiteKeys) -> None:
    """Content ids are keyed by the site's data key: under another key (a key file made
    anew) the index's stored versions name nothing, so every file is read again."""
    known = index.meta("data_key_id")
    if known is not None and known != keys.key_id_hex:
        log.warning("the site data key changed: every image is read and sent again")
        index.forget(_all_keys(index))
    index.set_meta("data_key_id", keys.key_id_hex)
    index.commit()


def _all_keys(index: ImageIndex) -> list[bytes]:
    out: list[bytes] = []
    after: bytes | None = None
    while page := index.page(after):
        after = page[-1].key
        out.extend(e.key for e in page)
    return out


def _repair(index: ImageIndex, store: SyncStore) -> str:
    """After a commit refused for missing chunks: forget the files whose stored chunks the
    server lacks (lost from its store), so the next pass reads and sends them again."""
    broken: list[bytes] = []
    lacking = 0
    batch: list[tuple[bytes, list[str]]] = []
    asked = 0
    for row in itertools.chain(index.stored_entries(), [None]):
        if row is not None and row.content_ids is not None:
            ids = [chunk_ref(cid)[0] for cid in row.content_ids]
            batch.append((row.key, ids))
            asked += len(ids)
        if batch and (row is None or asked >= MAX_MISSING_IDS - 64):
            missing = set(_missing(store, {i for _, ids in batch for i in ids}))
            lacking += len(missing)
            broken.extend(key for key, ids in batch if missing.intersection(ids))
            batch, asked = [], 0
    if not broken:
        return ""
    index.forget(broken)
    index.commit()
    return (
        f"; the server lacks {lacking} chunks of {len(broken)} files stored earlier: "
        "they are read and sent again next pass"
    )


def _missing(store: SyncStore, ids: Iterable[str]) -> list[str]:
    ordered = sorted(ids)
    out: list[str] = []
    for start in range(0, len(ordered), MAX_MISSING_IDS):
        out.extend(store.missing(ordered[start : start + MAX_MISSING_IDS]))
    return out


def _source(folder: str) -> str:
    name = (
        ntpath.basename(folder.rstrip("\\/"))
        if "\\" in folder
        else os.path.basename(folder.rstrip("/"))
    )
    return (name if name and name.isprintable() else "images")[:255]


class _Entries:
    """The index's stored files as manifest entries; a name a manifest cannot hold is counted."""

    def __init__(self, index: ImageIndex) -> None:
        self._index = index
        self.unlisted = 0

    def __iter__(self) -> Iterator[Entry]:
        for row in self._index.stored_entries():
            assert row.content_ids is not None and row.stored is not None
            entry = Entry(
                row.path,
                row.stored.size,
                row.stored.mtime_ns,
                tuple(chunk_ref(cid) for cid in row.content_ids),
            )
            try:
                yield entry.check()
            except VaultError as exc:
                self.unlisted += 1
                log.warning("not in the snapshot: %s", exc.message)
