"""What one scan pass of the image folder saw and did: the vocabulary of the image-sync report."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections import Counter
from collections.abc import Mapping

EXAMPLES_KEPT = 50  # skipped files named in a result; the counts are always complete


class SkipReason(enum.StrEnum):
    """Why a file (or folder) was not read or its content not committed in this pass."""

    SETTLING = "settling"  # new or changed, not yet unchanged for settle_seconds
    BUSY = "busy"  # the shop program holds it (sharing or lock violation): next pass
    VANISHED = "vanished"  # gone between listing and reading: next pass
    UNREADABLE = "unreadable"  # access denied, I/O error: next pass
    SYMLINK = "symlink"  # symbolic link, junction or mount point: never followed
    NOT_REGULAR = "not_regular"  # fifo, socket, device
    TOO_LONG = "too_long"  # the path is longer than the system allows
    CHANGED_WHILE_READ = "changed_while_read"  # torn read: nothing committed, next pass
    NOT_STORED = "not_stored"  # the consumer did not store it (see errors)


@dataclasses.dataclass(frozen=True)
class Skipped:
    """One skipped file or folder: relative path ('/'-separated), reason, one-sentence detail."""

    path: str
    reason: SkipReason
    detail: str


@dataclasses.dataclass(frozen=True)
class PassResult:
    """One pass over the image folder.

    Every regular file seen is counted in exactly one of `new`, `changed`,
    `unchanged`, `renamed` and `reappeared`, by comparing it with what the
    previous passes saw (a file still settling from an earlier pass counts as
    `unchanged` when it did not change since). `stored` counts files whose
    content the consumer stored and the index committed in this pass; `skipped`
    counts why files were not read or not committed. `stable_*` measure the
    files that had been stored and unchanged for the scanner's `stable_after`
    before this pass: a pass that changes or deletes a large share of them is
    what ransomware or a wrong folder looks like.
    """

    folder: str
    started_at: dt.datetime
    duration: dt.timedelta
    files_seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    renamed: int = 0
    reappeared: int = 0
    deleted: int = 0
    stored: int = 0
    skipped: Mapping[SkipReason, int] = dataclasses.field(default_factory=dict)
    skipped_examples: tuple[Skipped, ...] = ()
    bytes_read: int = 0
    bytes_handed: int = 0
    bytes_stored: int = 0
    errors: tuple[str, ...] = ()
    folder_missing: bool = False
    folder_empty: bool = False
    aborted: bool = False
    cut_short: str = ""  # why the pass stopped early without failing (see consumer.PassCut)
    stable_before: int = 0
    stable_changed: int = 0
    stable_deleted: int = 0
    settle_due_at: dt.datetime | None = None
    previous_folder: str | None = None
    index_rebuilt: bool = False

    @property
    def failed(self) -> bool:
        """A pass fails when the folder is missing, it was cut short, or something went wrong."""
        return self.folder_missing or self.aborted or bool(self.errors)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def stable_changed_share(self) -> float | None:
        """Share (0..1) of previously stable files changed or deleted; None without any."""
        if self.stable_before == 0:
            return None
        return (self.stable_changed + self.stable_deleted) / self.stable_before


@dataclasses.dataclass
class Tally:
    """The counters of a pass while it runs; `result` freezes them into a PassResult."""

    folder: str
    started_at: dt.datetime
    files_seen: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    renamed: int = 0
    reappeared: int = 0
    deleted: int = 0
    stored: int = 0
    skipped: Counter[SkipReason] = dataclasses.field(default_factory=Counter)
    examples: list[Skipped] = dataclasses.field(default_factory=list)
    bytes_read: int = 0
    bytes_handed: int = 0
    bytes_stored: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    folder_missing: bool = False
    folder_empty: bool = False
    aborted: bool = False
    cut_short: str = ""  # why the pass stopped early without failing (see consumer.PassCut)
    stable_before: int = 0
    stable_changed: int = 0
    stable_deleted: int = 0
    settle_due_at: dt.datetime | None = None
    previous_folder: str | None = None
    index_rebuilt: bool = False

    def skip(self, path: str, reason: SkipReason, detail: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < EXAMPLES_KEPT:
            self.examples.append(Skipped(path, reason, detail))

    def settle_due(self, when: dt.datetime) -> None:
        if self.settle_due_at is None or when < self.settle_due_at:
            self.settle_due_at = when

    def result(self, ended_at: dt.datetime) -> PassResult:
        return PassResult(
            folder=self.folder,
            started_at=self.started_at,
            duration=ended_at - self.started_at,
            files_seen=self.files_seen,
            new=self.new,
            changed=self.changed,
            unchanged=self.unchanged,
            renamed=self.renamed,
            reappeared=self.reappeared,
            deleted=self.deleted,
            stored=self.stored,
            skipped=dict(self.skipped),
            skipped_examples=tuple(self.examples),
            bytes_read=self.bytes_read,
            bytes_handed=self.bytes_handed,
            bytes_stored=self.bytes_stored,
            errors=tuple(self.errors),
            folder_missing=self.folder_missing,
            folder_empty=self.folder_empty,
            aborted=self.aborted,
            cut_short=self.cut_short,
            stable_before=self.stable_before,
            stable_changed=self.stable_changed,
            stable_deleted=self.stable_deleted,
            settle_due_at=self.settle_due_at,
            previous_folder=self.previous_folder,
            index_rebuilt=self.index_rebuilt,
        )
