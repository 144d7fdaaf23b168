"""The typed errors of the sealed off-site format, each with a stable code and one sentence.

Every class sits under a common category (so the gRPC and CLI tables map it
without knowing it) and under `VaultError` (so a caller can catch them all).
Errors about one chunk or snapshot carry its id in `subject`.
"""

from __future__ import annotations

from common.errors import FailedPrecondition, InvalidArgument, StoreSafeError


class VaultError(StoreSafeError):
    """Base of every failure to build, seal or open off-site data."""

    code = "vault.error"

    def __init__(self, message: str, subject: str = "") -> None:
        super().__init__(message)
        self.subject = subject


class BadKeyText(VaultError, InvalidArgument):
    """A public key, sealed data key or key file is not in any form StoreSafe writes."""

    code = "vault.bad_key_text"


class WrongKey(VaultError, FailedPrecondition):
    """The key at hand is not the one the data was sealed with."""

    code = "vault.wrong_key"


class SiteMismatch(VaultError, FailedPrecondition):
    """Sealed data belongs to another site than the one asked for."""

    code = "vault.site_mismatch"


class Tampered(VaultError, FailedPrecondition):
    """Sealed data failed its authentication check: altered, swapped or damaged."""

    code = "vault.tampered"


class Truncated(VaultError, FailedPrecondition):
    """Sealed data is shorter than its format allows."""

    code = "vault.truncated"


class UnsupportedFormat(VaultError, FailedPrecondition):
    """Sealed data of an unknown kind or a newer format version."""

    code = "vault.unsupported_format"


class BadChunkId(VaultError, InvalidArgument):
    """A chunk or snapshot id that is not 64 lowercase hex digits."""

    code = "vault.bad_chunk_id"


class BadPath(VaultError, InvalidArgument):
    """A manifest path that could escape the restore folder or cannot be restored as named."""

    code = "vault.bad_path"


class BadManifest(VaultError, InvalidArgument):
    """A manifest entry or snapshot record that breaks the manifest rules."""

    code = "vault.bad_manifest"
