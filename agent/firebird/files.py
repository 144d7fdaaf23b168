"""The agent's files in backup.dir: names, manifests, spool folder, job lock, atomic publishing.

Layout of `backup.dir`:

    storesafe-<db>-<UTC stamp>-<method>[-L<level>]-<id>.fbk.zst|.nbk.zst  a verified backup
    storesafe-<...>-<id>.fbk.zst.unverified                               complete, unverified
    storesafe-<...>-<id>.fbk.zst.bad                                      found damaged
    storesafe-<db>-<UTC stamp>-<method>[-L<level>]-<id>.json              its manifest
    .storesafe-spool/                                                     work area

Everything unfinished lives in the spool folder: the file the Firebird server
writes, the compressed `.partial`, scratch restores. A complete backup leaves
the spool by one rename after it was fsynced, as `<name>.unverified` (its
manifest written atomically just before, `status: unverified`), and is
verified from that very file. Only once verification passed does it get its
final name (manifest first, `status: good`, then the rename), so a file that
looks like a finished backup is always a verified one, and the newest such
file is the one a technician restoring by hand should pick. A backup whose
verification or re-check found it damaged is kept, renamed with a `.bad`
suffix, and its manifest says `status: bad`. A kill between the manifest
and the rename is finished by `recover_names` at the next job.

The Firebird server runs as another OS user (`firebird` on Linux), so the
spool folder is handed to that user's group (mode 2770) when the agent may do
so, and otherwise opened to others for writing only (0733, not listable).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.firebird.errors import BackupBusy, BackupDirMissing, BackupDirNotWritable, translate

SPOOL = ".storesafe-spool"
UNVERIFIED_SUFFIX = ".unverified"
BAD_SUFFIX = ".bad"
SHARED_DIR_MODE = 0o2770  # setgid: files the server creates keep its group
FALLBACK_DIR_MODE = 0o733
MANIFEST_VERSION = 1
NAME_RE = re.compile(
    r"^storesafe-(?P<db>[A-Za-z0-9_.-]+)-(?P<stamp>\d{8}T\d{6}Z)-(?P<method>gbak|nbackup)"
    r"(?:-L(?P<level>\d))?-(?P<id>[0-9a-f]{8})\.json$"
)


class Status(enum.StrEnum):
    UNVERIFIED = "unverified"
    GOOD = "good"
    BAD = "bad"


@dataclasses.dataclass
class Manifest:
    """The JSON record beside each backup file."""

    name: str  # base name without extension
    file: str  # data file name in backup.dir
    database: str
    method: str
    level: int
    started_at: str
    finished_at: str
    firebird_version: str = ""
    ods: str = ""
    page_size: int = 0
    database_size: int = 0
    size_raw: int = 0
    size_compressed: int = 0
    sha256: str = ""  # of the compressed file
    # of the uncompressed stream (gbak output, nbackup level file); "" in older manifests
    raw_sha256: str = ""
    # the id of the backup run's report (an off-site copy names it); "" in older manifests
    run_id: str = ""
    compression: str = "zstd"
    table_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    # nbackup: counts read again right after the backup (the backup lies between)
    table_counts_after: dict[str, int] = dataclasses.field(default_factory=dict)
    tables: list[str] = dataclasses.field(default_factory=list)
    indices: list[str] = dataclasses.field(default_factory=list)
    chain: list[str] = dataclasses.field(default_factory=list)  # nbackup: lower levels' files
    nbackup_guid: str = ""
    status: Status = Status.UNVERIFIED
    bad_reason: str = ""
    verified_at: str = ""
    verification_seconds: float = 0.0
    version: int = MANIFEST_VERSION

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        fields["status"] = Status(fields.get("status", "unverified"))
        return cls(**fields)

    @property
    def finished(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.finished_at)


def backup_name(database: str, method: str, level: int, when: dt.datetime) -> str:
    """A new, unique base name (no extension) for a backup of `database`."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(database.replace("\\", "/")).stem) or "db"
    stamp = when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    lvl = f"-L{level}" if method == "nbackup" else ""
    return f"storesafe-{stem}-{stamp}-{method}{lvl}-{uuid.uuid4().hex[:8]}"


def data_suffix(method: str) -> str:
    return ".nbk.zst" if method == "nbackup" else ".fbk.zst"


def check_backup_dir(backup_dir: Path) -> None:
    """Raise a typed error unless `backup_dir` exists and the agent can write in it."""
    if not backup_dir.is_dir():
        raise BackupDirMissing(f"backup.dir {backup_dir} does not exist or is not a folder.")
    probe = backup_dir / f".storesafe-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BackupDirNotWritable(
            f"The agent cannot write in backup.dir {backup_dir} ({exc.strerror})."
        ) from exc


@dataclasses.dataclass(frozen=True)
class Spool:
    """The work folder inside backup.dir that both the agent and the server write in."""

    backup_dir: Path
    path: Path
    file_mode: int

    def partial(self, name: str) -> Path:
        return self.path / f"{name}.partial"

    def scratch(self, suffix: str) -> Path:
        return self.path / f"scratch-{uuid.uuid4().hex[:12]}{suffix}"


def prepare_spool(backup_dir: Path, *, server_user: str = "firebird") -> Spool:
    """Check backup.dir and create the spool folder with access for the server's OS user."""
    check_backup_dir(backup_dir)
    path = backup_dir / SPOOL
    try:
        path.mkdir(exist_ok=True)
        mode = _grant_server(path, server_user)
    except OSError as exc:
        raise translate(exc, what="preparing the spool folder") from exc
    return Spool(backup_dir=backup_dir, path=path, file_mode=mode)


def _grant_server(path: Path, server_user: str) -> int:
    """Make `path` writable by the server; return the mode for files the agent puts there."""
    if sys.platform == "win32":  # pragma: no cover - ACLs are inherited on Windows
        return 0o644
    gid = _server_gid(server_user)
    if gid is not None:
        try:
            os.chown(path, -1, gid)
            os.chmod(path, SHARED_DIR_MODE)  # owner and server group only
            return 0o640
        except PermissionError:
            pass
    os.chmod(path, FALLBACK_DIR_MODE)  # others may create, not list
    return 0o644


def _server_gid(server_user: str) -> int | None:
    import grp
    import pwd

    try:
        return pwd.getpwnam(server_user).pw_gid
    except KeyError:
        pass
    try:
        return grp.getgrnam(server_user).gr_gid
    except KeyError:
        return None


@contextlib.contextmanager
def job_lock(spool: Spool) -> Iterator[None]:
    """One backup job per backup.dir at a time; the OS frees the lock if the agent dies."""
    lock_path = spool.path / "lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            _lock_fd(fd)
        except OSError as exc:
            raise BackupBusy(f"Another backup job is running in {spool.backup_dir}.") from exc
        yield
    finally:
        os.close(fd)


def _lock_fd(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def clean_spool(spool: Spool) -> list[str]:
    """Remove leftovers of interrupted jobs (call with the job lock held)."""
    removed: list[str] = []
    for entry in spool.path.iterdir():
        if entry.name == "lock":
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry.name)
    return removed


def remove_quietly(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            with contextlib.suppress(OSError):
                path.unlink()


def fsync_dir(path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - directories cannot be fsynced there
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(backup_dir: Path, manifest: Manifest) -> Path:
    """Write `<name>.json` atomically (temp file, fsync, rename)."""
    final = backup_dir / f"{manifest.name}.json"
    tmp = backup_dir / SPOOL / f"{manifest.name}.json.partial"
    data = json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(backup_dir)
    return final


def publish(partial: Path, final: Path) -> None:
    """Give a fsynced partial file its final name, durably."""
    os.replace(partial, final)
    fsync_dir(final.parent)


def read_manifest(path: Path) -> Manifest | None:
    try:
        return Manifest.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def list_backups(backup_dir: Path) -> list[Manifest]:
    """The agent's finished backups in `backup_dir`, oldest first (bad ones included)."""
    found: list[Manifest] = []
    if not backup_dir.is_dir():
        return found
    for entry in backup_dir.iterdir():
        if not NAME_RE.match(entry.name):
            continue
        manifest = read_manifest(entry)
        if manifest is not None and (backup_dir / manifest.file).is_file():
            found.append(manifest)
    found.sort(key=lambda m: (m.finished_at, m.name))
    return found


def final_file(file: str) -> str:
    """A backup's data file name without its `.unverified` / `.bad` suffix (as reported)."""
    return file.removesuffix(BAD_SUFFIX).removesuffix(UNVERIFIED_SUFFIX)


def mark_bad(backup_dir: Path, manifest: Manifest, reason: str) -> Manifest:
    """Keep a damaged backup for inspection, renamed `.bad` so nothing restores it."""
    if not manifest.file.endswith(BAD_SUFFIX):
        bad = final_file(manifest.file) + BAD_SUFFIX
        with contextlib.suppress(FileNotFoundError):
            os.replace(backup_dir / manifest.file, backup_dir / bad)
        manifest.file = bad
    manifest.status = Status.BAD
    manifest.bad_reason = reason
    write_manifest(backup_dir, manifest)
    return manifest


def mark_good(backup_dir: Path, manifest: Manifest) -> Manifest:
    """A verified backup gets its final name: the manifest says so first, then the rename."""
    current = manifest.file
    manifest.status = Status.GOOD
    manifest.file = final_file(current)
    write_manifest(backup_dir, manifest)
    if current != manifest.file:
        publish(backup_dir / current, backup_dir / manifest.file)
    return manifest


def recover_names(backup_dir: Path) -> list[str]:
    """Finish renames a kill interrupted (a good manifest beside its `.unverified` file)."""
    done: list[str] = []
    for entry in backup_dir.iterdir() if backup_dir.is_dir() else ():
        if not NAME_RE.match(entry.name):
            continue
        manifest = read_manifest(entry)
        if manifest is None or manifest.status != Status.GOOD:
            continue
        pending = backup_dir / (manifest.file + UNVERIFIED_SUFFIX)
        if not (backup_dir / manifest.file).exists() and pending.is_file():
            publish(pending, backup_dir / manifest.file)
            done.append(manifest.file)
    return done
