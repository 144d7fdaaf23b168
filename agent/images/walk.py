"""The walk of the image folder: every entry below it once, in index-key order, links never entered.

Iterative (a stack of listings, no recursion limit), each folder listed once
with os.scandir and its entries visited sorted by their bytes, so the keys
come out ascending (see agent.images.paths). Symbolic links, junctions and
other name-surrogate reparse points are reported and neither followed nor
entered, whether they point inside the folder or out of it; fifos, sockets and
devices are reported and never opened. A folder that cannot be listed and an
entry that cannot be looked at are reported as `transient`: what the index
holds there is kept, and the next pass tries again.
"""

from __future__ import annotations

import operator
import os
import stat
from collections.abc import Callable, Iterator
from typing import NamedTuple

from agent.images.errors import skip_for_os_error
from agent.images.identity import FileState, state_of
from agent.images.paths import SEP, link_kind
from agent.images.result import SkipReason


class Found(NamedTuple):
    """A regular file: its key, the path to open it by, its state from lstat, and when it
    last changed by the file system's own times (`changed_ns`, see `changed_ns`)."""

    key: bytes
    path: str
    state: FileState
    changed_ns: int = 0


def changed_ns(st: os.stat_result, *, windows: bool) -> int:
    """When a file's content or inode last changed (ns since the epoch): its mtime and, on
    POSIX, its ctime too (a copy that keeps an old mtime, `cp -p` or an unzip, still has a
    fresh ctime). Windows' st_ctime is the creation time, which says nothing of writes."""
    return st.st_mtime_ns if windows else max(st.st_mtime_ns, st.st_ctime_ns)


class Passed(NamedTuple):
    """An entry the walk does not read or enter, and why."""

    key: bytes
    path: str
    reason: SkipReason
    detail: str
    transient: bool  # True: could not be looked at now, keep what the index holds


Entry = Found | Passed
Listing = list[tuple[bytes, os.DirEntry[str]]]
Lister = Callable[[str], Listing]


def list_folder(path: str) -> Listing:
    """The entries of `path` with their names' bytes, in descending key order (the walk
    pops from the end)."""
    with os.scandir(path) as it:
        entries = [(os.fsencode(entry.name), entry) for entry in it]
    entries.sort(key=operator.itemgetter(0), reverse=True)
    return entries


def walk(
    top: Listing,
    *,
    windows: bool = os.name == "nt",
    lister: Lister = list_folder,
) -> Iterator[Entry]:
    """Every entry below the folder whose `lister` listing is `top`, in ascending key order."""
    stack: list[tuple[bytes, Listing]] = [(b"", top)]
    while stack:
        folder_key, entries = stack[-1]
        if not entries:
            stack.pop()
            continue
        name, entry = entries.pop()
        key = folder_key + SEP + name if folder_key else name
        try:
            st = os.lstat(entry.path) if windows else entry.stat(follow_symlinks=False)
        except OSError as exc:
            skip = skip_for_os_error(exc, entry.path)
            yield Passed(key, entry.path, skip.reason, skip.message, transient=True)
            continue
        if not windows and stat.S_ISREG(st.st_mode):  # the common case, first
            yield Found(key, entry.path, state_of(st), changed_ns(st, windows=False))
            continue
        link = link_kind(st)
        if link is not None:
            yield Passed(key, entry.path, SkipReason.SYMLINK, f"a {link}, not followed", False)
        elif stat.S_ISDIR(st.st_mode):
            try:
                stack.append((key, lister(entry.path)))
            except OSError as exc:
                skip = skip_for_os_error(exc, entry.path)
                yield Passed(key, entry.path, skip.reason, skip.message, transient=True)
        elif stat.S_ISREG(st.st_mode):
            yield Found(key, entry.path, state_of(st), changed_ns(st, windows=windows))
        else:
            yield Passed(key, entry.path, SkipReason.NOT_REGULAR, "not a regular file", False)
