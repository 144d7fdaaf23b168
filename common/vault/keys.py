"""The fleet recovery key pair (X25519): its public key's text form and its fingerprint.

The MSP holds the private key; the public key travels to the agents in their
configuration as `ssrk1:<base64url>` (with a checksum) and is what every
site's data key is sealed to.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from common.errors import quote
from common.vault import textcode
from common.vault.errors import BadKeyText

PUBLIC_PREFIX = "ssrk1"
KEY_BYTES = 32
FINGERPRINT_BYTES = 16


def fingerprint_of(public: bytes) -> str:
    """16 bytes of SHA-256 over the public key, as hex in groups of four: `3f2a-9c1b-...`."""
    digest = hashlib.sha256(b"storesafe fleet key fingerprint v1\x00" + public).hexdigest()
    hexed = digest[: FINGERPRINT_BYTES * 2]
    return "-".join(hexed[i : i + 4] for i in range(0, len(hexed), 4))


@dataclass(frozen=True)
class FleetPublicKey:
    """The public half: seals site data keys; safe to show, store and send anywhere."""

    raw: bytes
    _key: X25519PublicKey = field(repr=False, compare=False)

    @classmethod
    def from_raw(cls, raw: bytes) -> FleetPublicKey:
        """The key from its 32 bytes; refuses the weak points X25519 cannot agree with."""
        if len(raw) != KEY_BYTES:
            raise BadKeyText(f"a fleet public key has {KEY_BYTES} bytes, not {len(raw)}")
        key = X25519PublicKey.from_public_bytes(raw)
        try:  # a low-order point gives an all-zero secret, which cryptography refuses
            X25519PrivateKey.generate().exchange(key)
        except ValueError:
            raise BadKeyText(
                "this fleet public key is a weak X25519 point; make a new key pair"
            ) from None
        return cls(raw, key)

    @classmethod
    def parse(cls, text: str) -> FleetPublicKey:
        """Read `ssrk1:...`; any other text is refused with one sentence saying why."""
        try:
            raw = textcode.decode(PUBLIC_PREFIX, text, "fleet public key")
        except ValueError as err:
            raise BadKeyText(str(err)) from None
        if raw is None:
            raise BadKeyText(
                f"{quote(text.strip(), 30)} is not a fleet public key "
                f"(those start with '{PUBLIC_PREFIX}:', from `storesafe keys create`)"
            )
        return cls.from_raw(raw)

    @property
    def text(self) -> str:
        """The stable text form, for config values and proto fields."""
        return textcode.encode(PUBLIC_PREFIX, self.raw)

    @property
    def fingerprint(self) -> str:
        """What a person compares to tell two keys apart."""
        return fingerprint_of(self.raw)

    @property
    def key(self) -> X25519PublicKey:
        return self._key


@dataclass(frozen=True)
class FleetPrivateKey:
    """The private half: opens every site's data key. Lives only in the MSP's key file."""

    _key: X25519PrivateKey = field(repr=False)
    public: FleetPublicKey

    @classmethod
    def generate(cls) -> FleetPrivateKey:
        """A new random key pair."""
        return cls.from_key(X25519PrivateKey.generate())

    @classmethod
    def from_key(cls, key: X25519PrivateKey) -> FleetPrivateKey:
        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(key, FleetPublicKey.from_raw(raw))

    @property
    def key(self) -> X25519PrivateKey:
        return self._key

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint
