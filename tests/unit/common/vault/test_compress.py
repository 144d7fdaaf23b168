"""zstd only where it pays: packed formats are sniffed and stored, trials decide the rest."""

from __future__ import annotations

import os

import pytest
import zstandard

from common.vault.compress import MAX_PLAIN_BYTES, is_packed_format, pack, unpack
from common.vault.errors import Tampered

TEXT = b"CUSTOMER;Jane Doe;Main Street 1;555-0100\n" * 2000


@pytest.mark.parametrize(
    "head",
    [
        b"\xff\xd8\xff\xe0\x00\x10JFIF",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"GIF89a\x01\x00",
        b"PK\x03\x04\x14\x00\x06\x00",  # DOCX, XLSX, ZIP
        b"RIFF\x24\x00\x00\x00WEBPVP8 ",
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00",
        b"\x1f\x8b\x08\x00",
        b"\x28\xb5\x2f\xfd\x00",
        b"7z\xbc\xaf\x27\x1c\x00\x04",
    ],
)
def test_packed_formats_are_recognised(head: bytes) -> None:
    assert is_packed_format(head + bytes(20))


@pytest.mark.parametrize(
    "head",
    [b"%PDF-1.7\n", b"II*\x00\x08\x00", b"MM\x00*", b"gbak\x00", b"", b"RIFF\x00\x00\x00\x00WAVE"],
)
def test_other_formats_are_tried(head: bytes) -> None:
    assert not is_packed_format(head)


def test_compressible_data_is_compressed() -> None:
    compressed, body = pack(TEXT)
    assert compressed
    assert len(body) < len(TEXT) // 10
    assert unpack(True, body, "chunk x") == TEXT


def test_incompressible_data_is_stored_as_is() -> None:
    noise = os.urandom(300_000)  # larger than two probes: decided by the probe
    assert pack(noise) == (False, noise)
    small = os.urandom(5_000)  # decided by a full trial
    assert pack(small) == (False, small)


def test_a_small_gain_is_not_worth_it() -> None:
    # 96% noise, 4% zeros: zstd saves a little under 1/32, so the chunk is stored
    data = os.urandom(9_700) + bytes(300)
    assert pack(data)[0] is False
    data = os.urandom(9_000) + bytes(1_000)
    assert pack(data)[0] is True


def test_a_caller_can_skip_the_trial() -> None:
    assert pack(TEXT, try_compress=False) == (False, TEXT)


def test_tiny_chunks_are_stored() -> None:
    assert pack(b"a" * 100) == (False, b"a" * 100)


def test_a_frame_claiming_too_much_is_refused() -> None:
    big = zstandard.ZstdCompressor().compress(bytes(MAX_PLAIN_BYTES + 1))
    with pytest.raises(Tampered, match="chunk 7 holds a compressed frame without a sane size"):
        unpack(True, big, "chunk 7")
    with pytest.raises(Tampered, match="chunk 7 holds a compressed frame without a sane size"):
        unpack(True, b"not zstd at all", "chunk 7")
