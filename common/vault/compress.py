"""Whether and how a chunk is compressed: zstd only where it pays, never for packed formats.

Files in formats that are compressed already (JPEG, PNG, GIF, WEBP, HEIC and
AVIF, ZIP and the Office/OpenDocument files built on it, gzip, zstd, xz,
bzip2, 7z, RAR, MP4) are recognised by their first bytes and stored as they
are. PDF and TIFF are not sniffed: a scanned PDF is mostly JPEG inside but a
text PDF compresses, and TIFF may be raw or packed, so zstd is tried. Large
chunks are probed first (their first quarter, at most 64 KiB): when that does
not compress, neither is the rest tried. A chunk is kept compressed only
when that saves at least 1/32 of it and 64 bytes.
"""

from __future__ import annotations

import threading

import zstandard

from common.vault.errors import Tampered

LEVEL = 3
PROBE_BYTES = 64 * 1024
PROBE_MIN_BYTES = 4 * 1024
MAX_PLAIN_BYTES = 16 * 1024 * 1024  # the largest chunk any profile makes

_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),  # PNG
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (0, b"PK\x03\x04"),  # ZIP, DOCX, XLSX, ODT
    (0, b"\x1f\x8b"),  # gzip
    (0, b"\x28\xb5\x2f\xfd"),  # zstd
    (0, b"\xfd7zXZ\x00"),  # xz
    (0, b"BZh"),  # bzip2
    (0, b"7z\xbc\xaf\x27\x1c"),  # 7z
    (0, b"Rar!\x1a\x07"),  # RAR
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n"),  # JPEG 2000
)
_FTYP_BRANDS = (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"isom", b"mp4", b"qt  ")


def is_packed_format(head: bytes | memoryview) -> bool:
    """True when the first bytes of a file show a format that is compressed already."""
    head = bytes(head[:32])
    if any(head[at : at + len(sig)] == sig for at, sig in _SIGNATURES):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head[4:8] == b"ftyp" and any(head[8:12].startswith(b) for b in _FTYP_BRANDS)


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    """This thread's compressor (one costs as much to make as compressing 20 KiB)."""
    compressor: zstandard.ZstdCompressor | None = getattr(_local, "compressor", None)
    if compressor is None:
        compressor = zstandard.ZstdCompressor(level=LEVEL, write_content_size=True)
        _local.compressor = compressor
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def _pays(plain_len: int, packed_len: int) -> bool:
    return packed_len <= plain_len - max(64, plain_len // 32)


def pack(
    plain: bytes | memoryview, *, try_compress: bool = True
) -> tuple[bool, bytes | memoryview]:
    """(compressed?, body): the zstd frame when it pays, else `plain` itself (not copied)."""
    if try_compress and len(plain) > 128:
        compressor = _compressor()
        if len(plain) >= 4 * PROBE_MIN_BYTES:
            size = min(PROBE_BYTES, len(plain) // 4)
            if not _pays(size, len(compressor.compress(plain[:size]))):
                return False, plain
        packed = compressor.compress(plain)
        if _pays(len(plain), len(packed)):
            return True, packed
    return False, plain


def unpack(compressed: bool, body: bytes, subject: str) -> bytes:
    """The plaintext of an authenticated body; a frame that lies about its size is refused."""
    if not compressed:
        return body
    try:
        size = zstandard.frame_content_size(body)
    except zstandard.ZstdError:
        size = -1
    if size <= 0 or size > MAX_PLAIN_BYTES:
        raise Tampered(f"{subject} holds a compressed frame without a sane size", subject)
    try:
        plain = _decompressor().decompress(body, max_output_size=size)
    except zstandard.ZstdError:
        raise Tampered(f"{subject} holds a damaged compressed frame", subject) from None
    if len(plain) != size:
        raise Tampered(f"{subject} holds a compressed frame of the wrong size", subject)
    return plain
