"""The sealed off-site format shared by the agent (seals) and the admin CLI (opens).

Format, in layers (each module's docstring has the byte layout):
- The MSP's fleet recovery key pair is X25519 (`keys`); its private key lives
  only in the key file (`keyfile`); its public key travels as `ssrk1:...`.
- Each site has a 32-byte random data key made on the agent, sealed to the
  fleet public key as `ssdk1:...` (`datakey`: ephemeral X25519, HKDF-SHA256
  naming the site, ChaCha20-Poly1305). HKDF gives it sub-keys (`sitekeys`):
  chunk ids, content, manifests, the chunker seed, and a public 8-byte key id.
- Files and backup streams are cut by FastCDC (`chunking`), each chunk
  named by keyed BLAKE3 of its plaintext (64 hex), compressed with zstd where
  it pays (`compress`), and sealed (`chunks`, `envelope`: versioned header,
  ChaCha20-Poly1305, the header and the id as associated data).
- A snapshot is a manifest of JSON-line entries (`manifest`, `paths`) cut
  into chunks sealed like content, plus a record sealed with the manifest
  key under its keyed id (`snapshot`). The server gets the ids of all chunks
  a snapshot needs in clear (they are keyed) for its index and retention.

Threat model: the server, its operator, its object store and the network
see only sealed blobs, keyed ids, sizes, counts and times; they cannot read
content or file names, tell which chunks make up a file, or tell that two
sites hold the same file. Whoever holds the fleet key file can read every site's data; a lost
key file loses it all. A blob altered, truncated, swapped for another id,
sealed for another site or under another key is refused, named, by a typed
error, never returned. Not hidden: chunk sizes after compression (so a file
smaller than one chunk shows its rough size; the keyed chunker seed keeps
larger files' cut points from matching a known file's), how many chunks
change per day, and when. The shop PC holds its site's data key in
clear (it holds the data too); ransomware there can add, never rewrite
what the server keeps (the store is append-only for agents). The server can
withhold or delete data, or offer an older snapshot as the newest; it cannot
change a snapshot's sealed time or contents.
"""

from common.vault.chunking import BACKUPS, IMAGES, MANIFESTS, Profile, chunk_stream
from common.vault.chunks import (
    PlainChunk,
    SealedChunk,
    cut_bytes,
    cut_stream,
    open_chunk,
    seal_chunk,
    seal_stream,
)
from common.vault.datakey import SealedDataKey, open_data_key, seal_data_key
from common.vault.errors import (
    BadChunkId,
    BadKeyText,
    BadManifest,
    BadPath,
    SiteMismatch,
    Tampered,
    Truncated,
    UnsupportedFormat,
    VaultError,
    WrongKey,
)
from common.vault.keyfile import read_key_file, write_key_file
from common.vault.keys import FleetPrivateKey, FleetPublicKey
from common.vault.manifest import ChunkRef, Entry, SnapshotInfo, sorted_entries
from common.vault.sitekeys import SiteKeys, new_data_key
from common.vault.snapshot import (
    SealedRecord,
    SealedSnapshot,
    Snapshot,
    open_snapshot,
    seal_snapshot,
    seal_streamed,
)

__all__ = [
    "BACKUPS",
    "IMAGES",
    "MANIFESTS",
    "BadChunkId",
    "BadKeyText",
    "BadManifest",
    "BadPath",
    "ChunkRef",
    "Entry",
    "FleetPrivateKey",
    "FleetPublicKey",
    "PlainChunk",
    "Profile",
    "SealedChunk",
    "SealedDataKey",
    "SealedRecord",
    "SealedSnapshot",
    "SiteKeys",
    "SiteMismatch",
    "Snapshot",
    "SnapshotInfo",
    "Tampered",
    "Truncated",
    "UnsupportedFormat",
    "VaultError",
    "WrongKey",
    "chunk_stream",
    "cut_bytes",
    "cut_stream",
    "new_data_key",
    "open_chunk",
    "open_data_key",
    "open_snapshot",
    "read_key_file",
    "seal_chunk",
    "seal_data_key",
    "seal_snapshot",
    "seal_stream",
    "seal_streamed",
    "sorted_entries",
    "write_key_file",
]
