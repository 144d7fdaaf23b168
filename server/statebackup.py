"""The server's own state as one archive: the data dir's keys and the database, and back.

`backup_state` writes a gzip'd tar (mode 0600: it holds private keys) with

- the data dir's top-level files: `ca.pem` and `ca.key` (the private CA:
  without it no new server certificate can be issued that agents trust),
  `server.pem` / `server.key` (TLS), `config.key` (without it every secret
  configuration value, e.g. `firebird.password`, is lost), and any other
  top-level file; subfolders are left out and named in the result;
- the database: SQLite copied through SQLite's online backup API (consistent
  while the server runs), or PostgreSQL as a `pg_dump --format=custom` file;
- `manifest.json`: format, time, database kind, schema revision, files.

`restore_state` unpacks such an archive into a new, empty data dir (and, for
PostgreSQL, `pg_restore`s the dump into an empty database), so that
`storesafe-server serve` on it serves the same fleet, keys and tokens.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from common.errors import FailedPrecondition, InvalidArgument, Unavailable
from server.db.engine import make_engine, schema_revision, sqlite_url

FORMAT = 1
MANIFEST = "manifest.json"
SQLITE_NAME = "storesafe.db"
PG_DUMP_NAME = "storesafe.pgdump"
_LIVE_SQLITE = {SQLITE_NAME, f"{SQLITE_NAME}-wal", f"{SQLITE_NAME}-shm", f"{SQLITE_NAME}-journal"}
REQUIRED = ("ca.pem", "server.pem", "server.key", "config.key")


@dataclasses.dataclass(frozen=True)
class BackupResult:
    archive: Path
    database: str  # "sqlite" | "postgresql"
    files: tuple[str, ...]
    skipped: tuple[str, ...]
    schema_revision: str | None


def backup_state(data_dir: Path, to: Path, *, db_url: str = "", now: dt.datetime) -> BackupResult:
    """Write the archive of `data_dir` (and its database, `db_url` or the embedded SQLite)."""
    if not (data_dir / "ca.pem").is_file():
        raise FailedPrecondition(f"{data_dir} is not an initialised StoreSafe data dir")
    missing = [name for name in REQUIRED if not (data_dir / name).is_file()]
    if missing:
        raise FailedPrecondition(f"{data_dir} lacks {', '.join(missing)}; it cannot be backed up")
    url = db_url or sqlite_url(data_dir)
    kind = _kind(url)
    files, skipped = [], []
    for entry in sorted(data_dir.iterdir()):
        if entry.name in _LIVE_SQLITE:
            continue
        if entry.is_file() and not entry.is_symlink():
            files.append(entry.name)
        else:
            skipped.append(entry.name)
    with tempfile.TemporaryDirectory(prefix="storesafe-backup-") as scratch:
        scratch_dir = Path(scratch)
        if kind == "sqlite":
            db_file = scratch_dir / SQLITE_NAME
            _sqlite_copy(Path(make_url(url).database or ""), db_file)
        else:
            db_file = scratch_dir / PG_DUMP_NAME
            _pg("pg_dump", url, ["--format=custom", "--no-owner", "--no-acl", "-f", str(db_file)])
        revision = _revision(url if kind == "postgresql" else f"sqlite:///{db_file}")
        manifest = {
            "format": FORMAT,
            "created_at": now.isoformat(),
            "database": kind,
            "schema_revision": revision,
            "files": files,
            "skipped": skipped,
        }
        try:
            _write_archive(to, data_dir, files, db_file, manifest)
        except OSError as exc:
            raise FailedPrecondition(f"cannot write {to} ({exc.strerror or exc})") from exc
    return BackupResult(to, kind, tuple(files), tuple(skipped), revision)


def restore_state(archive: Path, data_dir: Path, *, db_url: str = "") -> dict[str, object]:
    """Unpack `archive` into the new or empty `data_dir`; returns its manifest."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise FailedPrecondition(
            f"{data_dir} is not empty; restore into a new folder (the current one stays as it is)"
        )
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed by the `with` below
    except (OSError, tarfile.TarError) as exc:
        raise InvalidArgument(f"{archive} is not a StoreSafe state backup ({exc})") from exc
    with tar:
        manifest = _read_manifest(tar, archive)
        kind = str(manifest["database"])
        if kind == "postgresql" and not db_url:
            raise InvalidArgument(
                "this backup holds a PostgreSQL dump: give --db with the URL of an empty database"
            )
        if kind == "sqlite" and db_url:
            raise InvalidArgument(
                "this backup holds the embedded SQLite database; restore it without --db"
            )
        if kind == "postgresql":
            _require_empty(db_url)
        made_dir = not data_dir.exists()
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            data_dir.chmod(0o700)
        except OSError as exc:
            raise FailedPrecondition(f"cannot create {data_dir} ({exc.strerror or exc})") from exc
        written: list[Path] = []
        try:
            for member in tar.getmembers():
                if member.name == MANIFEST:
                    continue
                if not member.isfile() or "/" in member.name or member.name.startswith("."):
                    raise InvalidArgument(f"{archive} holds an unexpected entry {member.name!r}")
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                target = data_dir / member.name
                with source, open(target, "xb") as out:
                    written.append(target)
                    os.chmod(target, (member.mode & 0o644) or 0o600)  # keys stay 0600
                    shutil.copyfileobj(source, out)
            if kind == "postgresql":
                dump = data_dir / PG_DUMP_NAME
                _pg("pg_restore", db_url, ["--no-owner", "--no-acl", "--exit-on-error", str(dump)])
                dump.unlink()
        except BaseException as exc:
            for path in written:  # leave no half-restored data dir behind
                path.unlink(missing_ok=True)
            if made_dir:
                data_dir.rmdir()
            if isinstance(exc, OSError):
                raise FailedPrecondition(
                    f"cannot restore into {data_dir} ({exc.strerror or exc})"
                ) from exc
            raise
    return manifest


def _kind(url: str) -> str:
    try:
        backend = make_url(url).get_backend_name()
    except Exception as exc:
        raise InvalidArgument(f"the database URL {url!r} is not valid") from exc
    if backend not in ("sqlite", "postgresql"):
        raise InvalidArgument("the database URL must be sqlite:/// or postgresql+psycopg://")
    return backend


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise FailedPrecondition(f"the database {source} does not exist")
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise FailedPrecondition(f"cannot copy the database {source}: {exc}") from exc


def _revision(url: str) -> str | None:
    engine = make_engine(url)
    try:
        return schema_revision(engine)
    except SQLAlchemyError as exc:
        raise Unavailable(f"cannot read the database: {_short(exc)}") from exc
    finally:
        engine.dispose()


def _require_empty(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        tables = inspect(engine).get_table_names()
    except SQLAlchemyError as exc:
        raise Unavailable(f"cannot reach the database: {_short(exc)}") from exc
    finally:
        engine.dispose()
    if tables:
        raise FailedPrecondition(
            f"the database already has {len(tables)} table(s); restore into an empty database"
        )


def _pg_env(url: str) -> Mapping[str, str]:
    """libpq settings for `url` in the environment, so the password never shows in `ps`."""
    parsed = make_url(url)
    env = dict(os.environ)
    for var, value in (
        ("PGHOST", parsed.host),
        ("PGPORT", parsed.port),
        ("PGUSER", parsed.username),
        ("PGPASSWORD", parsed.password),
        ("PGDATABASE", parsed.database),
    ):
        if value is not None:
            env[var] = str(value)
    return env


def _pg(tool: str, url: str, args: list[str]) -> None:
    if shutil.which(tool) is None:
        raise FailedPrecondition(
            f"{tool} is not installed (Debian: apt-get install postgresql-client)"
        )
    argv = [tool, *args]
    if tool == "pg_restore":
        argv.insert(1, f"--dbname={make_url(url).database}")
    done = subprocess.run(argv, env=_pg_env(url), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[0]
        raise FailedPrecondition(f"{tool} failed: {first}")


def _write_archive(
    to: Path, data_dir: Path, files: list[str], db_file: Path, manifest: dict[str, object]
) -> None:
    to = to.absolute()
    fd, tmp = tempfile.mkstemp(dir=to.parent, prefix=f".{to.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            body = json.dumps(manifest, indent=2).encode("utf-8")
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(body), 0o600
            tar.addfile(info, io.BytesIO(body))
            for name in files:
                tar.add(data_dir / name, arcname=name, recursive=False)
            tar.add(db_file, arcname=db_file.name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, to)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, object]:
    try:
        member = tar.getmember(MANIFEST)
        raw = tar.extractfile(member)
        data = json.loads(raw.read()) if raw else None
    except (KeyError, ValueError, tarfile.TarError) as exc:
        raise InvalidArgument(f"{archive} is not a StoreSafe state backup (no manifest)") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidArgument(f"{archive} is a state backup of an unknown format")
    if data.get("database") not in ("sqlite", "postgresql"):
        raise InvalidArgument(f"{archive} names an unknown database kind")
    return data


def _short(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
