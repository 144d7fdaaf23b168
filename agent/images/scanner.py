"""One pass over the image folder: find what changed against the index, hand it over, commit it.

The walk (agent.images.walk) yields entries in key order and the index is
read in key order alongside it, a merge that finds new, changed, unchanged
and deleted files with memory bounded by the largest folder listing, not by
the number of files. For each regular file:

- same size, mtime in ns and file id as the index's latest observation, and
  that observation stored: unchanged, not opened, nothing written;
- new or changed: recorded with the time it was first seen so; it is read
  once it has not changed for `settle_seconds`: by its own mtime (and, on
  POSIX, ctime) against the injected clock, or else by having been seen
  unchanged that long across passes (until then it is skipped as
  `settling`, the pass tells when the earliest settles: `settle_due_at`).
  So the first pass over a folder of old files stores them at once, while a
  file still being written waits; a time in the future (a skewed clock)
  counts for nothing;
- the same file id, size and mtime as the stored version of a file that was
  on disk at the last pass (renamed, moved, hard-linked), or of the deleted
  file that had this very name (come back unchanged): that version's content
  ids are reused without reading; it is what the unchanged rule trusts too.
  Tombstones of other names are not used: file ids are reused once freed;
- a file to read is opened through FileAccess, checked against the listing,
  handed to the consumer as a FileStream, checked again at its end (the
  stream) and by name afterwards; only then are the consumer's content ids
  committed. A file that changed meanwhile is retried next pass.

Files in the index and not on disk are deleted: a stored file leaves a
tombstone, so a folder emptied and restored comes back as `reappeared`, not
new (unchanged file ids are revived without reading; files restored with new
ids are read again, and since content ids are keyed by content the consumer
re-sends nothing). What sits below a folder that could not be listed is kept
as it was. A missing folder fails the pass and touches nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ntpath
import os
import stat
from collections.abc import Sequence

from agent.images.consumer import Consumer, FileToStore, PassCut
from agent.images.errors import FileSkipped, PassAlreadyRunning
from agent.images.fileaccess import FileAccess
from agent.images.identity import FileState, state_of
from agent.images.index import ImageIndex, IndexEntry, MergeRow, from_us, to_us
from agent.images.paths import folder_path, parts_of, relpath_of, subtree_prefix
from agent.images.platform import default_file_access
from agent.images.result import PassResult, SkipReason, Tally
from agent.images.stream import BLOCK_SIZE, FileStream, Pace
from agent.images.walk import Found, Lister, Listing, Passed, list_folder, walk
from common.clock import Clock, iso
from common.errors import Internal, StoreSafeError

_PAGE = 512
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _from_ns(ns: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=ns // 1000)


class _Stop(Exception):
    """The consumer failed in a way that ends the pass."""


class Scanner:
    """Scans one image folder against one index; `scan` runs a pass."""

    def __init__(
        self,
        index: ImageIndex,
        folder: str,
        *,
        settle_seconds: int,
        clock: Clock,
        file_access: FileAccess | None = None,
        block_size: int = BLOCK_SIZE,
        pace: Pace | None = None,
        stable_after: dt.timedelta = dt.timedelta(days=1),
        keep_tombstones: dt.timedelta = dt.timedelta(days=90),
        windows: bool = os.name == "nt",
        lister: Lister = list_folder,
    ) -> None:
        self.index = index
        self.folder = folder
        self.settle = dt.timedelta(seconds=settle_seconds)
        self.clock = clock
        self.file_access = file_access or default_file_access()
        self.block_size = block_size
        self.pace = pace
        self.stable_after = stable_after
        self.keep_tombstones = keep_tombstones
        self.windows = windows
        self.lister = lister

    def scan(self, consumer: Consumer) -> PassResult:
        """Run one pass, handing files to store to `consumer`; never two at once per index."""
        if not self.index.pass_lock.acquire(blocking=False):
            raise PassAlreadyRunning(f"a pass over the image folder {self.folder} is running")
        undone = self.index.rolled_back
        try:
            result = _Pass(self, consumer).run()
        finally:
            self.index.commit()
            self.index.pass_lock.release()
        # rows the index rolled back (their chunks did not reach the store) were not stored
        now = self.index.rolled_back
        return dataclasses.replace(
            result,
            stored=result.stored - (now.files - undone.files),
            bytes_stored=result.bytes_stored - (now.size - undone.size),
        )


class _Pass:
    """The state of one running pass: the tally, the index cursor, what went missing."""

    def __init__(self, scanner: Scanner, consumer: Consumer) -> None:
        self.s = scanner
        self.index = scanner.index
        self.consumer = consumer
        self.start = scanner.clock.now()
        self.tally = Tally(folder=scanner.folder, started_at=self.start)
        self.root = folder_path(scanner.folder, windows=scanner.windows)
        self.stable_cutoff = self.start - scanner.stable_after
        self.cutoff_us = to_us(self.stable_cutoff)
        self.page: list[MergeRow] = []
        self.pos = 0
        self.after = b""
        self.exhausted = False
        self.last_key = b""
        self.kept_prefix: bytes | None = None
        self.gone: list[tuple[bytes, bool]] = []
        self.renamed_away: set[bytes] = set()
        self.may_reuse = True  # rows stored before this pass may be given to new names

    def run(self) -> PassResult:
        t = self.tally
        t.index_rebuilt, self.index.rebuilt = self.index.rebuilt, False
        top = self._list_top()
        if top is None:
            return t.result(self.s.clock.now())
        previous = self.index.meta("folder")
        if previous is not None and previous != self.s.folder:
            t.previous_folder = previous
        live_before, t.stable_before = self.index.count_stable(self.stable_cutoff)
        # a first pass has nothing stored to give a new name: no lookup per new file
        self.may_reuse = self.index.has_stored()
        try:
            for entry in walk(top, windows=self.s.windows, lister=self.s.lister):
                if entry.key <= self.last_key:
                    raise Internal(f"the image walk went out of order at {relpath_of(entry.key)!r}")
                self.last_key = entry.key
                if isinstance(entry, Found):
                    self._found(entry)
                else:
                    self._passed(entry)
        except _Stop as stop:
            t.aborted = True
            t.errors.append(str(stop))
            return t.result(self.s.clock.now())
        except PassCut as cut:  # not failed: what was stored stays; no deletions applied
            t.cut_short = str(cut)
            return t.result(self.s.clock.now())
        self._advance_to(None)
        self._apply_deletions(previous_pass=self.index.meta("last_pass_at"))
        t.folder_empty = t.files_seen == 0 and live_before > 0
        if previous != self.s.folder:
            self.index.set_meta("folder", self.s.folder)
        self.index.set_meta("last_pass_at", iso(self.start) or "")
        self.index.commit()
        self.index.prune_tombstones(self.start - self.s.keep_tombstones)
        return t.result(self.s.clock.now())

    def _list_top(self) -> Listing | None:
        folder, t = self.s.folder, self.tally
        if not folder.strip():
            t.errors.append("no image folder is set (images.dir)")
            return None
        if not (ntpath.isabs(folder) if self.s.windows else os.path.isabs(folder)):
            t.errors.append(f"the image folder {folder} is not an absolute path")
            return None
        try:
            st = os.stat(self.root)
        except (FileNotFoundError, NotADirectoryError):
            t.folder_missing = True
            t.errors.append(f"the image folder {folder} does not exist")
            return None
        except OSError as exc:
            t.errors.append(f"cannot look at the image folder {folder} ({exc.strerror})")
            return None
        if not stat.S_ISDIR(st.st_mode):
            t.folder_missing = True
            t.errors.append(f"the image folder {folder} is not a folder")
            return None
        try:
            return self.s.lister(self.root)
        except OSError as exc:
            t.errors.append(f"cannot list the image folder {folder} ({exc.strerror})")
            return None

    # -- the index side of the merge ------------------------------------------------

    def _peek(self) -> MergeRow | None:
        if self.pos >= len(self.page):
            if self.exhausted:
                return None
            self.page, self.pos = self.index.merge_page(self.after, _PAGE), 0
            self.exhausted = len(self.page) < _PAGE
            if not self.page:
                return None
            self.after = self.page[-1].key
        return self.page[self.pos]

    def _advance_to(self, key: bytes | None) -> MergeRow | None:
        """Pass over index rows below `key` (all rows for None); the row at `key`, if any."""
        while (row := self._peek()) is not None and (key is None or row.key < key):
            self.pos += 1
            if not row.live:
                continue
            if self.kept_prefix is not None and row.key.startswith(self.kept_prefix):
                continue
            self.gone.append((row.key, row.stable(self.cutoff_us)))
        if row is not None and row.key == key:
            self.pos += 1
            return row
        return None

    # -- the disk side ---------------------------------------------------------------

    def _passed(self, entry: Passed) -> None:
        row = self._advance_to(entry.key)
        self.tally.skip(relpath_of(entry.key), entry.reason, entry.detail)
        if entry.transient:
            self.kept_prefix = subtree_prefix(entry.key)
        elif row is not None and row.live:
            self.gone.append((row.key, row.stable(self.cutoff_us)))

    def _found(self, entry: Found) -> None:
        t, state = self.tally, entry.state
        page, pos = self.page, self.pos
        if pos < len(page) and page[pos].key == entry.key:  # the common case: the next row
            row: MergeRow | None = page[pos]
            self.pos = pos + 1
        else:
            row = self._advance_to(entry.key)
        t.files_seen += 1
        if row is not None and row.live and row.seen == state:
            t.unchanged += 1
            if not row.current:  # seen before, not stored yet
                since = from_us(row.unchanged_since_us)
                self._settle_or_read(entry, since=since, previous=self._previous(row))
            return
        now = self.s.clock.now()
        if row is None or not row.live:
            if self.may_reuse and self._reuse(entry, now):
                return
            if row is None:
                t.new += 1
            else:
                t.reappeared += 1
        else:
            t.changed += 1
            t.stable_changed += row.stable(self.cutoff_us)
        self.index.observe(entry.key, state, since=now)
        self._settle_or_read(entry, since=now, previous=self._previous(row))

    def _previous(self, row: MergeRow | None) -> tuple[str, ...] | None:
        """The content ids last stored under `row`'s name, if any."""
        full = self.index.get(row.key) if row is not None else None
        return full.content_ids if full is not None else None

    def _reuse(self, entry: Found, now: dt.datetime) -> bool:
        """Give a new name the content of the same file stored elsewhere; False when none."""
        if not entry.state.id_is_usable:
            return False
        # A tombstone elsewhere is no source: its file id may have been reused since, by
        # another file that happens to have the same size and mtime (a restore, an unzip).
        sources = [s for s in self.index.with_stored(entry.state) if s.live or s.key == entry.key]
        if not sources:
            return False
        t = self.tally
        same = [s for s in sources if s.key == entry.key]
        if same:  # a tombstone come back as it was
            source = same[0]
            t.reappeared += 1
        else:
            source = sources[0]
            if self._still_there(source):
                t.new += 1  # a second name of a stored file: a hard link
            else:
                t.renamed += 1
                self.renamed_away.add(source.key)
        self.index.adopt(entry.key, source, at=now)
        return True

    def _still_there(self, source: IndexEntry) -> bool:
        try:
            st = os.lstat(os.path.join(self.root, *parts_of(source.key)))
        except OSError:
            return False
        return state_of(st) == source.stored

    def _settle_or_read(
        self, entry: Found, *, since: dt.datetime, previous: tuple[str, ...] | None
    ) -> None:
        now = self.s.clock.now()
        due = since + self.s.settle
        if entry.changed_ns > 0:  # the file system's own times say it settled earlier
            due = min(due, _from_ns(entry.changed_ns) + self.s.settle)
        if now < due:
            self.tally.skip(
                relpath_of(entry.key),
                SkipReason.SETTLING,
                f"new or changed; read once unchanged for {self.s.settle.total_seconds():g} s",
            )
            self.tally.settle_due(due)
            return
        self._read(entry, since=since, previous=previous)

    def _resettle(self, entry: Found, now: dt.datetime) -> None:
        """The file changed under us: observe it anew so it settles again."""
        try:
            state = state_of(os.lstat(entry.path))
        except OSError:
            return
        self.index.observe(entry.key, state, since=now)
        self.tally.settle_due(now + self.s.settle)

    def _read(self, entry: Found, *, since: dt.datetime, previous: tuple[str, ...] | None) -> None:
        t, rel = self.tally, relpath_of(entry.key)
        try:
            opened = self.s.file_access.open(entry.path)
        except FileSkipped as skip:
            t.skip(rel, skip.reason, skip.message)
            return
        try:
            at_open = opened.state()
        except FileSkipped as skip:
            opened.close()
            t.skip(rel, skip.reason, skip.message)
            return
        # The handle's file id may be spelled unlike the name's (Windows fstat and lstat
        # differ between Python versions): size and mtime here; the stream compares the
        # handle with itself, `_commit` the name with the listing, file id included.
        if (at_open.size, at_open.mtime_ns) != (entry.state.size, entry.state.mtime_ns):
            opened.close()
            t.skip(rel, SkipReason.SETTLING, "changed after it was listed")
            self._resettle(entry, self.s.clock.now())
            return
        stream = FileStream(
            opened, at_open, path=rel, block_size=self.s.block_size, pace=self.s.pace
        )
        item = FileToStore(rel, entry.state, previous)
        ids = self._hand_over(item, stream)
        if ids is None:
            return
        self._commit(entry, item, ids, since=since)

    def _hand_over(self, item: FileToStore, stream: FileStream) -> Sequence[str] | None:
        """The consumer's content ids for `item`, or None when it did not store it."""
        t = self.tally
        try:
            ids = self.consumer.store(item, stream)
        except FileSkipped as skip:
            ids = None
            stream.failure = stream.failure or skip
        except StoreSafeError as exc:
            raise _Stop(f"{item.path}: {exc.message}") from exc
        finally:
            stream.close()
            t.bytes_read += stream.bytes_read
            t.bytes_handed += stream.bytes_handed
        failure = stream.failure
        if failure is not None:
            if ids is not None:
                self.consumer.discard(item, failure.message)
            t.skip(item.path, failure.reason, failure.message)
            return None
        if ids is None:  # pragma: no cover - the stream records every FileSkipped it raises
            return None
        if not stream.complete:
            why = "the consumer returned before reading it to its end"
            self.consumer.discard(item, why)
            t.skip(item.path, SkipReason.NOT_STORED, why)
            t.errors.append(f"{item.path}: {why}")
            return None
        return ids

    def _commit(
        self, entry: Found, item: FileToStore, ids: Sequence[str], *, since: dt.datetime
    ) -> None:
        t, now = self.tally, self.s.clock.now()
        try:
            after: FileState | None = state_of(os.lstat(entry.path))
        except OSError:
            after = None
        if after != entry.state:
            why = "it was changed, replaced or removed while it was read"
            self.consumer.discard(item, why)
            t.skip(item.path, SkipReason.CHANGED_WHILE_READ, why)
            self._resettle(entry, now)
            return
        if isinstance(ids, str) or not all(isinstance(i, str) and i for i in ids):
            why = "the consumer returned something other than content ids"
            self.consumer.discard(item, why)
            t.skip(item.path, SkipReason.NOT_STORED, why)
            t.errors.append(f"{item.path}: {why}")
            return
        self.index.store(entry.key, entry.state, ids, since=since, at=now)
        t.stored += 1
        t.bytes_stored += entry.state.size

    def _apply_deletions(self, *, previous_pass: str | None) -> None:
        t = self.tally
        last_seen = dt.datetime.fromisoformat(previous_pass) if previous_pass else self.start
        moved = [key for key, _ in self.gone if key in self.renamed_away]
        deleted = [(key, stable) for key, stable in self.gone if key not in self.renamed_away]
        t.deleted = len(deleted)
        t.stable_deleted = sum(stable for _, stable in deleted)
        self.index.forget(moved)
        self.index.retire((key for key, _ in deleted), at=self.start, last_seen=last_seen)
