"""The fleet recovery key file: its versioned text format, and writing and reading it safely.

    # StoreSafe fleet recovery key ... (comment lines)
    storesafe-fleet-key: v1
    created: 2026-12-07T01:40:00Z
    fingerprint: 3f2a-9c1b-...
    public: ssrk1:...
    private: ssrs1:...

The file is written with mode 0600 (on Windows the folder's ACL decides who
may read it) and never over an existing file unless asked to. Reading checks
that the private key gives the public key and the fingerprint written beside
it, so a damaged file is named as damaged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from common.clock import iso
from common.errors import AlreadyExists, FailedPrecondition, NotFound
from common.vault import textcode
from common.vault.errors import BadKeyText, UnsupportedFormat
from common.vault.keys import PUBLIC_PREFIX, FleetPrivateKey

PRIVATE_PREFIX = "ssrs1"
FORMAT_LINE = "storesafe-fleet-key"
VERSION = "v1"
MAX_FILE_BYTES = 64 * 1024

_HEADER = """\
# StoreSafe fleet recovery key. Whoever holds this file can read the off-site data
# of every site of the fleet; without it nobody can, not even the server's operator.
# Keep it offline and keep a second copy somewhere else: a lost key cannot be
# recovered. Register only the public key with the server.
"""


def key_file_text(key: FleetPrivateKey, created: dt.datetime) -> str:
    """The whole file for `key`, made at `created`."""
    raw = key.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return (
        _HEADER
        + f"{FORMAT_LINE}: {VERSION}\n"
        + f"created: {iso(created.replace(microsecond=0))}\n"
        + f"fingerprint: {key.fingerprint}\n"
        + f"public: {key.public.text}\n"
        + f"private: {textcode.encode(PRIVATE_PREFIX, raw)}\n"
    )


def parse_key_file(text: str, name: str = "the key file") -> FleetPrivateKey:
    """The private key in a key file's text; one clear sentence for anything else."""
    fields = _fields(text, name)
    version = fields.get(FORMAT_LINE)
    if version is None:
        raise BadKeyText(f"{name} is not a StoreSafe fleet key file (no '{FORMAT_LINE}:' line)")
    if version != VERSION:
        raise UnsupportedFormat(
            f"{name} is fleet key format {version[:12]!r}; this StoreSafe reads {VERSION}"
        )
    for needed in ("private", "public", "fingerprint"):
        if needed not in fields:
            raise BadKeyText(f"{name} is damaged: its '{needed}:' line is missing")
    try:
        raw = textcode.decode(PRIVATE_PREFIX, fields["private"], "private key")
    except ValueError as err:
        raise BadKeyText(f"{name} is damaged: {err}") from None
    if raw is None or len(raw) != 32:
        raise BadKeyText(f"{name} is damaged: its private key is not an '{PRIVATE_PREFIX}:' key")
    key = FleetPrivateKey.from_key(X25519PrivateKey.from_private_bytes(raw))
    if fields["public"] != key.public.text or fields["fingerprint"] != key.fingerprint:
        raise BadKeyText(
            f"{name} is damaged: its private key does not give the public key written in it"
        )
    return key


def _fields(text: str, name: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if len(lines) == 1 and lines[0].startswith(PUBLIC_PREFIX + ":"):
        raise BadKeyText(
            f"{name} holds a fleet public key; opening needs the private key file "
            "that `storesafe keys create` wrote"
        )
    for line in lines:
        label, sep, value = line.partition(":")
        if not sep:
            raise BadKeyText(f"{name} is not a StoreSafe fleet key file (a line has no 'name:')")
        fields.setdefault(label.strip().lower(), value.strip())
    return fields


def write_key_file(
    path: Path, key: FleetPrivateKey, created: dt.datetime, *, force: bool = False
) -> None:
    """Write the key file with mode 0600, durably; refuse an existing file unless `force`."""
    data = key_file_text(key, created).encode("ascii")
    if not force:
        _write_new(path, data)
        return
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _write_new(temp, data)
    try:
        os.replace(temp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise FailedPrecondition(f"cannot replace {path}: {err.strerror}") from None
    _sync_dir(path.parent)


def _write_new(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise AlreadyExists(
            f"{path} exists; pass --force to replace it (the key in it is then gone for good)"
        ) from None
    except OSError as err:
        raise FailedPrecondition(f"cannot create {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as err:
        with contextlib.suppress(OSError):
            path.unlink()
        raise FailedPrecondition(f"cannot write {path}: {err.strerror}") from None
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_key_file(path: Path) -> FleetPrivateKey:
    """The private key in the key file at `path`."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise NotFound(f"no key file at {path}") from None
    except IsADirectoryError:
        raise BadKeyText(f"{path} is a folder, not a key file") from None
    except OSError as err:
        raise FailedPrecondition(f"cannot read the key file {path}: {err.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise BadKeyText(f"{path} is far too large to be a fleet key file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise BadKeyText(f"{path} is not a StoreSafe fleet key file (it is not text)") from None
    return parse_key_file(text, f"the key file {path}")
