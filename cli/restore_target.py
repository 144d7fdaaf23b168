"""The folder a restore writes into: paths kept inside it, no link followed, files replaced whole.

Every snapshot path is checked again here (the vault checked it when the
manifest was opened) and joined under the resolved folder part by part. A
symbolic link anywhere below the folder is refused, whichever way it points:
a restore never writes through one. Each file is written to a temporary name
beside its final one, its mtime set, then renamed over the final name, so a
file at its final name is always whole (an interrupted restore leaves only
`.storesafe-restore-*.tmp` files, which the next run does not read).

The check and the write are apart in time, and a folder below the target may be
swapped for a link meanwhile. On POSIX the writes cannot be redirected: each
file's folder is reached from the target folder one part at a time, each opened
with O_DIRECTORY|O_NOFOLLOW relative to the one above, and the temporary file is
created, renamed and removed relative to that open folder. Windows has no
dir_fd calls: there each folder is checked again (lstat) just before the file is
created, which leaves a window of a few system calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

from common.errors import FailedPrecondition, quote
from common.vault.paths import check_path

TEMP_PREFIX = ".storesafe-restore-"


class UnsafePath(FailedPrecondition):
    """A snapshot path would lead through a link or a file inside the target folder."""

    code = "restore.unsafe_path"


class Target:
    """The resolved target folder; created when missing."""

    def __init__(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.root = folder.resolve(strict=True)
        except FileExistsError:
            raise FailedPrecondition(f"{folder} exists and is not a folder") from None
        except OSError as err:
            raise FailedPrecondition(f"cannot use {folder} as the target: {err.strerror}") from None
        if not self.root.is_dir():
            raise FailedPrecondition(f"{folder} exists and is not a folder")
        self.shown = str(folder)

    def folds_names(self) -> bool:
        """Whether this folder's file system takes two spellings of a name (case, Unicode
        form) for one file, found by a probe file; then `collision_key` decides clashes."""
        probe = self.root / f"{TEMP_PREFIX}probe-{secrets.token_hex(4)}-Ab.tmp"
        try:
            probe.touch(exist_ok=False)
        except OSError as err:
            raise FailedPrecondition(f"cannot write in {self.shown}: {err.strerror}") from None
        try:
            return (self.root / probe.name.swapcase()).exists()
        finally:
            probe.unlink(missing_ok=True)

    def path_of(self, path: str) -> Path:
        """Where snapshot `path` goes; UnsafePath when a link or a file is in the way."""
        parts = check_path(path).split("/")
        here = self.root
        for part in parts[:-1]:
            here = here / part
            mode = _mode(here)
            if mode is None:
                break  # the rest is made fresh by `parents`
            if stat.S_ISLNK(mode):
                raise UnsafePath(
                    f"{quote(path)} is not restored: {here} is a symbolic link "
                    "(a restore never writes through a link)"
                )
            if not stat.S_ISDIR(mode):
                raise UnsafePath(f"{quote(path)} is not restored: {here} is not a folder")
        final = self.root.joinpath(*parts)
        if os.path.commonpath([self.root, final]) != str(self.root):
            raise UnsafePath(f"{quote(path)} would lead out of {self.shown}")
        return final

    def parents(self, final: Path) -> None:
        """Make the folders above `final`, one at a time, refusing a link that appeared."""
        if _DIR_FD:
            os.close(self._open_folder(final))
            return
        here = self.root
        for part in final.relative_to(self.root).parts[:-1]:
            here = here / part
            try:
                here.mkdir()
            except FileExistsError:
                mode = _mode(here)
                if mode is None or not stat.S_ISDIR(mode):
                    raise UnsafePath(f"{here} is no longer a plain folder") from None

    def open_temp(self, final: Path) -> TempFile:
        """A new temporary file beside `final`, opened for writing."""
        name = f"{TEMP_PREFIX}{secrets.token_hex(8)}.tmp"
        if not _DIR_FD:
            self.parents(final)
            temp = final.parent / name
            return TempFile(final, name, None, temp.open("xb"))
        folder = self._open_folder(final)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(name, flags, 0o666, dir_fd=folder)
        except BaseException:
            os.close(folder)
            raise
        return TempFile(final, name, folder, os.fdopen(fd, "wb"))

    def _open_folder(self, final: Path) -> int:
        """The folder `final` goes in, opened from the target folder part by part (made
        when missing), never through a link; the caller closes it."""
        here = self.root
        fd = os.open(self.root, _FOLDER_FLAGS)
        try:
            for part in final.relative_to(self.root).parts[:-1]:
                here = here / part
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                try:
                    below = os.open(part, _FOLDER_FLAGS, dir_fd=fd)
                except OSError as err:
                    if err.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise UnsafePath(f"{here} is no longer a plain folder") from None
                    raise
                os.close(fd)
                fd = below
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def commit(temp: TempFile, mtime_ns: int) -> None:
        """Flush `temp` to disk, give it `mtime_ns` and rename it over its final name
        (on an OSError, `discard` still removes it)."""
        handle = temp.handle
        handle.flush()
        os.fsync(handle.fileno())
        if temp.folder is None:
            handle.close()
            os.utime(temp.path, ns=(mtime_ns, mtime_ns))
            os.replace(temp.path, temp.final)
            return
        os.utime(handle.fileno(), ns=(mtime_ns, mtime_ns))
        handle.close()
        os.replace(temp.name, temp.final.name, src_dir_fd=temp.folder, dst_dir_fd=temp.folder)
        os.close(temp.folder)
        temp.folder = None
        temp.done = True

    @staticmethod
    def discard(temp: TempFile) -> None:
        """Close and remove a temporary file that will not be completed."""
        temp.handle.close()
        if temp.done:
            return
        if temp.folder is None:
            temp.path.unlink(missing_ok=True)
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp.name, dir_fd=temp.folder)
        finally:
            os.close(temp.folder)
            temp.folder, temp.done = None, True


@dataclasses.dataclass
class TempFile:
    """A file being restored: its final path, its temporary name beside it, the open
    folder both are in (POSIX; None on Windows) and the handle written to."""

    final: Path
    name: str
    folder: int | None
    handle: BinaryIO

    done: bool = False  # renamed or removed, its folder closed

    @property
    def path(self) -> Path:
        return self.final.parent / self.name


_DIR_FD = (
    hasattr(os, "O_NOFOLLOW")
    and hasattr(os, "O_DIRECTORY")
    and {os.open, os.mkdir, os.rename, os.unlink} <= os.supports_dir_fd
    and os.utime in os.supports_fd
)
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)


def _mode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None
