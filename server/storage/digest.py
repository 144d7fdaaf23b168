"""Content digests: what a sender states about a blob and what the store checks on receipt."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re

from common.errors import InvalidArgument, quote

ALGORITHMS = ("sha256",)
_HEX = re.compile(r"[0-9a-f]{64}")


@dataclasses.dataclass(frozen=True)
class Digest:
    """A sha256 digest, written `sha256:<64 lowercase hex digits>`."""

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise InvalidArgument(
                f"digest algorithm {quote(self.algorithm)} is not supported (use sha256)"
            )
        if not _HEX.fullmatch(self.hex):
            raise InvalidArgument(
                f"digest {quote(self.hex)} is not 64 lowercase hexadecimal digits"
            )

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Read `sha256:<hex>`; anything else is InvalidArgument."""
        algorithm, sep, value = text.partition(":")
        if not sep:
            raise InvalidArgument(f"digest {quote(text)} must look like sha256:<hex>")
        return cls(algorithm, value)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        """The sha256 digest of `data`."""
        return cls("sha256", hashlib.sha256(data).hexdigest())

    def matches(self, data: bytes) -> bool:
        """Whether `data` hashes to this digest."""
        return Digest.of(data) == self

    def base64(self) -> str:
        """The raw digest in base64 (the form S3's ChecksumSHA256 header takes)."""
        return base64.b64encode(bytes.fromhex(self.hex)).decode("ascii")

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
