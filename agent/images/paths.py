"""Names in the image folder: index keys, reported relative paths, Windows long paths and links.

A file is known by the tuple of its path components below the folder, kept
exactly as on disk (NFC and NFD spellings are different files on Linux). The
index key joins the components' bytes (`os.fsencode`) with NUL, which no name
can contain, so byte order of keys is the order of component tuples: a
folder's subtree follows the folder's own key contiguously, and the walk,
which visits each folder's entries sorted by those bytes, yields keys in
ascending order. Reported paths join the components with '/'.
"""

from __future__ import annotations

import ntpath
import os
import stat
from collections.abc import Sequence
from typing import Any

SEP = b"\0"

FILE_ATTRIBUTE_REPARSE_POINT = 0x400
IO_REPARSE_TAG_MOUNT_POINT = 0xA0000003  # junctions and volume mount points
IO_REPARSE_TAG_SYMLINK = 0xA000000C
_NAME_SURROGATE_BIT = 0x20000000  # the reparse point names another file or folder


def key_of(parts: Sequence[str]) -> bytes:
    """The index key of the path made of `parts`."""
    return SEP.join(os.fsencode(part) for part in parts)


def parts_of(key: bytes) -> tuple[str, ...]:
    return tuple(os.fsdecode(part) for part in key.split(SEP))


def relpath_of(key: bytes) -> str:
    """The reported relative path of `key`: its components joined with '/' (decoded whole:
    the file system encoding maps NUL to NUL and never makes it part of another character,
    so this is `"/".join(parts_of(key))`, without a string per component)."""
    return os.fsdecode(key).replace("\0", "/")


def subtree_prefix(key: bytes) -> bytes:
    """Every key below the folder `key` starts with this."""
    return key + SEP


def windows_long_path(path: str) -> str:
    r"""`path` made absolute in the `\\?\` form that lifts Windows' 260-character limit.

    Windows does not normalise `\\?\` paths, so `.`/`..` and '/' are resolved
    first; a UNC path `\\server\share\x` becomes `\\?\UNC\server\share\x`.
    """
    if path.startswith("\\\\?\\"):
        return path
    full = ntpath.normpath(path) if ntpath.isabs(path) else ntpath.abspath(path)
    if full.startswith("\\\\"):
        return "\\\\?\\UNC\\" + full[2:]
    return "\\\\?\\" + full


def folder_path(folder: str, *, windows: bool = os.name == "nt") -> str:
    """The folder as the scanner opens it: absolute, and in long form on Windows."""
    if windows:
        return windows_long_path(folder)
    return os.path.abspath(folder)


def link_kind(st: Any) -> str | None:
    """What kind of link `st` (an lstat result) is, or None for a file or folder to enter.

    Symbolic links, and on Windows every reparse point that names another
    file or folder (junctions, mount points, symbolic links) are links. Other
    reparse points (deduplicated or cloud files) hold data and are read.
    """
    if stat.S_ISLNK(st.st_mode):
        return "symbolic link"
    attributes = getattr(st, "st_file_attributes", 0)
    if attributes & FILE_ATTRIBUTE_REPARSE_POINT:
        tag = getattr(st, "st_reparse_tag", 0)
        if tag == IO_REPARSE_TAG_MOUNT_POINT:
            return "junction or mount point"
        if tag == IO_REPARSE_TAG_SYMLINK:
            return "symbolic link"
        if tag & _NAME_SURROGATE_BIT:
            return f"reparse point naming another file (tag {tag:#x})"
    return None
