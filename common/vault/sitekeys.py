"""A site's data key and the sub-keys derived from it (chunk ids, content, manifests).

The data key is 32 random bytes made on the agent. Everything else comes from
it through HKDF-SHA256 with a context naming the purpose and the site, so no
two purposes and no two sites ever share a key. The key id (8 bytes, public)
lets sealed data say which data key it needs without revealing anything of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import blake3
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.names import check_name
from common.vault.errors import BadKeyText

DATA_KEY_BYTES = 32
KEY_ID_BYTES = 8
_SALT = b"storesafe/v1/site-keys"


def new_data_key() -> bytes:
    """32 fresh random bytes from the operating system."""
    return os.urandom(DATA_KEY_BYTES)


def _derive(data_key: bytes, purpose: str, site: str, length: int = 32) -> bytes:
    info = f"storesafe/v1/{purpose}".encode("ascii") + b"\x00" + site.encode("ascii")
    return HKDF(algorithm=SHA256(), length=length, salt=_SALT, info=info).derive(data_key)


def key_id_of(site: str, data_key: bytes) -> bytes:
    """The public id of a site's data key."""
    return _derive(data_key, "key-id", site, KEY_ID_BYTES)


@dataclass(frozen=True)
class SiteKeys:
    """The keys one site seals with: made from its data key, never stored apart from it."""

    site: str
    key_id: bytes
    chunk_id_key: bytes = field(repr=False)
    content_key: bytes = field(repr=False)
    manifest_key: bytes = field(repr=False)
    chunker_seed: int = field(repr=False)
    data_key: bytes = field(repr=False)

    @classmethod
    def derive(cls, site: str, data_key: bytes) -> SiteKeys:
        """All sub-keys of `site` from its 32-byte data key."""
        site = check_name(site)
        if len(data_key) != DATA_KEY_BYTES:
            raise BadKeyText(f"a site data key has {DATA_KEY_BYTES} bytes, not {len(data_key)}")
        # 63 bits: pyfastcdc shifts the seed left by one into a uint64
        seed = int.from_bytes(_derive(data_key, "chunker-seed", site, 8), "little") >> 1
        return cls(
            site=site,
            key_id=key_id_of(site, data_key),
            chunk_id_key=_derive(data_key, "chunk-id", site),
            content_key=_derive(data_key, "content", site),
            manifest_key=_derive(data_key, "manifest", site),
            chunker_seed=seed or 1,
            data_key=data_key,
        )

    @property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def chunk_id(self, plain: bytes | memoryview) -> str:
        """The keyed id of a plaintext chunk: keyed BLAKE3, 64 hex digits.

        Two sites holding the same bytes get unrelated ids, and without the
        key an id tells nothing about the bytes (not even a guess can be checked).
        """
        return blake3.blake3(plain, key=self.chunk_id_key).hexdigest()

    def snapshot_id(self, root: bytes) -> str:
        """The keyed id of a snapshot record (its own key, apart from chunk ids)."""
        return blake3.blake3(root, key=self.manifest_key).hexdigest()
