"""The server's blob store: an async, create-only store of named blobs over a filesystem or S3.

`open_store(url, data_dir)` picks the backend; `BlobStore` is what the rest of the
server calls. Which site references which blob lives in the server's state, not here.
"""

from server.storage.backend import Backend, BlobInfo, StoreUsage
from server.storage.digest import Digest
from server.storage.errors import BlobConflict, DigestMismatch, StoreFull, StoreUnavailable
from server.storage.factory import open_store
from server.storage.store import BlobStore, Saved

__all__ = [
    "Backend",
    "BlobConflict",
    "BlobInfo",
    "BlobStore",
    "Digest",
    "DigestMismatch",
    "Saved",
    "StoreFull",
    "StoreUnavailable",
    "StoreUsage",
    "open_store",
]
