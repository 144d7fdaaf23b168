"""Restoring an image snapshot of the off-site store into a folder, every byte checked.

The steps: the key file opens the site's data key that the snapshot names
(ListSiteKeys); that key opens the snapshot record and its manifest (every
entry checked by the vault); the files under the chosen prefix are sorted
into those to write, those already there (same size and mtime, and their
keyed chunk ids recomputed and equal: skipped), and those that differ
(refused, one sentence each, unless `force`). The files to write are then
filled in order from chunks fetched in batches (`restore_fetch`) through
the target folder's rules (`restore_target`). A chunk that is missing or
fails its check fails every file that needs it; the others are restored.
"""

from __future__ import annotations

import hmac
import os
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cli.models import SnapshotSummary
from cli.progress import Advance
from cli.restore_fetch import Chunks, batch_end
from cli.restore_target import Target, TempFile
from cli.snapshot_open import SHORT_ID, Source, open_sealed, site_keys
from common.errors import FailedPrecondition, InvalidArgument, NotFound, quote
from common.vault.errors import VaultError
from common.vault.keys import FleetPrivateKey
from common.vault.manifest import Entry
from common.vault.paths import check_path, collision_key
from common.vault.sitekeys import SiteKeys

KIND = "images"


class RestoreIncomplete(FailedPrecondition):
    """Some files of the snapshot were not restored (each was named)."""

    code = "restore.incomplete"


@dataclass
class Outcome:
    """What a restore did: files written and skipped, and one sentence per failure."""

    snapshot: SnapshotSummary
    selected: int = 0
    restored: int = 0
    skipped: int = 0
    bytes_written: int = 0
    bytes_fetched: int = 0
    failures: list[str] = field(default_factory=list)


def find_snapshot(source: Source, site: str, wanted: str) -> str:
    """The full id of the snapshot `wanted` names: a full id, or the start of exactly one."""
    wanted = wanted.strip().lower()
    if not wanted or any(c not in "0123456789abcdef" for c in wanted) or len(wanted) > 64:
        raise InvalidArgument(f"{quote(wanted)} is not a snapshot id (hex, as listed)")
    if len(wanted) == 64:
        return wanted
    found = [
        s.snapshot_id
        for s in source.list_snapshots(site, kind=KIND, limit=1000)
        if s.snapshot_id.startswith(wanted)
    ]
    if not found:
        raise NotFound(f"site {site} has no image snapshot whose id starts with {wanted}")
    if len(found) > 1:
        raise InvalidArgument(f"{wanted} starts {len(found)} snapshot ids of {site}; give more")
    return found[0]


def select(entries: list[Entry], prefix: str | None) -> list[Entry]:
    """The entries at or under `prefix` ('/'-separated, as the snapshot names paths)."""
    if not prefix:
        return entries
    try:
        prefix = check_path(prefix.strip("/"))
    except VaultError as err:
        raise InvalidArgument(f"--path: {err.message}") from None
    chosen = [e for e in entries if e.path == prefix or e.path.startswith(prefix + "/")]
    if not chosen:
        raise NotFound(f"the snapshot holds no file at or under {quote(prefix)}")
    return chosen


def same_file(keys: SiteKeys, path: Path, entry: Entry) -> bool:
    """Whether the regular file at `path` holds exactly `entry`'s chunks (ids recomputed)."""
    with path.open("rb") as handle:
        for chunk_id, length in entry.chunks:
            data = handle.read(length)
            if len(data) != length or not hmac.compare_digest(keys.chunk_id(data), chunk_id):
                return False
        return handle.read(1) == b""


def _already_there(keys: SiteKeys, final: Path, st: os.stat_result, entry: Entry) -> bool:
    """Whether the file at `final` has `entry`'s size, mtime and bytes."""
    if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
        return False
    try:
        return same_file(keys, final, entry)
    except OSError as err:
        raise FailedPrecondition(f"cannot read {final} to check it: {err.strerror}") from None


def triage(
    keys: SiteKeys, target: Target, entries: list[Entry], force: bool, outcome: Outcome
) -> list[tuple[Entry, Path]]:
    """The files to write; those already restored are counted, those in the way named."""
    todo: list[tuple[Entry, Path]] = []
    folds = target.folds_names()
    names: dict[str, str] = {}  # collision key -> the path that has it
    for entry in entries:
        if folds:
            first = names.setdefault(collision_key(entry.path), entry.path)
            if first != entry.path:
                outcome.failures.append(
                    f"{quote(entry.path)} is not restored: this file system takes it for "
                    f"{quote(first)} (same name but for case or Unicode form)"
                )
                continue
        try:
            final = target.path_of(entry.path)
            st = os.lstat(final)
        except FileNotFoundError:
            todo.append((entry, final))
            continue
        except FailedPrecondition as err:
            outcome.failures.append(err.message)
            continue
        except OSError as err:
            outcome.failures.append(f"{quote(entry.path)} is not restored: {err.strerror}")
            continue
        shown = quote(entry.path)
        try:
            there = _already_there(keys, final, st, entry)
        except FailedPrecondition as err:
            outcome.failures.append(f"{shown} is not restored: {err.message}")
            continue
        if stat.S_ISDIR(st.st_mode):
            outcome.failures.append(f"{shown} is not restored: a folder has its name")
        elif there:
            outcome.skipped += 1
        elif force:
            todo.append((entry, final))
        else:
            outcome.failures.append(
                f"{shown} is not restored: {final} exists and differs from the snapshot "
                "(--force replaces it)"
            )
    return todo


@dataclass
class _Open:
    entry: Entry
    final: Path
    temp: TempFile


class _Writer:
    """Writes the files to restore in order, one open at a time, chunk by chunk."""

    def __init__(self, target: Target, todo: list[tuple[Entry, Path]], outcome: Outcome) -> None:
        self.target = target
        self.todo = todo
        self.outcome = outcome
        self.done = 0  # files completed, or failed, so far
        self.current: _Open | None = None
        self.failed = False

    def complete_before(self, n: int) -> None:
        """Complete every file before file `n` (their chunks are all written)."""
        while self.done < n:
            if not self.failed:
                current = self.current or self._open(self.done)
                try:
                    Target.commit(current.temp, current.entry.mtime_ns)
                except OSError as err:
                    Target.discard(current.temp)
                    raise FailedPrecondition(
                        f"cannot write {current.final}: {err.strerror}"
                    ) from None
                self.outcome.restored += 1
                self.outcome.bytes_written += current.entry.size
            self.current, self.failed = None, False
            self.done += 1

    def write(self, n: int, plain: bytes | None) -> bool:
        """Append `plain` to file `n`; None fails the file. Whether the file still stands."""
        self.complete_before(n)
        if self.failed:
            return False
        current = self.current or self._open(n)
        self.current = current
        if plain is None:
            Target.discard(current.temp)
            self.current, self.failed = None, True
            return False
        try:
            current.temp.handle.write(plain)
        except OSError as err:
            Target.discard(current.temp)
            raise FailedPrecondition(f"cannot write {current.final}: {err.strerror}") from None
        return True

    def _open(self, n: int) -> _Open:
        entry, final = self.todo[n]
        try:
            temp = self.target.open_temp(final)
        except OSError as err:
            raise FailedPrecondition(f"cannot write {final}: {err.strerror}") from None
        return _Open(entry, final, temp)

    def discard(self) -> None:
        """Remove the file left open by a restore that stopped."""
        if self.current is not None:
            Target.discard(self.current.temp)
            self.current = None


def write_files(chunks: Chunks, writer: _Writer, outcome: Outcome, advance: Advance) -> None:
    """Write the files in order from batches of chunks; a bad chunk fails the files needing it."""
    todo = writer.todo
    refs = [(n, cid, length) for n, (e, _) in enumerate(todo) for cid, length in e.chunks]
    broken: dict[str, list[str]] = {}
    start = 0
    end = batch_end(chunks, refs, start)
    try:
        while True:
            after = batch_end(chunks, refs, end)  # fetched while this batch is written
            chunks.load(
                (cid for _, cid, _ in refs[start:end]), ahead=(cid for _, cid, _ in refs[end:after])
            )
            for n, cid, length in refs[start:end]:
                if writer.done > n or (writer.done == n and writer.failed):
                    continue
                plain = chunks.take(cid, length)
                if not writer.write(n, plain):
                    broken.setdefault(cid, []).append(todo[n][0].path)
                elif plain is not None:
                    advance(len(plain))
            writer.complete_before(refs[end][0] if end < len(refs) else len(todo))
            start, end = end, after
            if start >= len(refs):
                break
    finally:
        chunks.close()
        writer.discard()
    for cid, paths in broken.items():
        files = ", ".join(quote(p) for p in paths[:5]) + (" ..." if len(paths) > 5 else "")
        outcome.failures.append(
            f"{chunks.bad[cid]}; it breaks {len(paths)} file(s), not restored: {files}"
        )
    outcome.bytes_fetched = chunks.fetched


def restore(
    source: Source,
    site: str,
    key: FleetPrivateKey,
    *,
    folder: Path,
    snapshot_id: str = "",
    prefix: str | None = None,
    force: bool = False,
    start: Callable[[int], Advance] = lambda total: lambda n: None,
) -> Outcome:
    """Restore the snapshot `snapshot_id` of `site` (the newest when empty) into `folder`."""
    wanted = find_snapshot(source, site, snapshot_id) if snapshot_id else ""
    sealed = source.get_snapshot(site, wanted, kind=KIND)
    if wanted and sealed.snapshot.snapshot_id != wanted:
        raise FailedPrecondition(
            f"asked for snapshot {wanted[:SHORT_ID]}, the server sent "
            f"{sealed.snapshot.snapshot_id[:SHORT_ID]}: nothing was written"
        )
    keys = site_keys(source, site, key, sealed.snapshot.data_key_id)
    snapshot = open_sealed(source, keys, sealed)
    entries = select(snapshot.entries, prefix)
    outcome = Outcome(sealed.snapshot, selected=len(entries))
    target = Target(folder)
    todo = triage(keys, target, entries, force, outcome)
    uses = Counter(cid for entry, _ in todo for cid, _ in entry.chunks)
    advance = start(sum(entry.size for entry, _ in todo))
    write_files(Chunks(source, keys, uses), _Writer(target, todo, outcome), outcome, advance)
    return outcome
