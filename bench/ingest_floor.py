"""A bare grpc.aio AgentService for bench/image_sync.py's ingest phase: the floor under the server.

    .venv/bin/python bench/ingest_floor.py --mode transport --listen 127.0.0.1:PORT \\
        --tls-dir SERVER_DATA_DIR
    .venv/bin/python bench/ingest_floor.py --mode create --listen 127.0.0.1:PORT \\
        --tls-dir SERVER_DATA_DIR --store SERVER_DATA_DIR/store --prefix bench-floor-create

Serves only the two upload calls the agent's uploader makes (MissingChunks, PutChunks),
over TLS with the real server's certificate (server.key and server.pem of its data dir,
as server/app.py loads them) and the real server's gRPC options, so the agents connect
to it exactly as to `storesafe-server`. No credential check, no chunk index, no SQL:

  transport    receives and decodes each PutChunkRequest (the message, then its `data`
               field into a bytes object, as the real server's convert does) and
               answers with the counts: what TLS, HTTP/2, protobuf and grpc.aio cost.
  create       also does what any store must with the bytes: the digest of each blob
               checked against the one sent (BLAKE3, as agents state it and the server
               checks it), then `Backend.create` into the filesystem
               backend at --store (temp file, fsync, link, directory fsync: the
               reference's write), on a pool of the BlobStore's size; the stream is
               answered once every blob of it is durable.
  create_many  the same, but a stream's blobs written by one `Backend.create_many`
               (temp files, one syncfs, links, one syncfs: the write the real server's
               BlobStore makes of a batch) once each blob's BLAKE3 is checked.

MissingChunks answers that every id asked about is missing (an ingest round sends new
chunks only). Blob names are laid out as the server's: `<prefix>/<caller>/chunks/<2
hex>/<id>`, a folder per caller (a digest of its credential: each agent of each round
has its own) and id prefix. The process tunes glibc's allocator and freezes its start-up
objects out of the garbage collector as `storesafe-server serve` does (server/memory.py),
so neither side pays page faults or collections the other does not.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import signal
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import blake3
import grpc
from storesafe.v1 import agent_pb2, agent_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.app import GRPC_OPTIONS  # noqa: E402 - after the path is set
from server.memory import freeze_startup_objects, keep_large_buffers  # noqa: E402
from server.storage.filesystem import FilesystemBackend  # noqa: E402
from server.storage.store import DEFAULT_WORKERS  # noqa: E402

MODES = ("transport", "create", "create_many")


class FloorService(agent_pb2_grpc.AgentServiceServicer):
    """MissingChunks and PutChunks with nothing but the transport (and the store's write)."""

    def __init__(self, backend: FilesystemBackend | None, prefix: str, *, batch: bool) -> None:
        """`backend`: None for the transport floor; `batch`: one create_many a stream."""
        self._backend = backend
        self._batch = batch
        self._prefix = prefix
        self._pool = ThreadPoolExecutor(max_workers=DEFAULT_WORKERS, thread_name_prefix="floor")

    async def MissingChunks(
        self, request: agent_pb2.MissingChunksRequest, context: Any
    ) -> agent_pb2.MissingChunksResponse:
        return agent_pb2.MissingChunksResponse(missing=request.ids)

    async def PutChunks(
        self, request_iterator: AsyncIterator[agent_pb2.PutChunkRequest], context: Any
    ) -> agent_pb2.PutChunksResponse:
        # a folder per caller (each agent of each round has its own credential), as the
        # server keeps a folder per site
        auth = dict(context.invocation_metadata()).get("authorization", "")
        prefix = f"{self._prefix}/{hashlib.sha256(auth.encode()).hexdigest()[:16]}"
        loop = asyncio.get_running_loop()
        stored = size = 0
        work = self._check if self._batch else self._store
        writes = []
        blobs = []
        async for req in request_iterator:
            # one chunk in the message's own fields, or several in `chunks`, as the
            # agent sends them (the real server's convert takes both the same way)
            for piece in req.chunks or (req,):
                data = piece.data  # the bytes object the real server's convert makes too
                stored += 1
                size += len(data)
                if self._backend is not None:
                    name = f"{prefix}/chunks/{piece.id[:2]}/{piece.id}"
                    writes.append(loop.run_in_executor(self._pool, work, name, data, piece.blake3))
                    blobs.append((name, data))
        if writes:
            await asyncio.gather(*writes)
        if self._batch and blobs:
            await loop.run_in_executor(self._pool, self._store_many, blobs)
        return agent_pb2.PutChunksResponse(stored=stored, duplicates=0, bytes_stored=size)

    def _check(self, name: str, data: bytes, digest: bytes) -> None:
        if blake3.blake3(data).digest() != digest:
            raise ValueError(f"{name} does not hash to its blake3")

    def _store(self, name: str, data: bytes, digest: bytes) -> None:
        assert self._backend is not None
        self._check(name, data, digest)
        if not self._backend.create(name, data):
            raise ValueError(f"{name} existed already")

    def _store_many(self, blobs: list[tuple[str, bytes]]) -> None:
        assert self._backend is not None
        if not all(self._backend.create_many(blobs)):
            raise ValueError("a blob of the stream existed already")


async def serve(args: argparse.Namespace) -> None:
    backend = None
    if args.mode != "transport":
        backend = FilesystemBackend(args.store)
        backend.check()
    server = grpc.aio.server(options=GRPC_OPTIONS)  # the real server's
    agent_pb2_grpc.add_AgentServiceServicer_to_server(
        FloorService(backend, args.prefix, batch=args.mode == "create_many"), server
    )
    tls = Path(args.tls_dir)
    creds = grpc.ssl_server_credentials(
        [((tls / "server.key").read_bytes(), (tls / "server.pem").read_bytes())]
    )
    if server.add_secure_port(args.listen, creds) == 0:
        raise SystemExit(f"cannot listen on {args.listen}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--listen", required=True, help="HOST:PORT")
    ap.add_argument("--tls-dir", required=True, help="a server data dir: server.key, server.pem")
    ap.add_argument("--store", type=Path, help="create, create_many: the filesystem backend's root")
    ap.add_argument(
        "--prefix", default="bench-floor", help="create, create_many: where blobs go in it"
    )
    args = ap.parse_args()
    if args.mode != "transport" and args.store is None:
        ap.error(f"--mode {args.mode} needs --store")
    keep_large_buffers()
    freeze_startup_objects()
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
