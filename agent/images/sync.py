"""One image-sync pass: scan the folder with the uploader, then seal and commit the snapshot.

Runs in a worker thread (see agent.images.capability). The snapshot lists
every live file the index holds a stored version of (path, size, mtime in
ns, chunks), whether read in this pass or before; its manifest parts are
sent like content, only when missing. It is committed only after a pass
that was not cut short and whose every chunk is on the server (the uploader
returns a file's ids only then), so a cut pass commits nothing and the next
one resumes by asking which chunks are missing.

A pass whose entries are exactly those of the last committed snapshot (the
index keeps that snapshot's id and a digest of the index rows its entries
are made of, see `_digest`: one query, no entry built) commits nothing: the
folder is "unchanged since" that snapshot, which stays current.

A pass has limits (`SyncSettings.max_pass_minutes`, the upload window): the
uploader stops at the next batch boundary once one is reached. Such a pass
is incomplete, not failed: the chunks it sent stay on the server, the files
it stored stay in the index with their content ids (the next pass neither
reads nor sends them again), and no snapshot is committed (a partial
manifest would look like mass deletion).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import itertools
import logging
import ntpath
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import orjson

from agent.domain.errors import AlreadyRunning
from agent.domain.offsite import MAX_MISSING_IDS, SnapshotCommit, SnapshotKind
from agent.images.errors import PassAlreadyRunning
from agent.images.index import INDEX_FILE, ImageIndex
from agent.images.paths import relpath_of
from agent.images.result import PassResult
from agent.images.scanner import Scanner
from agent.images.uploader import ImageUploader
from agent.lock import StateLock
from agent.offsite.bandwidth import TokenBucket
from agent.offsite.uploader import (
    SendTally,
    SyncStore,
    Uploader,
    UploadStopped,
    batch_bytes,
    chunk_ref,
)
from common.clock import Clock
from common.errors import FailedPrecondition, StoreSafeError
from common.vault import Entry, SiteKeys, SnapshotInfo, VaultError, seal_snapshot
from common.window import UploadWindow

log = logging.getLogger(__name__)


SHORT_ID = 12  # a snapshot id as the CLI lists it (and `--snapshot` accepts)
LAST_SNAPSHOT = "snapshot_id"  # index meta: the last snapshot this index committed
LAST_DIGEST = "snapshot_digest"  # index meta: the digest of its entries (see _digest)
LAST_UNLISTED = "snapshot_unlisted"  # index meta: stored files it could not list
_DIGEST_ROW = struct.Struct("<IqqI")  # key length, size, mtime in ns, content length


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    folder: str
    settle_seconds: int
    bandwidth_kbps: int
    max_pass_minutes: int = 30  # 0: no budget
    window: UploadWindow = dataclasses.field(default_factory=UploadWindow)


@dataclasses.dataclass(frozen=True)
class SyncOutcome:
    """A pass, what it sent, and the snapshot it committed ("" when none)."""

    result: PassResult
    sent: SendTally
    snapshot_id: str = ""
    snapshot_entries: int = 0
    unlisted: int = 0  # stored files whose names a manifest cannot hold
    error: str = ""  # why no snapshot was committed after a pass that did not fail
    current_snapshot_id: str = ""  # committed now, or the last one when nothing changed
    incomplete: str = ""  # why the pass stopped before it could commit ("" when complete)

    @property
    def unchanged(self) -> bool:
        """Complete, and the folder is as the last committed snapshot lists it."""
        return bool(self.current_snapshot_id) and not self.snapshot_id

    @property
    def summary(self) -> str:
        """One line on how the pass ended ("" for a failed pass: its error says it)."""
        if self.result.failed or self.error:
            return ""
        if self.incomplete:
            return (
                f"incomplete: {self.incomplete}; {self.result.stored:,} files stored in "
                "this pass are kept, the next pass goes on; no snapshot committed"
            )
        if self.snapshot_id:
            return f"snapshot {self.snapshot_id[:SHORT_ID]} committed"
        if self.current_snapshot_id:
            return f"unchanged since snapshot {self.current_snapshot_id[:SHORT_ID]}"
        return "no snapshot committed"


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
    limits = _Limits(settings, clock)
    uploader = Uploader(keys, store, bucket, batch_bytes=batch_bytes(bucket), should_stop=limits)
    with ImageIndex(state_dir / INDEX_FILE) as index, uploader:
        _same_data_key(index, keys)
        scanner = Scanner(
            index, settings.folder, settle_seconds=settings.settle_seconds, clock=clock
        )
        consumer = ImageUploader(uploader, index)
        try:
            scanned = scanner.scan(consumer)
        finally:
            consumer.close()  # nothing stays in flight; a late failure is the pass's
        result = _ended_by(scanned, consumer.failure)
        if result.failed:
            return SyncOutcome(result, uploader.tally)
        if result.cut_short:
            log.info("image sync pass stopped early: %s", result.cut_short)
            return SyncOutcome(result, uploader.tally, incomplete=result.cut_short)
        source = _source(settings.folder)
        digest = _digest(index, source)
        last = index.meta(LAST_SNAPSHOT) or ""
        if last and index.meta(LAST_DIGEST) == digest:
            unlisted = int(index.meta(LAST_UNLISTED) or 0)
            return SyncOutcome(result, uploader.tally, unlisted=unlisted, current_snapshot_id=last)
        entries = _Entries(index)
        try:
            sealed = seal_snapshot(
                keys,
                SnapshotInfo(site=keys.site, created=clock.now(), source=source),
                entries,
                unlisted=entries.unlist,
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
        except UploadStopped as stopped:
            log.info("image sync pass stopped before its commit: %s", stopped.reason)
            return SyncOutcome(result, uploader.tally, incomplete=stopped.reason)
        except StoreSafeError as exc:
            message = exc.message
            if isinstance(exc, FailedPrecondition):
                message += _repair(index, store)
            log.error("image snapshot not committed: %s", message)
            return SyncOutcome(result, uploader.tally, unlisted=entries.unlisted, error=message)
        index.set_meta(LAST_SNAPSHOT, sealed.snapshot_id)
        index.set_meta(LAST_DIGEST, digest)
        index.set_meta(LAST_UNLISTED, str(entries.unlisted))
        index.commit()
    return SyncOutcome(
        result,
        uploader.tally,
        snapshot_id=sealed.snapshot_id,
        snapshot_entries=sealed.entries,
        unlisted=entries.unlisted,
        current_snapshot_id=sealed.snapshot_id,
    )


def _ended_by(result: PassResult, failure: StoreSafeError | None) -> PassResult:
    """The pass's result, ended by a send that failed (or a stop) after its last file was
    handed over, which the scanner did not see: its rows were rolled back."""
    if failure is None or result.failed or result.cut_short:
        return result
    if isinstance(failure, UploadStopped):
        return dataclasses.replace(result, cut_short=failure.reason)
    return dataclasses.replace(
        result, aborted=True, errors=(*result.errors, f"sending the last files: {failure.message}")
    )


class _Limits:
    """Why the pass must stop now, or "": its time budget, the upload window (the
    uploader asks before each file and each batch)."""

    def __init__(self, settings: SyncSettings, clock: Clock) -> None:
        self._clock = clock
        self._minutes = settings.max_pass_minutes
        self._deadline = (
            clock.now() + dt.timedelta(minutes=self._minutes) if self._minutes > 0 else None
        )
        self._window = settings.window

    def __call__(self) -> str:
        now = self._clock.now()
        if self._deadline is not None and now >= self._deadline:
            return f"the pass used its time budget of {self._minutes} min (images.max_pass_minutes)"
        if not self._window.is_open(now):
            return f"the upload window ({self._window.describe()}) closed"
        return ""


def _same_data_key(index: ImageIndex, keys: SiteKeys) -> None:
    """Content ids are keyed by the site's data key: under another key (a key file made
    anew) the index's stored versions name nothing, so every file is read again."""
    known = index.meta("data_key_id")
    if known is not None and known != keys.key_id_hex:
        log.warning("the site data key changed: every image is read and sent again")
        index.forget(_all_keys(index))
    if known != keys.key_id_hex:  # written once, not by every pass
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
    """The index's stored files as manifest entries, made from the raw rows `_digest` reads
    (one query; no index entry, no datetimes); the seal checks each, and a name a manifest
    cannot hold is counted (`unlist`) and left out."""

    def __init__(self, index: ImageIndex) -> None:
        self._index = index
        self.unlisted = 0

    def __iter__(self) -> Iterator[Entry]:
        for key, size, mtime_ns, content in self._index.stored_rows():
            chunks = tuple(chunk_ref(cid) for cid in orjson.loads(content))
            yield Entry(relpath_of(key), size, mtime_ns, chunks)

    def unlist(self, exc: VaultError) -> None:
        self.unlisted += 1
        log.warning("not in the snapshot: %s", exc.message)


def _digest(index: ImageIndex, source: str) -> str:
    """A sha256 of what the snapshot's manifest is made of: the source folder's name and each
    stored file's key, size, mtime and content ids as the index holds them, in key order.
    The manifest's entries are made from exactly these, so equal digests mean equal
    manifests; no entry is built, checked or turned into JSON (two thirds of a no-change
    pass's time when they were)."""
    h = hashlib.sha256(f"storesafe-images-2\0{source}\n".encode())
    pack = _DIGEST_ROW.pack
    block: list[bytes] = []
    for key, size, mtime_ns, content in index.stored_rows():
        ids = content.encode()
        block += (pack(len(key), size, mtime_ns, len(ids)), key, ids)
        if len(block) >= 3000:
            h.update(b"".join(block))
            block.clear()
    h.update(b"".join(block))
    return h.hexdigest()
