"""Reassembling a database snapshot of the off-site store into plain backup files, checked.

A database snapshot (common/vault/backupset.py) copies one verified backup as
its logical streams: one gbak stream (written to PATH, a plain .fbk that
stock `gbak -c` restores), or the level files of an nbackup chain (written
into the folder PATH, level 0 first, each under its file name without
`.zst`). Each chunk is fetched in batches and opened with the site's keys
(`restore_fetch.Chunks`: seal and keyed id checked); each stream is written
to `<file>.partial`, and its size and sha256 are checked against what the
snapshot recorded and against the raw checksum the server recorded for the
backup run at backup time (BackupDetails.raw_checksum) before it takes its
final name. A stream that fails its check is removed whole.

Resuming: after every batch the partial file is flushed to disk and
`<file>.partial.json` says how many chunks of which snapshot it holds. A
restore cut short (the connection lost, the process stopped) leaves both; the
next run of the same snapshot reads the partial back into the checksum, drops
any tail past the recorded point, and continues from the next chunk. A
partial of another snapshot is started afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

import orjson

from cli.models import Run, SealedSnapshotRecord, SnapshotSummary
from cli.progress import Advance, Start
from cli.restore_fetch import Chunks, batch_end
from cli.snapshot_open import SHORT_ID, Source, open_sealed, site_keys
from common.errors import FailedPrecondition, NotFound, quote
from common.vault.backupset import BackupInfo, StreamInfo, stream_refs
from common.vault.errors import BadManifest
from common.vault.keys import FleetPrivateKey
from common.vault.manifest import ChunkRef
from common.vault.sitekeys import SiteKeys

KIND = "database"
PARTIAL = ".partial"
STATE = ".partial.json"
READ_BACK = 1 << 20


class ChunkUnusable(FailedPrecondition):
    """A chunk the backup needs is missing from the store or fails its check (named)."""

    code = "restore.chunk"


class StreamMismatch(FailedPrecondition):
    """A reassembled stream is not the one recorded at backup time."""

    code = "restore.checksum"


class TargetExists(FailedPrecondition):
    """The restore would replace a file that is there (without --force)."""

    code = "restore.exists"


class BackupSource(Source, Protocol):
    """A restore's calls, and the site's runs (the raw checksums recorded at backup time)."""

    def list_runs(self, site: str, kind: str | None = None, limit: int = 20) -> list[Run]: ...


@dataclasses.dataclass(frozen=True)
class StreamFile:
    """Where one stream of the backup goes, and its chunks in order."""

    stream: StreamInfo
    refs: list[ChunkRef]
    path: Path

    @property
    def partial(self) -> Path:
        return self.path.with_name(self.path.name + PARTIAL)

    @property
    def state(self) -> Path:
        return self.path.with_name(self.path.name + STATE)

    @functools.cached_property
    def offsets(self) -> list[int]:
        """Where each chunk starts in the stream, and its size last."""
        return list(itertools.accumulate((n for _, n in self.refs), initial=0))


@dataclasses.dataclass
class Plan:
    """An opened database snapshot and where its streams go."""

    site: str
    snapshot: SnapshotSummary
    info: BackupInfo
    keys: SiteKeys
    files: list[StreamFile]
    # stream index -> the raw checksum (hex) the server recorded for its backup run
    recorded: dict[int, str]

    @property
    def method(self) -> str:
        return self.info.method


@dataclasses.dataclass
class Fetched:
    """What a fetch did: the checked files and the figures."""

    plan: Plan
    bytes_fetched: int = 0
    bytes_written: int = 0
    bytes_resumed: int = 0
    seconds: float = 0.0

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.plan.files]

    @property
    def checked_against_server(self) -> bool:
        """Whether every stream was also checked against the server's raw checksum."""
        return len(self.plan.recorded) == len(self.plan.files)


def find_snapshot(source: BackupSource, site: str, run_id: str = "") -> SealedSnapshotRecord:
    """The newest database snapshot of `site`, or the newest copying backup run `run_id`."""
    try:
        sealed = source.get_snapshot(site, kind=KIND, backup_run_id=run_id)
    except NotFound:
        if run_id:
            raise NotFound(
                f"site {site} has no database snapshot of backup run {run_id} in the off-site store"
            ) from None
        raise NotFound(f"site {site} has no database snapshot in the off-site store") from None
    if run_id and sealed.snapshot.backup_run_id != run_id:
        # a server that does not know backup_run_id sends the newest: look it up instead
        found = [
            s
            for s in source.list_snapshots(site, kind=KIND, limit=1000)
            if s.backup_run_id == run_id
        ]
        if not found:
            raise NotFound(
                f"site {site} has no database snapshot of backup run {run_id} in the off-site store"
            )
        sealed = source.get_snapshot(site, found[0].snapshot_id, kind=KIND)
    return sealed


def open_plan(
    source: BackupSource, site: str, key: FleetPrivateKey, to: Path, *, run_id: str = ""
) -> Plan:
    """Find and open the snapshot; say where each stream goes (nothing is written yet)."""
    sealed = find_snapshot(source, site, run_id)
    short = sealed.snapshot.snapshot_id[:SHORT_ID]
    keys = site_keys(source, site, key, sealed.snapshot.data_key_id)
    snapshot = open_sealed(source, keys, sealed)
    try:
        info = BackupInfo.from_snapshot_info(snapshot.info)
        refs = stream_refs(info, snapshot.entries)
    except BadManifest as err:
        raise FailedPrecondition(
            f"snapshot {short} of site {site} is not a database backup this CLI can read: "
            f"{err.message}"
        ) from None
    if sealed.snapshot.backup_run_id and info.run_id != sealed.snapshot.backup_run_id:
        raise FailedPrecondition(
            f"snapshot {short} copies backup run {info.run_id} but the server files it under "
            f"{sealed.snapshot.backup_run_id}: nothing was written"
        )
    paths = [to] if info.method == "gbak" else [to / _local_name(s.file) for s in info.streams]
    files = [StreamFile(s, r, p) for s, r, p in zip(info.streams, refs, paths, strict=True)]
    return Plan(site, sealed.snapshot, info, keys, files, recorded_checksums(source, site, info))


def _local_name(file: str) -> str:
    """The name of a stream's file: its name in backup.dir without the compression suffix."""
    return file.removesuffix(".zst") or file


def recorded_checksums(source: BackupSource, site: str, info: BackupInfo) -> dict[int, str]:
    """Stream index -> the raw sha256 (hex) the server recorded for the backup run that
    wrote that stream's file; a stream without one is checked against the snapshot only.
    A backup run whose recorded compressed checksum differs from the snapshot's is refused."""
    try:
        runs = source.list_runs(site, kind="backup", limit=1000)
    except NotFound:
        return {}
    by_file = {str(r.details.get("file", "")): r for r in runs if r.details}
    own = next((r for r in runs if r.id == info.run_id), None)
    if own is not None:
        _same_backup(own, info)
    found: dict[int, str] = {}
    for stream in info.streams:
        run = own if stream is info.streams[-1] and own is not None else by_file.get(stream.file)
        raw = str(run.details.get("raw_checksum", "")) if run is not None else ""
        if raw.startswith("sha256:") and len(raw) == 71:
            found[stream.index] = raw.removeprefix("sha256:")
    return found


def _same_backup(run: Run, info: BackupInfo) -> None:
    recorded = str(run.details.get("checksum", "")).removeprefix("sha256:")
    if recorded and recorded != info.backup_sha256:
        raise StreamMismatch(
            f"the server recorded backup run {run.id} with checksum sha256:{recorded[:16]}..., "
            f"but the snapshot copies a file with sha256:{info.backup_sha256[:16]}...: "
            "nothing was written"
        )


def check_targets(plan: Plan, to: Path, *, force: bool) -> None:
    """Refuse to replace anything at PATH unless `force` (a partial of ours is resumed)."""
    if plan.method == "gbak":
        if to.is_dir():
            raise TargetExists(f"{to} is a folder; give a file name for the .fbk")
    elif to.exists() and not to.is_dir():
        raise TargetExists(f"{to} is a file; an nbackup chain is restored into a folder")
    for f in plan.files:
        if (f.path.exists() or f.path.is_symlink()) and not force:
            raise TargetExists(f"{f.path} exists; --force replaces it")


def fetch(
    source: BackupSource, plan: Plan, start: Start = lambda total, name=None: lambda n: None
) -> Fetched:
    """Write every stream of `plan` to its file, checked; resume what a cut run left."""
    began = time.monotonic()
    if plan.method != "gbak":
        plan.files[0].path.parent.mkdir(parents=True, exist_ok=True)
    outcome = Fetched(plan)
    todo: list[tuple[StreamFile, int, hashlib._Hash]] = []
    for f in plan.files:
        done, digest = _resume(f, plan.snapshot.snapshot_id)
        outcome.bytes_resumed += sum(n for _, n in f.refs[:done])
        todo.append((f, done, digest))
    uses = Counter(cid for f, done, _ in todo for cid, _ in f.refs[done:])
    chunks = Chunks(source, plan.keys, uses)
    advance = start(plan.info.size)
    advance(outcome.bytes_resumed)
    try:
        for f, done, digest in todo:
            outcome.bytes_written += _write_stream(
                plan, f, chunks, done=done, digest=digest, advance=advance
            )
    finally:
        chunks.close()
        outcome.bytes_fetched = chunks.fetched
        outcome.seconds = time.monotonic() - began
    for f in plan.files:  # every stream passed: each takes its name
        try:
            os.replace(f.partial, f.path)
        except OSError as err:
            raise FailedPrecondition(f"cannot write {f.path}: {err.strerror}") from None
        f.state.unlink(missing_ok=True)
    return outcome


def _resume(f: StreamFile, snapshot_id: str) -> tuple[int, hashlib._Hash]:
    """How many chunks of `f` its partial file holds (0: start afresh) and their sha256."""
    digest = hashlib.sha256()
    try:
        state = orjson.loads(f.state.read_bytes())
        chunks, size = int(state["chunks"]), int(state["bytes"])
        same = state["snapshot"] == snapshot_id and state["stream"] == f.stream.index
    except (OSError, ValueError, KeyError, TypeError):
        return 0, digest
    if (
        not same
        or not 0 <= chunks <= len(f.refs)
        or size != sum(n for _, n in f.refs[:chunks])
        or not f.partial.is_file()
        or f.partial.stat().st_size < size
    ):
        return 0, digest
    with f.partial.open("r+b") as handle:
        handle.truncate(size)  # a batch written after the last state is fetched again
        while block := handle.read(READ_BACK):
            digest.update(block)
    return chunks, digest


def _write_stream(
    plan: Plan,
    f: StreamFile,
    chunks: Chunks,
    *,
    done: int,
    digest: hashlib._Hash,
    advance: Advance,
) -> int:
    """Write `f` from chunk `done` on, then check it whole (its partial keeps its state
    until every stream passed, so a cut in a later stream resumes there)."""
    written = 0
    refs = [(0, cid, n) for cid, n in f.refs]
    with _open_partial(f, fresh=done == 0) as handle:
        start = done
        end = batch_end(chunks, refs, start)
        while start < len(refs):
            after = batch_end(chunks, refs, end)  # fetched while this batch is written
            chunks.load(
                (cid for _, cid, _ in refs[start:end]), ahead=(cid for _, cid, _ in refs[end:after])
            )
            plains: list[bytes] = []
            for _, cid, length in refs[start:end]:
                plain = chunks.take(cid, length)
                if plain is None:
                    _append(handle, digest, plains)  # the chunks before it are kept
                    _save(f, handle, plan.snapshot.snapshot_id, start + len(plains))
                    raise ChunkUnusable(
                        f"{chunks.bad[cid]}; backup run {plan.info.run_id} of site {plan.site} "
                        f"cannot be restored from this snapshot ({f.stream.file})"
                    )
                plains.append(plain)
            size = _append(handle, digest, plains)
            written += size
            advance(size)
            start = end
            _save(f, handle, plan.snapshot.snapshot_id, start)
            end = after
    _check(plan, f, digest.hexdigest())
    return written


@contextlib.contextmanager
def _open_partial(f: StreamFile, *, fresh: bool) -> Iterator[BinaryIO]:
    try:
        handle = f.partial.open("wb" if fresh else "ab")
    except OSError as err:
        raise FailedPrecondition(f"cannot write {f.partial}: {err.strerror}") from None
    try:
        with handle:
            yield handle
    except OSError as err:
        raise FailedPrecondition(f"cannot write {f.partial}: {err.strerror}") from None


def _append(handle: BinaryIO, digest: hashlib._Hash, plains: list[bytes]) -> int:
    """Write a batch's chunks in one piece and hash them (one call each, not one a chunk:
    hashlib lets go of the GIL on large buffers while the next batch is opened)."""
    block = b"".join(plains)
    handle.write(block)
    digest.update(block)
    return len(block)


def _save(f: StreamFile, handle: BinaryIO, snapshot_id: str, chunks: int) -> None:
    """Flush the partial to disk, then record how many chunks it holds."""
    handle.flush()
    os.fsync(handle.fileno())
    state = {
        "snapshot": snapshot_id,
        "stream": f.stream.index,
        "chunks": chunks,
        "bytes": f.offsets[chunks],
    }
    temp = f.state.with_name(f.state.name + ".tmp")
    temp.write_bytes(orjson.dumps(state))
    os.replace(temp, f.state)


def _check(plan: Plan, f: StreamFile, sha256: str) -> None:
    """The whole stream against the snapshot's record and the server's raw checksum."""
    size = f.partial.stat().st_size
    problem = ""
    if size != f.stream.size:
        problem = f"has {size} bytes where {f.stream.size} were recorded"
    elif sha256 != f.stream.sha256:
        problem = (
            f"has sha256 {sha256[:16]}... where the snapshot recorded {f.stream.sha256[:16]}..."
        )
    elif (recorded := plan.recorded.get(f.stream.index)) and sha256 != recorded:
        problem = (
            f"has sha256 {sha256[:16]}... where the server recorded {recorded[:16]}... for the "
            "backup at backup time"
        )
    if problem:
        discard(f)
        raise StreamMismatch(
            f"the reassembled {quote(f.stream.file)} of backup run {plan.info.run_id} {problem}; "
            "it was removed"
        )


def discard(f: StreamFile) -> None:
    """Remove a stream's partial file and its state."""
    for path in (f.partial, f.state):
        with contextlib.suppress(OSError):
            path.unlink()


def remove(plan: Plan, to: Path) -> None:
    """Remove everything a fetch wrote for `plan` (a drill's scratch copy)."""
    for f in plan.files:
        discard(f)
        with contextlib.suppress(OSError):
            f.path.unlink()
    if plan.method != "gbak":
        with contextlib.suppress(OSError):
            to.rmdir()
