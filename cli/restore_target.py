"""The folder a restore writes into: paths kept inside it, no link followed, files replaced whole.

Every snapshot path is checked again here (the vault checked it when the
manifest was opened) and joined under the resolved folder part by part. A
symbolic link anywhere below the folder is refused, whichever way it points:
a restore never writes through one. Each file is written to a temporary name
beside its final one, its mtime set, then renamed over the final name, so a
file at its final name is always whole (an interrupted restore leaves only
`.storesafe-restore-*.tmp` files, which the next run does not read).
"""

from __future__ import annotations

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
        here = self.root
        for part in final.relative_to(self.root).parts[:-1]:
            here = here / part
            try:
                here.mkdir()
            except FileExistsError:
                mode = _mode(here)
                if mode is None or not stat.S_ISDIR(mode):
                    raise UnsafePath(f"{here} is no longer a plain folder") from None

    def open_temp(self, final: Path) -> tuple[Path, BinaryIO]:
        """A new temporary file beside `final`, opened for writing."""
        self.parents(final)
        temp = final.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}.tmp"
        return temp, temp.open("xb")

    @staticmethod
    def commit(temp: Path, handle: BinaryIO, final: Path, mtime_ns: int) -> None:
        """Flush `temp` to disk, give it `mtime_ns` and rename it over `final`."""
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.utime(temp, ns=(mtime_ns, mtime_ns))
        os.replace(temp, final)

    @staticmethod
    def discard(temp: Path, handle: BinaryIO) -> None:
        """Close and remove a temporary file that will not be completed."""
        handle.close()
        temp.unlink(missing_ok=True)


def _mode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None
