"""The off-site store's rules and records: id formats, size limits, blob names, and what
the server knows of a site's keys, chunks and snapshots (it never reads sealed bytes)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable

from common.errors import InvalidArgument, ResourceExhausted, quote

MAX_IDS_PER_CALL = 1000
"""MissingChunks and FetchChunks take at most this many ids."""
MAX_CHUNK_BYTES = 16 * 1024 * 1024
"""The largest sealed chunk PutChunks takes."""
MAX_FETCH_MESSAGE_BYTES = MAX_CHUNK_BYTES - 64 * 1024
"""The most sealed bytes (ids included) FetchChunks packs into one message, whatever the
client asks: a message stays within 16 MiB (a larger chunk is sent alone, as stored)."""
MAX_RECORD_BYTES = 1024 * 1024
"""The largest sealed snapshot record CommitSnapshot takes."""
MAX_REFERENCES_PER_MESSAGE = 10_000
MAX_REFERENCES = 50_000_000
"""A snapshot's reference count beyond which the header is refused (about 3 GB of ids)."""
SNAPSHOT_LIST_DEFAULT = 50
SNAPSHOT_LIST_MAX = 1000
MISSING_NAMED = 5
"""How many missing references a refused commit names."""

KINDS = ("images", "database")
CHUNK_DIGESTS = {"blake3": "BLAKE3", "sha256": "SHA-256"}
"""The digests a chunk may state (by name, as written): blake3 from current agents,
sha256 from agents before BLAKE3; the index records which."""

_ID = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
_RUN_ID = re.compile(r"[A-Za-z0-9-]{1,64}")


@dataclasses.dataclass(frozen=True)
class SiteKeyRecord:
    """One of a site's data keys, sealed to the fleet recovery key."""

    data_key_id: str
    sealed_key: str
    recovery_key_fingerprint: str
    created_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class ChunkRecord:
    """A chunk in a site's blob index: stored (durably) with this size and digest (hex,
    of `algorithm`: blake3, or sha256 for chunks of agents before BLAKE3), or `deleting`
    while garbage collection removes it."""

    chunk_id: str
    size: int
    digest: str
    state: str = "stored"
    algorithm: str = "sha256"


@dataclasses.dataclass(frozen=True)
class SnapshotRecord:
    """A committed snapshot as the server knows it (its sealed record is in the store)."""

    snapshot_id: str
    kind: str
    created_at: dt.datetime
    committed_at: dt.datetime
    entries: int
    size: int
    data_key_id: str
    backup_run_id: str
    chunks: int
    stored_bytes: int
    record_sha256: str


def check_id(text: str, what: str = "chunk id") -> str:
    """`text` when it is a keyed id (64 lowercase hex digits), else InvalidArgument."""
    if not _ID.fullmatch(text):
        raise InvalidArgument(f"{quote(text, 80)} is not a {what} (64 lowercase hex digits)")
    return text


def check_run_id(text: str) -> str:
    """A run id (a backup run a database snapshot copies): 1-64 letters, digits and '-'."""
    if not _RUN_ID.fullmatch(text):
        raise InvalidArgument(f"{quote(text)} is not a run id (1-64 letters, digits and '-')")
    return text


def check_key_id(text: str) -> str:
    """`text` when it is a data key id (16 lowercase hex digits), else InvalidArgument."""
    if not _KEY_ID.fullmatch(text):
        raise InvalidArgument(f"{quote(text)} is not a data key id (16 lowercase hex digits)")
    return text


def check_ids(ids: Iterable[str], *, limit: int = MAX_IDS_PER_CALL) -> list[str]:
    """The ids in order without repeats; at most `limit`, each a keyed id."""
    found = list(dict.fromkeys(ids))
    if len(found) > limit:
        raise ResourceExhausted(f"at most {limit} chunk ids a call, not {len(found)}")
    for one in found:
        check_id(one)
    return found


def check_sha256(raw: bytes, what: str = "sha256") -> str:
    """The hex form of a raw SHA-256 digest (32 bytes), else InvalidArgument."""
    return check_digest(raw, "sha256", what)


def check_digest(raw: bytes, algorithm: str, what: str) -> str:
    """The hex form of a raw 32-byte digest of `algorithm` (one of CHUNK_DIGESTS), else
    InvalidArgument."""
    name = CHUNK_DIGESTS.get(algorithm)
    if name is None:
        raise InvalidArgument(f"{quote(algorithm)} is not a digest algorithm (sha256 or blake3)")
    if len(raw) != 32:
        raise InvalidArgument(f"{what} must be the 32 bytes of a {name} digest, not {len(raw)}")
    return raw.hex()


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidArgument("the snapshot kind must be images or database")
    return kind


def chunk_name(site: str, chunk_id: str) -> str:
    """The blob name of a site's sealed chunk (content or manifest part)."""
    return f"sites/{site}/chunks/{chunk_id[:2]}/{chunk_id}"


def snapshot_name(site: str, snapshot_id: str) -> str:
    """The blob name of a site's sealed snapshot record."""
    return f"sites/{site}/snapshots/{snapshot_id}"


def refs_name(site: str, snapshot_id: str) -> str:
    """The blob name of the server-written reference list of a snapshot."""
    return f"sites/{site}/refs/{snapshot_id}"


def refs_text(references: Iterable[str]) -> bytes:
    """The reference list as stored (before zstd): sorted ids, one a line."""
    return "".join(f"{ref}\n" for ref in sorted(references)).encode("ascii")


def missing_sentence(missing: list[str], total: int) -> str:
    """Why a commit is refused: the first few references the site's store lacks."""
    named = ", ".join(missing[:MISSING_NAMED])
    more = f" and {total - MISSING_NAMED} more" if total > MISSING_NAMED else ""
    return (
        f"the snapshot references {total} chunk(s) this site has not stored: {named}{more}; "
        "upload them (PutChunks) and commit again"
    )
