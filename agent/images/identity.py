"""What says a file is still the same: size, modification time in ns and file id.

The file id is the volume plus the file's number on it (`st_dev:st_ino`:
inode on POSIX, volume serial and NTFS file index on Windows). A file whose
three values equal what the index holds is not opened again; the same three
values under another name are the same file renamed or hard-linked.
"""

from __future__ import annotations

import os
from typing import NamedTuple

NO_FILE_ID = "0:0"  # what filesystems without stable ids report; never trusted for renames


class FileState(NamedTuple):
    """A file's size, mtime in ns and file id, as one stat saw them."""

    size: int
    mtime_ns: int
    file_id: str

    @property
    def id_is_usable(self) -> bool:
        return self.file_id != NO_FILE_ID and not self.file_id.endswith(":0")


def state_of(st: os.stat_result) -> FileState:
    """The FileState of a stat (or fstat) result."""
    return FileState(st.st_size, st.st_mtime_ns, f"{st.st_dev:x}:{st.st_ino:x}")
