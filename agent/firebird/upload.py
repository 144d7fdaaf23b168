"""The off-site copy of one verified backup: streamed, chunked, only the missing chunks sent.

Which backup (`choose`): the newest one whose manifest says GOOD and names
its backup run and the raw checksum taken at backup time (manifests from
before off-site upload have neither and are never uploaded), with its nbackup
chain. Only GOOD backups are ever chosen: an unverified or bad one is not.
When several wait (after an outage), only the newest is shipped and the log
names the ones passed over. The ledger in the state dir
(`offsite-uploads.json`) records the backup runs whose snapshot was committed.

How (`upload_backup`, in a worker thread at low priority): each stream (gbak:
the one .fbk.zst; nbackup: the chain's level files, level 0 first) is
decompressed as it is read (zstd checks every frame), cut with the BACKUPS
profile under the site's keyed chunker, and handed chunk by chunk to the
uploader (agent.offsite.uploader), which asks MissingChunks per batch and
seals and sends only the missing chunks, paced by the token bucket (a batch
on the wire while the next is read and sealed; each stream's end waits until
all of it is stored). The chunk refs go to a spool file in the state dir (36
bytes each), so memory holds two batches whatever the backup's size. Then
the database snapshot (common.vault.backupset) is sealed, its manifest parts
sent batch by batch as they are cut, and the snapshot committed (kind
database, the backup run id) with its distinct chunk ids read back from a
sorted file (agent.offsite.refspool). The local backup file is only read.

Before each batch the uploader asks `should_stop`: the upload window closed
or the run's time budget (upload.max_run_minutes) is spent ends the run
there, `complete=False` with the reason. The next run reads the file again
and MissingChunks skips every chunk that arrived.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import zstandard

from agent.domain.offsite import MAX_MISSING_IDS, SnapshotCommit, SnapshotKind
from agent.domain.reports import UploadDetails
from agent.firebird.files import Manifest, Status
from agent.offsite.bandwidth import TokenBucket
from agent.offsite.refspool import DistinctIds, RefSpool
from agent.offsite.uploader import SyncStore, Uploader, UploadStopped, batch_bytes
from agent.settings import write_atomic
from common.clock import Clock
from common.firebird.errors import BackupCorrupt
from common.vault import BACKUPS, SealedChunk, SiteKeys, cut_stream, seal_streamed
from common.vault.backupset import BackupInfo, StreamInfo, stream_entries
from common.vault.chunking import database_manifests
from common.window import UploadWindow

log = logging.getLogger(__name__)

LEDGER_FILE = "offsite-uploads.json"
LEDGER_KEEP = 100
SPOOL_DIR = "offsite-spool"
READ_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class UploadSettings:
    """The `upload.*` settings one run needs."""

    window: UploadWindow
    bandwidth_kbps: int = 0
    max_run_minutes: int = 60


@dataclasses.dataclass(frozen=True)
class Choice:
    """The backup to upload, its nbackup chain (lowest level first) and the backups passed over."""

    manifest: Manifest
    chain: tuple[Manifest, ...] = ()
    passed_over: tuple[str, ...] = ()

    @property
    def streams(self) -> tuple[Manifest, ...]:
        return (*self.chain, self.manifest)


class UploadLedger:
    """The backup runs whose snapshot the store holds (the newest LEDGER_KEEP)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LEDGER_FILE

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(k): str(v) for k, v in data["uploaded"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            log.warning("the upload ledger %s is damaged; starting it afresh", self.path)
            return {}

    def uploaded(self, run_id: str) -> bool:
        return run_id in self._load()

    def record(self, run_id: str, snapshot_id: str) -> None:
        done = self._load()
        done.pop(run_id, None)
        done[run_id] = snapshot_id
        kept = dict(list(done.items())[-LEDGER_KEEP:])
        write_atomic(self.path, json.dumps({"uploaded": kept}, indent=1).encode())


def uploadable(manifest: Manifest) -> bool:
    """A verified backup whose manifest has what a database snapshot records."""
    return manifest.status == Status.GOOD and bool(manifest.run_id and manifest.raw_sha256)


def choose(backups: list[Manifest], ledger: UploadLedger) -> Choice | None:
    """The newest good backup if it is not uploaded yet (None: nothing to do)."""
    good = [m for m in backups if uploadable(m)]
    if not good:
        return None
    newest = good[-1]
    if ledger.uploaded(newest.run_id):
        return None
    by_file = {m.file: m for m in backups}
    chain: list[Manifest] = []
    for file in newest.chain:
        member = by_file.get(file)
        if member is None or member.status == Status.BAD or not member.raw_sha256:
            log.warning(
                "backup %s is not uploaded: its nbackup chain file %s is missing, bad or "
                "has no raw checksum",
                newest.file,
                file,
            )
            return None
        chain.append(member)
    passed = tuple(m.file for m in good[:-1] if not ledger.uploaded(m.run_id))
    if passed:
        log.info(
            "%d older verified backup(s) not uploaded yet (%s); the newest, %s, is shipped instead",
            len(passed),
            ", ".join(passed[-3:]),
            newest.file,
        )
    return Choice(newest, tuple(chain), passed)


def stop_check(settings: UploadSettings, clock: Clock) -> Callable[[], str]:
    """Why the upload must stop now ("" while it may go on): window closed, budget spent."""
    deadline = clock.now().timestamp() + settings.max_run_minutes * 60

    def why() -> str:
        now = clock.now()
        if not settings.window.is_open(now):
            return f"the upload window ({settings.window.describe()}) closed"
        if now.timestamp() >= deadline:
            return f"the run used its {settings.max_run_minutes} minutes (upload.max_run_minutes)"
        return ""

    return why


class _Decompressed:
    """A .zst backup file as a readable stream of its plaintext (every frame checked)."""

    def __init__(self, fh: BinaryIO, name: str) -> None:
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            fh, read_size=READ_BYTES, read_across_frames=True, closefd=False
        )
        self._name = name
        self.size = 0

    def readinto(self, buffer: memoryview, /) -> int:
        try:
            n: int = self._reader.readinto(buffer)
        except zstandard.ZstdError as exc:
            raise BackupCorrupt(f"The backup file {self._name} is damaged ({exc}).") from None
        self.size += n
        return n


class _PartSender:
    """Manifest pieces as `seal_streamed` cuts them, sent a batch at a time (only the
    missing ones): memory holds one batch, not the manifest."""

    def __init__(self, uploader: Uploader) -> None:
        self._uploader = uploader
        self._batch: list[SealedChunk] = []
        self._bytes = 0

    def add(self, part: SealedChunk) -> None:
        self._batch.append(part)
        self._bytes += len(part.blob)
        if self._bytes >= self._uploader.batch_bytes or len(self._batch) >= MAX_MISSING_IDS:
            self.flush()

    def flush(self) -> None:
        batch, self._batch, self._bytes = self._batch, [], 0
        self._uploader.send_sealed(batch)


def upload_backup(
    choice: Choice,
    backup_dir: Path,
    settings: UploadSettings,
    keys: SiteKeys,
    store: SyncStore,
    *,
    spool_dir: Path,
    clock: Clock,
    sleep: Callable[[float], None],
) -> UploadDetails:
    """Send `choice`'s streams and commit its database snapshot; UploadDetails of the run.

    A stop (window, budget) returns complete=False with the reason; a store or
    file failure raises its typed error (nothing is committed).
    """
    bucket = TokenBucket.kbps(settings.bandwidth_kbps, clock=clock, sleep=sleep)
    uploader = Uploader(
        keys,
        store,
        bucket,
        batch_bytes=batch_bytes(bucket),
        should_stop=stop_check(settings, clock),
    )
    m = choice.manifest
    base = UploadDetails(
        file=m.file,
        backup_run_id=m.run_id,
        backup_size=sum(s.size_compressed for s in choice.streams),
    )
    spool_dir.mkdir(mode=0o700, exist_ok=True)
    for stale in spool_dir.iterdir():  # left by a run the agent's stop or a crash cut
        stale.unlink(missing_ok=True)
    spools: list[RefSpool] = []
    ids = DistinctIds(spool_dir / "ids.bin", 0)
    read: list[_Decompressed] = []  # the streams read so far, for the byte count
    try:
        for number, member in enumerate(choice.streams):
            spool = RefSpool(spool_dir / f"refs-{number:02d}.bin")
            spools.append(spool)
            _send_stream(member, backup_dir, keys, uploader, spool, read=read)
            spool.close()  # written: read back when the manifest is sealed
        info = _backup_info(choice, m)
        parts = _PartSender(uploader)
        sealed = seal_streamed(
            keys,
            info.snapshot_info(keys.site, clock.now()),
            (e for number, s in enumerate(spools) for e in stream_entries(number, s.refs())),
            parts.add,
            profile=database_manifests(info.size),
        )
        parts.flush()
        ids = DistinctIds.build(
            ids.path,
            itertools.chain(
                *(s.ids() for s in spools), (bytes.fromhex(p) for p in sealed.part_ids)
            ),
        )
        store.commit(
            SnapshotCommit(
                snapshot_id=sealed.snapshot_id,
                record=sealed.record,
                record_sha256=hashlib.sha256(sealed.record).digest(),
                kind=SnapshotKind.DATABASE,
                data_key_id=keys.key_id_hex,
                created_at=clock.now(),
                entries=sealed.entries,
                size=sealed.size,
                references=ids,  # sorted, distinct, read from the file batch by batch
                backup_run_id=m.run_id,
            )
        )
    except UploadStopped as stop:
        log.info("upload of %s paused: %s", m.file, stop.reason)
        return _details(base, uploader, read, complete=False, paused=stop.reason)
    finally:
        uploader.close()  # a failure leaves nothing in flight
        for spool in spools:
            spool.close()
            spool.path.unlink(missing_ok=True)
        ids.unlink()
    tally = uploader.tally
    log.info(
        "upload of %s committed as snapshot %s: %d chunks (%d bytes) sent, %d already stored",
        m.file,
        sealed.snapshot_id[:12],
        tally.chunks_sent,
        tally.bytes_sent,
        tally.chunks_present,
    )
    done = _details(base, uploader, read, complete=True, extra_bytes=len(sealed.record))
    return dataclasses.replace(done, snapshot_id=sealed.snapshot_id)


def _send_stream(
    member: Manifest,
    backup_dir: Path,
    keys: SiteKeys,
    uploader: Uploader,
    spool: RefSpool,
    *,
    read: list[_Decompressed],
) -> None:
    """Chunk one backup file's plaintext into the uploader; its refs into `spool`."""
    path = backup_dir / member.file
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise BackupCorrupt(
            f"The backup file {member.file} vanished from backup.dir before its upload."
        ) from None
    with fh:
        stream = _Decompressed(fh, member.file)
        read.append(stream)
        try:
            for chunk in cut_stream(keys, stream, BACKUPS):
                spool.add(chunk.chunk_id, len(chunk.data))
                uploader.add(chunk)
        except BaseException:
            uploader.drop_pending()
            raise
    uploader.flush()
    if stream.size != member.size_raw:
        raise BackupCorrupt(
            f"The backup file {member.file} holds {stream.size} bytes of backup, its manifest "
            f"{member.size_raw}: it is damaged or cut short."
        )


def _backup_info(choice: Choice, m: Manifest) -> BackupInfo:
    streams = tuple(
        StreamInfo(index=n, file=s.file, size=s.size_raw, sha256=s.raw_sha256, level=s.level)
        for n, s in enumerate(choice.streams)
    )
    return BackupInfo(
        run_id=m.run_id,
        method=m.method,
        database=m.database,
        backup_sha256=m.sha256,
        backup_size=m.size_compressed,
        streams=streams,
    ).check()


def _details(
    base: UploadDetails,
    uploader: Uploader,
    read: list[_Decompressed],
    *,
    complete: bool,
    paused: str = "",
    extra_bytes: int = 0,
) -> UploadDetails:
    tally = uploader.tally
    return dataclasses.replace(
        base,
        bytes=sum(s.size for s in read),
        bytes_sent=tally.bytes_sent + extra_bytes,
        chunks_sent=tally.chunks_sent,
        chunks_present=tally.chunks_present,
        complete=complete,
        paused_reason=paused,
    )
