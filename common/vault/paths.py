"""The rules for paths inside a snapshot: relative, '/'-separated, restorable as named.

Checked both when a manifest is built (the agent) and when it is opened (the
restore), so a path can never lead a restore out of its target folder.

Names are kept exactly as the file system gave them, never normalised:
NTFS and ext4 store NFC and NFD spellings of "é" as two different files, and
a shop folder may hold both, so they are two entries, and a duplicate is
the same sequence of code points. A restore onto a file system that folds
them (macOS, or Windows for case) must check `collision_key` itself.
"""

from __future__ import annotations

import re
import unicodedata

from common.errors import quote
from common.vault.errors import BadPath

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc, exactly
MAX_PATH_CHARS = 4096
MAX_PART_CHARS = 255


def check_path(path: str) -> str:
    """`path` when it follows every rule, else `BadPath` naming it and the rule it breaks."""
    if not isinstance(path, str) or not path:
        raise BadPath("a snapshot entry has no path", "")
    if len(path) <= MAX_PATH_CHARS and _PLAIN.fullmatch(path):
        return path  # the common case, checked fast
    shown = quote(path)
    if len(path) > MAX_PATH_CHARS:
        raise BadPath(f"path {shown} is longer than {MAX_PATH_CHARS} characters", path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise BadPath(f"path {shown} is not valid Unicode (undecodable bytes)", path) from None
    if _CONTROL.search(path):
        raise BadPath(f"path {shown} holds a control character", path)
    if "\\" in path:
        raise BadPath(f"path {shown} uses a backslash; snapshot paths separate with '/'", path)
    if path.startswith("/"):
        raise BadPath(f"path {shown} is absolute; snapshot paths are relative", path)
    if ":" in path:
        raise BadPath(f"path {shown} holds ':' (a drive letter or a stream name)", path)
    for part in path.split("/"):
        if part in ("", ".", ".."):
            what = "an empty part" if not part else f"a '{part}' part"
            raise BadPath(f"path {shown} has {what}", path)
        if len(part) > MAX_PART_CHARS:
            raise BadPath(f"path {shown} has a name longer than {MAX_PART_CHARS} characters", path)
    return path


# The common case in one match: parts of plain characters, none "." or "..", each of at
# most MAX_PART_CHARS; anything else goes through the rules one by one above.
_PLAIN_PART = rf"(?!\.\.?(?:/|\Z))[A-Za-z0-9 _.,()+=@#&'~\-]{{1,{MAX_PART_CHARS}}}"
_PLAIN = re.compile(rf"{_PLAIN_PART}(?:/{_PLAIN_PART})*")


def path_key(path: str) -> tuple[str, ...]:
    """The order of entries in a manifest: by their parts, in code point order.

    Everything inside a folder then comes right after the folder's own name,
    which is what lets a manifest be checked one entry at a time.
    """
    return tuple(path.split("/"))


def collision_key(path: str) -> str:
    """What two paths share when a folding file system (NFC, case) would make them one."""
    return unicodedata.normalize("NFC", path).casefold()
