"""The blob store's typed errors: each refines a common error, so the one gRPC table maps it."""

from __future__ import annotations

from common import errors


class StoreFull(errors.ResourceExhausted):
    """The store has no room left (disk full, quota reached); nothing was written."""

    code = "store_full"


class StoreUnavailable(errors.Unavailable):
    """The store cannot be reached or used right now (I/O error, endpoint down, bad access)."""

    code = "store_unavailable"


class BlobConflict(errors.AlreadyExists):
    """A blob of that name exists with other bytes: the store never overwrites."""

    code = "blob_conflict"


class DigestMismatch(errors.InvalidArgument):
    """The bytes received do not hash to the digest the sender stated; nothing was stored."""

    code = "digest_mismatch"


class BlobTooLarge(errors.InvalidArgument):
    """A blob is bigger than the store takes in one piece."""

    code = "blob_too_large"
