"""The filesystem backend: one file per blob under a root directory, written crash-safe.

A blob is written to a temporary file in `<root>/.incoming/` (same filesystem), fsynced,
then hard-linked to its name, which fails if the name exists, so two writers of one
name can never overwrite each other and a reader never sees a torn blob; then the
directory is fsynced and the temporary name unlinked. A crash leaves at most temporary
files, which `remove_stale_temp_files` deletes once they are older than a margin.

A batch (`create_many`) pays the durability once, not per blob (git's
`core.fsyncMethod=batch` does the same for loose objects): every temporary file is
written, then made durable in one `syncfs(2)` of the store's filesystem, then linked to
its name, then the new names, and the folders the batch created for them, are made
durable with one more `syncfs` (a single blob fsyncs each new folder's parent at once).
Without syncfs (not Linux, or a kernel before 5.8, whose syncfs did not report write
errors) each temporary file is fsynced, and each distinct directory, and the parent of
each new folder, once per batch. Either way before the batch returns, so before any
index row names one of its blobs. syncfs also
flushes whatever else is dirty on that filesystem: a store on its own filesystem pays
only for its own writes.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import os
import shutil
import stat as st
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from common.clock import Clock, SystemClock
from common.errors import InvalidArgument, NotFound
from server.storage.backend import Backend, BlobInfo, StoreUsage
from server.storage.errors import StoreFull, StoreUnavailable

INCOMING = ".incoming"
TEMP_MARGIN = dt.timedelta(hours=1)
_FULL = {errno.ENOSPC, errno.EDQUOT}


class FilesystemBackend(Backend):
    """Blobs as files under `root`; a key's `/` parts are directories."""

    def __init__(
        self, root: Path, *, clock: Clock | None = None, use_syncfs: bool | None = None
    ) -> None:
        """`use_syncfs`: batches made durable by syncfs (True), by one fsync per file and
        directory (False), or by syncfs where the system has it (None)."""
        self.root = Path(root)
        self.incoming = self.root / INCOMING
        self._base = f"{self.root}{os.sep}"
        self._incoming = str(self.incoming)
        self.clock = clock or SystemClock()
        self._ready = False
        self._syncfs = SYNCFS if use_syncfs is None else (SYNCFS if use_syncfs else None)
        if use_syncfs and SYNCFS is None:
            raise InvalidArgument("this system has no syncfs(2) that reports write errors")

    def describe(self) -> str:
        return str(self.root)

    def check(self) -> None:
        try:
            self.incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(exc, "be created") from exc
        if not os.access(self.incoming, os.W_OK | os.X_OK):
            raise StoreUnavailable(f"the blob store at {self.root} is not writable by this process")
        self._ready = True
        self.remove_stale_temp_files()

    def create(self, key: str, data: bytes) -> bool:
        if not self._ready:
            self.check()
        try:
            if not self._absent(key):  # a retry: skip the write; the link decides races
                return False
            if not self._link(self._write_temp(data), key):
                return False
            _fsync_dir(self._path(key).rpartition(os.sep)[0])
        except OSError as exc:
            raise self._error(exc, f"store blob {key}") from exc
        return True

    def create_many(self, blobs: Sequence[tuple[str, bytes]]) -> list[bool]:
        if not self._ready:
            self.check()
        created = [False] * len(blobs)
        temps: dict[int, str] = {}
        folders: set[str] = set()  # whose entries must be made durable before returning
        try:
            try:
                for at, (key, data) in enumerate(blobs):
                    if self._absent(key, folders):
                        temps[at] = self._write_temp(data, sync=self._syncfs is None)
                if temps and self._syncfs is not None:  # else each was fsynced as written
                    self._syncfs(self.incoming)  # the bytes are durable before any name appears
                for at in sorted(temps):
                    created[at] = self._link(temps.pop(at), blobs[at][0])
                    if created[at]:
                        folders.add(self._path(blobs[at][0]).rpartition(os.sep)[0])
                self._sync_folders(folders)
            finally:
                for temp in temps.values():
                    _unlink_quietly(temp)
        except OSError as exc:
            raise self._error(exc, f"store a batch of {len(blobs)} blobs") from exc
        return created

    def _path(self, key: str) -> str:
        """The file of `key` (string paths: the hot path makes no Path objects)."""
        return self._base + key if os.sep == "/" else self._base + key.replace("/", os.sep)

    def _absent(self, key: str, folders: set[str] | None = None) -> bool:
        """Make the blob's folder (new folders durable at once, or added to `folders` to be
        made durable by the caller); False when the name exists already (a retry)."""
        target = self._path(key)
        self._ensure_dir(target.rpartition(os.sep)[0], key, folders)
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            return True
        if st.S_ISDIR(mode):
            raise _folder_clash(key)
        return False

    def _link(self, temp: str, key: str) -> bool:
        """Give the durable temporary file its name; False when the name was taken."""
        target = self._path(key)
        try:
            os.link(temp, target)
        except FileExistsError:
            if os.path.isdir(target):
                raise _folder_clash(key) from None
            return False
        finally:
            os.unlink(temp)
        return True

    def _sync_folders(self, folders: set[str]) -> None:
        """Make the new entries in `folders` durable."""
        if not folders:
            return
        if self._syncfs is not None:
            self._syncfs(self.incoming)
            return
        for folder in sorted(folders):
            _fsync_dir(folder)

    def read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"blob {key} is not in the store") from None
        except OSError as exc:
            raise self._error(exc, f"read blob {key}") from exc

    def read_many(self, keys: Sequence[str]) -> list[bytes]:
        # os-level calls on string paths: half the CPU of Path.read_bytes per small blob
        base = f"{self.root}{os.sep}"
        found: list[bytes] = []
        for key in keys:
            try:
                fd = os.open(base + key, os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                raise NotFound(f"blob {key} is not in the store") from None
            except OSError as exc:
                raise self._error(exc, f"read blob {key}") from exc
            try:
                found.append(_read_all(fd))
            except IsADirectoryError:
                raise NotFound(f"blob {key} is not in the store") from None
            except OSError as exc:
                raise self._error(exc, f"read blob {key}") from exc
            finally:
                os.close(fd)
        return found

    def stat(self, keys: Sequence[str]) -> dict[str, BlobInfo | None]:
        return {key: self._stat_one(key) for key in keys}

    def list(self, prefix: str) -> Iterator[BlobInfo]:
        folder, _, start = prefix.rpartition("/")
        base = self.root / folder
        try:
            yield from self._walk(base, folder, start)
        except OSError as exc:
            raise self._error(exc, f"list blobs under {prefix or 'the root'}") from exc

    def delete(self, key: str) -> None:
        target = self.root / key
        try:
            if target.is_dir():
                return
            target.unlink()
            _fsync_dir(target.parent)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._error(exc, f"remove blob {key}") from exc

    def usage(self) -> StoreUsage:
        try:
            figures = shutil.disk_usage(self.root if self.root.exists() else self.root.parent)
        except OSError as exc:
            raise self._error(exc, "report its free space") from exc
        return StoreUsage(free_bytes=figures.free, total_bytes=figures.total)

    def remove_stale_temp_files(self, margin: dt.timedelta = TEMP_MARGIN) -> int:
        """Delete temporary files older than `margin` (left by a crash); return how many."""
        cutoff = (self.clock.now() - margin).timestamp()
        removed = 0
        try:
            entries = list(os.scandir(self.incoming))
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise self._error(exc, "list its temporary files") from exc
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise self._error(exc, "remove its temporary files") from exc
        return removed

    def _write_temp(self, data: bytes, *, sync: bool = True) -> str:
        fd, temp = tempfile.mkstemp(dir=self._incoming, prefix=".blob-")
        try:
            try:
                _write_all(fd, data)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            os.unlink(temp)
            raise
        return temp

    def _ensure_dir(self, folder: str, key: str, synced: set[str] | None = None) -> None:
        """Create `folder` and its parents, each new entry made durable in its parent at
        once, or (with `synced`) its parent added to `synced` for the caller to sync."""
        if os.path.isdir(folder):
            return
        missing: list[str] = []
        probe = folder
        while True:  # one stat per level: another writer may be creating the same folders
            try:
                mode = os.stat(probe).st_mode
            except FileNotFoundError:
                missing.append(probe)
                probe = os.path.dirname(probe)
                continue
            except NotADirectoryError:
                raise _folder_clash(key) from None
            if not st.S_ISDIR(mode):
                raise _folder_clash(key)
            break
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                if not os.path.isdir(path):
                    raise _folder_clash(key) from None
                continue
            if synced is None:
                _fsync_dir(os.path.dirname(path))
            else:
                synced.add(os.path.dirname(path))

    def _stat_one(self, key: str) -> BlobInfo | None:
        try:
            info = os.stat(self.root / key)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise self._error(exc, f"look up blob {key}") from exc
        return BlobInfo(key, info.st_size) if st.S_ISREG(info.st_mode) else None

    def _walk(self, base: Path, folder: str, start: str) -> Iterator[BlobInfo]:
        try:
            entries = sorted(os.scandir(base), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.startswith(start):
                continue
            key = f"{folder}/{entry.name}" if folder else entry.name
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path), key, "")
            elif entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                when = dt.datetime.fromtimestamp(info.st_mtime, dt.UTC)
                yield BlobInfo(key, info.st_size, when)

    def _error(self, exc: OSError, action: str) -> StoreFull | StoreUnavailable:
        reason = exc.strerror or type(exc).__name__
        if exc.errno in _FULL:
            return StoreFull(
                f"the blob store at {self.root} is full ({reason}); could not {action}"
            )
        return StoreUnavailable(f"the blob store at {self.root} could not {action}: {reason}")


def _folder_clash(key: str) -> InvalidArgument:
    return InvalidArgument(
        f"blob name {key} clashes with a stored name: one name cannot be both a blob "
        "and a folder of blobs"
    )


def _fsync_dir(folder: Path | str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    """The whole file open at `fd`: one read of the size fstat gives (blobs never change),
    to its end when that read comes out short or long."""
    size = os.fstat(fd).st_size
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    parts = [data]
    while block := os.read(fd, 1 << 20):
        parts.append(block)
    return b"".join(parts)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):  # a leftover temporary file: removed after the margin
        os.unlink(path)


def _linux_syncfs() -> Callable[[Path], None] | None:
    """syncfs(2) through libc on Linux 5.8 or later (it reports write errors since), or
    None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        major, minor = (int(part) for part in os.uname().release.split(".")[:2])
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (ValueError, OSError, AttributeError):
        return None
    if (major, minor) < (5, 8):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int

    def syncfs(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            if call(fd) != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code))
        finally:
            os.close(fd)

    return syncfs


SYNCFS = _linux_syncfs()
