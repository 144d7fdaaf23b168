"""Sealing a site's data key to the fleet public key, and opening it with the key file.

Sealed form (ECIES-style), as text `ssdk1:<base64url>` with a checksum:

    "SSK" | version 1 | fleet key fingerprint (16) | key id (8) | site length (1) | site
    | ephemeral X25519 public key (32) | ChaCha20-Poly1305(data key) (32 + 16 tag)

The wrapping key is HKDF-SHA256 over the X25519 secret of a fresh ephemeral
key and the fleet key, salted with both public keys, with a context naming
the site; it is used once, so the nonce is zero. Everything before the
ciphertext is associated data: a changed site, key id or fingerprint fails.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from common.errors import InvalidArgument, quote
from common.names import check_name
from common.vault import textcode
from common.vault.errors import (
    BadKeyText,
    SiteMismatch,
    Tampered,
    Truncated,
    UnsupportedFormat,
    WrongKey,
)
from common.vault.keys import FINGERPRINT_BYTES, FleetPrivateKey, FleetPublicKey
from common.vault.sitekeys import DATA_KEY_BYTES, KEY_ID_BYTES, key_id_of

SEALED_PREFIX = "ssdk1"
MAGIC = b"SSK"
VERSION = 1
_ZERO_NONCE = bytes(12)
_EPK = 32
_SEALED = DATA_KEY_BYTES + 16


def _raw_fingerprint(public: FleetPublicKey) -> bytes:
    return bytes.fromhex(public.fingerprint.replace("-", ""))


def _wrap_key(secret: bytes, epk: bytes, recipient: bytes, site: str) -> bytes:
    info = b"storesafe/v1/data-key\x00" + site.encode("ascii")
    return HKDF(algorithm=SHA256(), length=32, salt=epk + recipient, info=info).derive(secret)


def _header(fingerprint: bytes, key_id: bytes, site: str) -> bytes:
    name = site.encode("ascii")
    return MAGIC + bytes([VERSION]) + fingerprint + key_id + bytes([len(name)]) + name


def seal_data_key(site: str, data_key: bytes, fleet: FleetPublicKey) -> str:
    """`data_key` of `site`, sealed so that only the fleet key file opens it."""
    site = check_name(site)
    if len(data_key) != DATA_KEY_BYTES:
        raise BadKeyText(f"a site data key has {DATA_KEY_BYTES} bytes, not {len(data_key)}")
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    secret = ephemeral.exchange(fleet.key)
    header = _header(_raw_fingerprint(fleet), key_id_of(site, data_key), site) + epk
    wrap = ChaCha20Poly1305(_wrap_key(secret, epk, fleet.raw, site))
    return textcode.encode(SEALED_PREFIX, header + wrap.encrypt(_ZERO_NONCE, data_key, header))


@dataclass(frozen=True)
class SealedDataKey:
    """A sealed data key taken apart; its public fields are readable without any key."""

    site: str
    fingerprint: str
    key_id: bytes
    header: bytes
    epk: bytes
    sealed: bytes

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    @classmethod
    def parse(cls, text: str) -> SealedDataKey:
        """Take `ssdk1:...` apart; garbage is refused with one sentence."""
        try:
            raw = textcode.decode(SEALED_PREFIX, text, "sealed data key")
        except ValueError as err:
            raise BadKeyText(str(err)) from None
        if raw is None:
            raise BadKeyText(
                f"{quote(text.strip(), 30)} is not a sealed data key "
                f"(those start with '{SEALED_PREFIX}:')"
            )
        if raw[:3] != MAGIC:
            raise BadKeyText("this sealed data key does not start with its format mark")
        if len(raw) < 4 or raw[3] != VERSION:
            version = raw[3] if len(raw) > 3 else "?"
            raise UnsupportedFormat(f"this sealed data key is format {version}; we read {VERSION}")
        at = 4 + FINGERPRINT_BYTES + KEY_ID_BYTES
        if len(raw) < at + 1 or len(raw) < at + 1 + raw[at] + _EPK + _SEALED:
            raise Truncated("this sealed data key is cut short")
        name_end = at + 1 + raw[at]
        if len(raw) != name_end + _EPK + _SEALED:
            raise Tampered("this sealed data key has bytes its format does not allow")
        try:
            site = check_name(raw[at + 1 : name_end].decode("ascii"))
        except (UnicodeDecodeError, InvalidArgument):
            raise Tampered("the site name in this sealed data key is damaged") from None
        fingerprint = raw[4 : 4 + FINGERPRINT_BYTES].hex()
        return cls(
            site=site,
            fingerprint="-".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4)),
            key_id=raw[4 + FINGERPRINT_BYTES : at],
            header=raw[: name_end + _EPK],
            epk=raw[name_end : name_end + _EPK],
            sealed=raw[name_end + _EPK :],
        )


def open_data_key(sealed_text: str, site: str, key: FleetPrivateKey) -> bytes:
    """The data key of `site` from its sealed form, opened with the fleet key file's key.

    A key file of another fleet, a key sealed for another site and a sealed
    key altered anywhere each raise their own typed error.
    """
    site = check_name(site)
    sealed = SealedDataKey.parse(sealed_text)
    if sealed.fingerprint != key.fingerprint:
        raise WrongKey(
            f"this key file (fingerprint {key.fingerprint}) is not the fleet key that "
            f"site {site}'s data key was sealed to (fingerprint {sealed.fingerprint})"
        )
    if sealed.site != site:
        raise SiteMismatch(f"this data key was sealed for site {sealed.site}, not for {site}")
    try:
        secret = key.key.exchange(X25519PublicKey.from_public_bytes(sealed.epk))
    except ValueError:
        raise Tampered(f"the sealed data key of site {site} was altered") from None
    wrap = ChaCha20Poly1305(_wrap_key(secret, sealed.epk, key.public.raw, site))
    try:
        data_key = wrap.decrypt(_ZERO_NONCE, sealed.sealed, sealed.header)
    except InvalidTag:
        raise Tampered(f"the sealed data key of site {site} was altered or damaged") from None
    if not hmac.compare_digest(key_id_of(site, data_key), sealed.key_id):
        raise Tampered(f"the sealed data key of site {site} names another key id")
    return data_key
