"""Sealed chunks: round trip, and every way a stored blob can be wrong, each named."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.vault import envelope
from common.vault.chunks import open_chunk, seal_chunk
from common.vault.errors import (
    BadChunkId,
    Tampered,
    Truncated,
    UnsupportedFormat,
    VaultError,
    WrongKey,
)
from common.vault.sitekeys import SiteKeys
from common.vault.snapshot import open_record
from tests.unit.common.vault.conftest import flip

PROPS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
TEXT = b"Invoice 2026-0042, customer 17, total 129.90 EUR\n" * 400
NOISE = os.urandom(20_000)


@pytest.mark.parametrize(("plain", "compressed"), [(TEXT, True), (NOISE, False), (b"", False)])
def test_round_trip(keys: SiteKeys, plain: bytes, compressed: bool) -> None:
    sealed = seal_chunk(keys, plain)
    assert sealed.chunk_id == keys.chunk_id(plain)
    assert sealed.length == len(plain)
    assert sealed.compressed is compressed
    assert plain not in sealed.blob or not plain
    assert open_chunk(keys, sealed.chunk_id, sealed.blob) == plain


def test_each_seal_has_its_own_nonce(keys: SiteKeys) -> None:
    one, two = seal_chunk(keys, TEXT), seal_chunk(keys, TEXT)
    assert one.chunk_id == two.chunk_id
    assert one.blob != two.blob


@PROPS
@given(plain=st.binary(max_size=5000), try_compress=st.booleans())
def test_any_bytes_round_trip(keys: SiteKeys, plain: bytes, try_compress: bool) -> None:
    sealed = seal_chunk(keys, plain, try_compress=try_compress)
    assert open_chunk(keys, sealed.chunk_id, sealed.blob) == plain


# header: magic 0-2, version 3, flags 4, key id 5-12, length 13-16, nonce 17-28, then body
REGIONS = [
    ("magic", 0, UnsupportedFormat),
    ("version", 3, UnsupportedFormat),
    ("flags", 4, Tampered),
    ("key id", 8, WrongKey),
    ("nonce", 20, Tampered),
    ("body", 40, Tampered),
    ("tag", -1, Tampered),
]


@pytest.mark.parametrize(("region", "at", "error"), REGIONS, ids=[r[0] for r in REGIONS])
@pytest.mark.parametrize("plain", [TEXT, NOISE], ids=["compressed", "stored"])
def test_a_changed_byte_in_every_region_is_named(
    keys: SiteKeys, plain: bytes, region: str, at: int, error: type[VaultError]
) -> None:
    sealed = seal_chunk(keys, plain)
    with pytest.raises(error) as caught:
        open_chunk(keys, sealed.chunk_id, flip(sealed.blob, at))
    assert sealed.chunk_id in caught.value.message
    assert caught.value.subject == sealed.chunk_id


def _with_length(blob: bytes, delta: int) -> bytes:
    length = int.from_bytes(blob[13:17], "big") + delta
    return blob[:13] + length.to_bytes(4, "big") + blob[17:]


@pytest.mark.parametrize("plain", [TEXT, NOISE], ids=["compressed", "stored"])
def test_a_changed_length_field(keys: SiteKeys, plain: bytes) -> None:
    sealed = seal_chunk(keys, plain)
    with pytest.raises(Truncated, match="is cut short"):
        open_chunk(keys, sealed.chunk_id, _with_length(sealed.blob, +1))
    with pytest.raises(Tampered, match="bytes after its end"):
        open_chunk(keys, sealed.chunk_id, _with_length(sealed.blob, -1))


@pytest.mark.parametrize("keep", [0, 2, 10, envelope.HEADER_BYTES, envelope.HEADER_BYTES + 15, -1])
def test_truncated_blobs(keys: SiteKeys, keep: int) -> None:
    sealed = seal_chunk(keys, TEXT)
    with pytest.raises(Truncated, match=f"chunk {sealed.chunk_id} is cut short"):
        open_chunk(keys, sealed.chunk_id, sealed.blob[:keep])


def test_extra_bytes(keys: SiteKeys) -> None:
    sealed = seal_chunk(keys, TEXT)
    with pytest.raises(Tampered, match="bytes after its end"):
        open_chunk(keys, sealed.chunk_id, sealed.blob + b"\x00")


def test_swapped_ids_fail(keys: SiteKeys) -> None:
    one, two = seal_chunk(keys, TEXT), seal_chunk(keys, NOISE)
    with pytest.raises(Tampered, match=f"chunk {two.chunk_id} failed its authentication"):
        open_chunk(keys, two.chunk_id, one.blob)


def test_a_chunk_of_another_site_is_a_wrong_key(keys: SiteKeys, keys_b: SiteKeys) -> None:
    theirs = seal_chunk(keys_b, TEXT)
    with pytest.raises(WrongKey, match=f"was sealed with data key {keys_b.key_id_hex}"):
        open_chunk(keys, theirs.chunk_id, theirs.blob)


def test_plaintext_id_is_checked_again(keys: SiteKeys) -> None:
    # a blob sealed with the right key but bound to an id that is not its content's
    wrong_id = keys.chunk_id(b"something else")
    _, blob = envelope.seal(envelope.Kind.CHUNK, keys.content_key, keys.key_id, wrong_id, TEXT)
    with pytest.raises(Tampered, match=f"chunk {wrong_id} opened to bytes with another id"):
        open_chunk(keys, wrong_id, blob)


def test_a_snapshot_record_is_not_a_chunk(keys: SiteKeys) -> None:
    sealed = seal_chunk(keys, TEXT)
    with pytest.raises(UnsupportedFormat, match="holds a chunk"):
        open_record(keys, sealed.chunk_id, sealed.blob)
    with pytest.raises(UnsupportedFormat, match="holds no StoreSafe sealed data"):
        open_chunk(keys, sealed.chunk_id, b"PK\x03\x04" + sealed.blob)


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "g" * 64, "0" * 63, "0" * 65])
def test_bad_ids(keys: SiteKeys, bad: str) -> None:
    with pytest.raises(BadChunkId, match="is not a chunk id"):
        open_chunk(keys, bad, b"")


def test_a_compressed_frame_lying_about_its_size(keys: SiteKeys) -> None:
    import zstandard

    frame = zstandard.ZstdCompressor(write_content_size=False).compress(TEXT)
    chunk_id = keys.chunk_id(TEXT)
    header = envelope._HEADER.pack(
        b"SSc", 1, envelope.FLAG_ZSTD, keys.key_id, len(frame), bytes(12)
    )
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    body = ChaCha20Poly1305(keys.content_key).encrypt(
        bytes(12), frame, header + bytes.fromhex(chunk_id)
    )
    with pytest.raises(Tampered, match="without a sane size"):
        open_chunk(keys, chunk_id, header + body)
