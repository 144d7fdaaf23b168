"""The contract between the scanner and whatever stores file content (the uploader).

The scanner hands each file to store to `Consumer.store` as a `FileStream`
plus the file's identity. The consumer reads the stream to its end, stores
the content (chunking, sealing and sending are its business, not the
scanner's) and returns the content ids that name it. Only then, and only if
the file did not change while it was read, does the scanner commit those ids
to the index. When `store` returned but the scanner does not commit its
result, it calls `discard` (content ids are content-addressed, so what was
stored is at most unreferenced, never wrong).

Errors: a `FileSkipped` raised by the stream (the file changed while read,
became unreadable or busy) may propagate out of `store`: the file is skipped
and retried next pass. Any other `StoreSafeError` from `store` (the server
is unreachable, its store is full) ends the pass: what was committed stays,
nothing else is, and the result says `aborted`. A `PassCut` from `store`
ends the pass cleanly, not failed (its time budget is spent, the upload
window closed): the files stored so far stay committed, this one is not,
deletions are not applied (the walk did not finish), and the result says
`cut_short` with the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from agent.images.identity import FileState
from agent.images.stream import FileStream


class PassCut(Exception):
    """The consumer stops the pass here, cleanly; the message says why (one sentence)."""


@dataclasses.dataclass(frozen=True)
class FileToStore:
    """A file the consumer is asked to store.

    `previous_content_ids` are the content ids last stored under this path
    (the version before a change, or before it was deleted and came back),
    or None: a consumer may reuse what it knows of them.
    """

    path: str  # relative to the folder, '/'-separated, names exactly as on disk
    state: FileState
    previous_content_ids: tuple[str, ...] | None


class Consumer(Protocol):
    """Stores file content for the scanner."""

    def store(self, file: FileToStore, stream: FileStream) -> Sequence[str]:
        """Read `stream` to its end, store it durably, return its content ids."""
        ...

    def discard(self, file: FileToStore, reason: str) -> None:
        """What `store` returned for `file` is not committed (`reason`, one sentence)."""
        ...
