"""The sealed envelope of chunks and snapshot records: a versioned header, then AEAD.

    magic (3: b"SSc" chunk, b"SSs" snapshot) | version (1) | flags (1: bit 0 zstd)
    | key id (8) | body length (4, big-endian) | nonce (12) | ChaCha20-Poly1305 body + tag (16)

The associated data is the whole header plus the object's id (32 raw bytes),
so a blob stored under another id, or with any header byte changed, fails
to open. Nonces are random 96-bit values: the chance of any repeat among n
seals under one key is about n^2 / 2^97; a site seals only its new chunks
(thousands a day), and even 2^32 seals under one data key (64 TiB of new data
at 16 KiB chunks) keep it below 2^-33. A new data key resets the count.
"""

from __future__ import annotations

import hmac
import os
import struct
import threading
from enum import Enum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from common.vault import compress
from common.vault.errors import Tampered, Truncated, UnsupportedFormat, WrongKey
from common.vault.ids import check_id

VERSION = 1
FLAG_ZSTD = 0x01
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(">3sBB8sI12s")
HEADER_BYTES = _HEADER.size


_local = threading.local()


def _aead(key: bytes) -> ChaCha20Poly1305:
    """This thread's cipher for `key` (making one per chunk halves the throughput)."""
    ciphers: dict[bytes, ChaCha20Poly1305] | None = getattr(_local, "ciphers", None)
    if ciphers is None or len(ciphers) > 64:
        ciphers = _local.ciphers = {}
    cipher = ciphers.get(key)
    if cipher is None:
        cipher = ciphers[key] = ChaCha20Poly1305(key)
    return cipher


class Kind(Enum):
    """What a sealed blob holds; the magic tells them apart."""

    CHUNK = b"SSc"
    SNAPSHOT = b"SSs"

    @property
    def noun(self) -> str:
        return "chunk" if self is Kind.CHUNK else "snapshot"


def seal(
    kind: Kind,
    key: bytes,
    key_id: bytes,
    object_id: str,
    plain: bytes | memoryview,
    *,
    try_compress: bool = True,
) -> tuple[bool, bytes]:
    """(compressed?, blob): `plain` packed where it pays and sealed under `key` for `object_id`."""
    compressed, body = compress.pack(plain, try_compress=try_compress)
    flags = FLAG_ZSTD if compressed else 0
    header = _HEADER.pack(kind.value, VERSION, flags, key_id, len(body), os.urandom(NONCE_BYTES))
    sealed = _aead(key).encrypt(header[-NONCE_BYTES:], body, _aad(header, object_id))
    return compressed, header + sealed


def _aad(header: bytes, object_id: str) -> bytes:
    return header + bytes.fromhex(object_id)


def key_id_of_blob(blob: bytes) -> bytes | None:
    """The key id a blob was sealed with (to pick the data key), or None if it has no header."""
    if len(blob) < HEADER_BYTES or blob[:3] not in (k.value for k in Kind):
        return None
    return bytes(_HEADER.unpack_from(blob)[3])


def open_blob(kind: Kind, key: bytes, key_id: bytes, object_id: str, blob: bytes) -> bytes:
    """The plaintext of `blob`, after checking its kind, version, key, length and tag."""
    check_id(object_id, f"{kind.noun} id")
    subject = f"{kind.noun} {object_id}"
    if len(blob) < HEADER_BYTES:
        if not blob or kind.value.startswith(bytes(blob[:3])):
            raise Truncated(f"{subject} is cut short: {len(blob)} bytes", object_id)
        raise UnsupportedFormat(f"{subject} is not a StoreSafe sealed {kind.noun}", object_id)
    magic, version, flags, blob_key_id, length, _ = _HEADER.unpack_from(blob)
    if magic != kind.value:
        other = next((k.noun for k in Kind if k.value == magic), None)
        holds = f"a {other}" if other else "no StoreSafe sealed data"
        raise UnsupportedFormat(f"{subject} holds {holds}", object_id)
    if version != VERSION:
        raise UnsupportedFormat(
            f"{subject} is format version {version}; this StoreSafe reads {VERSION}", object_id
        )
    if not hmac.compare_digest(blob_key_id, key_id):
        raise WrongKey(
            f"{subject} was sealed with data key {blob_key_id.hex()}, not with {key_id.hex()}",
            object_id,
        )
    if len(blob) < HEADER_BYTES + length + TAG_BYTES:
        raise Truncated(
            f"{subject} is cut short: {len(blob)} of {HEADER_BYTES + length + TAG_BYTES} bytes",
            object_id,
        )
    if len(blob) > HEADER_BYTES + length + TAG_BYTES:
        raise Tampered(f"{subject} has bytes after its end", object_id)
    header = bytes(blob[:HEADER_BYTES])
    try:
        body = _aead(key).decrypt(
            header[-NONCE_BYTES:], bytes(blob[HEADER_BYTES:]), _aad(header, object_id)
        )
    except InvalidTag:
        raise Tampered(
            f"{subject} failed its authentication check: altered, damaged or stored under "
            "another id",
            object_id,
        ) from None
    if flags & ~FLAG_ZSTD:
        raise UnsupportedFormat(f"{subject} uses format flags this StoreSafe does not know")
    return compress.unpack(bool(flags & FLAG_ZSTD), body, subject)
