"""The floor of a restore: the work no restore of a sealed backup may skip, and nothing else.

For every chunk of one backup, in the backup's order, as the server's store holds it
(one file per chunk, `sites/S/chunks/ID[:2]/ID`): read the file; check its header
(kind, format version, data key id, length); decrypt and authenticate it
(ChaCha20-Poly1305, the header and the chunk id as associated data); decompress it
(zstd, when the header says so); recompute its keyed id (keyed BLAKE3) and compare it
with the id asked for, and its length with the manifest's. Then the reassembled stream:
its sha256 against the one recorded at backup time, its bytes written to a new file,
fsynced. A chunk used twice is opened once (a restore keeps it in its cache).

What it leaves out, as a restore cannot (issue 14: every byte checked, against the
backup-time checksum, durable on disk): nothing. What it leaves out that a restore does
on top: the network (gRPC, TLS), the server's index and its process, the manifest and
the data key (opened once, microseconds), the partial file's state for resuming (one
small file and one fsync per 8 MiB batch), the progress bar, process start-up. No
Python per chunk beyond the library calls and one header unpack.

`threads` > 1: a pool opens groups of chunks (`GROUP` a task, so the pool's own
overhead is per group, not per chunk; cryptography, zstandard, blake3 and hashlib let
go of the GIL) while the main thread hashes and writes each group in order, at most
`AHEAD` groups ahead (bounded memory, as a restore's batches).

`vault=True` opens each chunk with the product's `common.vault.chunks.open_chunk`
instead (the same checks, and the vault's Python around them): the difference is what
that Python costs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from common.vault.chunks import open_chunk
from common.vault.sitekeys import SiteKeys

GROUP = 64  # chunks a pool task opens (~1 MiB at 16 KiB)
AHEAD = 16  # groups in flight beyond the one being written
WRITE_BYTES = 8 << 20  # plaintext joined into one write and one hash update

_HEADER = struct.Struct(">3sBB8sI12s")  # common/vault/envelope.py's layout
_TAG = 16
_ZSTD = 0x01


@dataclass(frozen=True)
class FloorResult:
    """One run: wall and CPU seconds (the whole process, every thread), bytes out."""

    wall_s: float
    cpu_s: float
    size: int


class Opener:
    """Opens sealed chunks with the library calls only; one per thread (zstd contexts are
    not shared between threads)."""

    def __init__(self, keys: SiteKeys) -> None:
        self.keys = keys
        self.aead = ChaCha20Poly1305(keys.content_key)
        self.zstd = zstandard.ZstdDecompressor()

    def open(self, chunk_id: str, length: int, blob: bytes) -> bytes:
        raw_id = bytes.fromhex(chunk_id)
        magic, version, flags, key_id, size, nonce = _HEADER.unpack_from(blob)
        if (
            magic != b"SSc"
            or version != 1
            or flags & ~_ZSTD
            or key_id != self.keys.key_id
            or len(blob) != _HEADER.size + size + _TAG
        ):
            raise SystemExit(f"chunk {chunk_id}: bad header")
        view = memoryview(blob)
        body = self.aead.decrypt(
            nonce, view[_HEADER.size :], view[: _HEADER.size].tobytes() + raw_id
        )
        if flags & _ZSTD:  # the frame's size checked before it is inflated, as the vault does
            if zstandard.frame_content_size(body) != length:
                raise SystemExit(f"chunk {chunk_id}: a frame of the wrong size")
            plain = self.zstd.decompress(body, max_output_size=length)
        else:
            plain = body
        got = blake3.blake3(plain, key=self.keys.chunk_id_key).digest()
        if len(plain) != length or not hmac.compare_digest(got, raw_id):
            raise SystemExit(f"chunk {chunk_id}: wrong id or length")
        return plain


def read_blob(path: str) -> bytes:
    """A store file's bytes in three system calls (the server's `read_many` does the same)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def run(
    keys: SiteKeys,
    chunk_dir: Path,
    refs: Sequence[tuple[str, int]],
    sha256: str,
    out: Path,
    *,
    threads: int = 1,
    vault: bool = False,
) -> FloorResult:
    """Restore the stream `refs` from the store's files in `chunk_dir` into `out`, checked."""
    local = threading.local()

    def opener() -> Opener:
        mine: Opener | None = getattr(local, "opener", None)
        if mine is None:
            mine = local.opener = Opener(keys)
        return mine

    def open_group(group: Sequence[tuple[str, int, str]]) -> list[bytes]:
        if vault:
            return [open_chunk(keys, c, read_blob(p)) if p else b"" for c, _, p in group]
        one = opener()
        return [one.open(c, n, read_blob(p)) if p else b"" for c, n, p in group]

    # the first use of an id names its file; a later use ("") takes the plaintext kept
    first: dict[str, int] = {}
    for at, (cid, _) in enumerate(refs):
        first.setdefault(cid, at)
    todo = [
        (cid, n, str(chunk_dir / cid[:2] / cid) if first[cid] == at else "")
        for at, (cid, n) in enumerate(refs)
    ]
    groups = [todo[at : at + GROUP] for at in range(0, len(todo), GROUP)]
    repeated = {cid for at, (cid, _) in enumerate(refs) if first[cid] != at}
    kept: dict[str, bytes] = {}

    out.unlink(missing_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    digest = hashlib.sha256()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    size = 0
    try:
        pending: list[bytes] = []
        pending_bytes = 0
        for group, plains in zip(groups, _opened(groups, open_group, threads), strict=True):
            for (cid, _, path), opened in zip(group, plains, strict=True):
                plain = opened if path else kept[cid]
                if path and cid in repeated:
                    kept[cid] = plain
                pending.append(plain)
                pending_bytes += len(plain)
            if pending_bytes >= WRITE_BYTES:
                size += _write(fd, digest, pending)
                pending, pending_bytes = [], 0
        size += _write(fd, digest, pending)
        os.fsync(fd)
    finally:
        os.close(fd)
    if digest.hexdigest() != sha256:
        raise SystemExit(f"the floor's stream has sha256 {digest.hexdigest()}, not {sha256}")
    return FloorResult(time.perf_counter() - t0, time.process_time() - c0, size)


def _opened(
    groups: list[list[tuple[str, int, str]]],
    open_group: Callable[[Sequence[tuple[str, int, str]]], list[bytes]],
    threads: int,
) -> Iterator[list[bytes]]:
    """Each group's plaintexts, in order: opened here, or by a pool `AHEAD` groups ahead."""
    if threads <= 1:
        yield from map(open_group, groups)
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="floor") as pool:
        window: list[Future[list[bytes]]] = []
        at = 0
        while at < len(groups) or window:
            while at < len(groups) and len(window) <= AHEAD:
                window.append(pool.submit(open_group, groups[at]))
                at += 1
            yield window.pop(0).result()


def _write(fd: int, digest: hashlib._Hash, plains: list[bytes]) -> int:
    block = b"".join(plains)
    digest.update(block)
    view = memoryview(block)
    while view:
        view = view[os.write(fd, view) :]
    return len(block)
