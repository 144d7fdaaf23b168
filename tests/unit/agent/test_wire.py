"""PutChunks messages encoded by hand are the bytes the generated class would send."""

from __future__ import annotations

import hashlib
import os

import blake3
import pytest
from storesafe.v1 import agent_pb2

from agent.domain.offsite import ChunkUpload
from agent.transport.wire import put_chunks_message


def upload(size: int) -> ChunkUpload:
    data = os.urandom(size)
    return ChunkUpload(hashlib.sha256(b"id" + data).hexdigest(), data, blake3.blake3(data).digest())


def generated(chunks: list[ChunkUpload]) -> bytes:
    return agent_pb2.PutChunkRequest(
        chunks=[agent_pb2.ChunkPiece(id=c.chunk_id, data=c.data, blake3=c.blake3) for c in chunks]
    ).SerializeToString()


@pytest.mark.parametrize(
    "sizes",
    [
        [1],
        [127],
        [128],
        [16_383, 16_384],
        [300_000, 20_000, 1],
        [2_097_152],
        [4 * 1024 * 1024 + 45],
    ],
    ids=lambda sizes: "+".join(map(str, sizes)),
)
def test_the_hand_encoding_is_the_generated_serialization(sizes: list[int]) -> None:
    chunks = [upload(n) for n in sizes]
    wire = put_chunks_message(chunks)
    assert wire == generated(chunks)  # varint lengths of 1 to 4 bytes, one to three pieces
    parsed = agent_pb2.PutChunkRequest.FromString(wire)
    assert [(p.id, p.data, p.blake3) for p in parsed.chunks] == [
        (c.chunk_id, c.data, c.blake3) for c in chunks
    ]
    assert not parsed.id and not parsed.data and not parsed.blake3 and not parsed.site
