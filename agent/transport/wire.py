"""PutChunks messages encoded by hand: the chunk bytes copied once, into the message.

Building a `PutChunkRequest` of `ChunkPiece`s and serializing it copies every chunk
twice (into the message, then into the serialized bytes) and cost the agent 0.5-0.6 ms
of CPU per MiB sent, against 0.08 ms for joining the same wire bytes here (a first image
sync of 5.6 GB sends 5.6 GB). The bytes are exactly what the generated class would
serialize (field numbers read from its descriptor; tests/unit/agent/test_wire.py checks
them against the generated serialization), and the call sends them as they are
(`ServerLink.raw_stream_unary`). Only this message is encoded by hand: it is the one
that carries the data.
"""

from __future__ import annotations

from collections.abc import Sequence

from storesafe.v1 import agent_pb2

from agent.domain.offsite import ChunkUpload

_LEN = 2  # wire type of length-delimited fields (bytes, strings, messages)


def _tag(message: type[agent_pb2.ChunkPiece | agent_pb2.PutChunkRequest], field: str) -> bytes:
    number = message.DESCRIPTOR.fields_by_name[field].number
    return _varint(number << 3 | _LEN)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_CHUNKS = _tag(agent_pb2.PutChunkRequest, "chunks")
_ID = _tag(agent_pb2.ChunkPiece, "id")
_DATA = _tag(agent_pb2.ChunkPiece, "data")
_BLAKE3 = _tag(agent_pb2.ChunkPiece, "blake3")


def put_chunks_message(chunks: Sequence[ChunkUpload]) -> bytes:
    """The serialized `PutChunkRequest` carrying `chunks` in its repeated `chunks` field."""
    parts: list[bytes] = []
    for chunk in chunks:
        chunk_id = chunk.chunk_id.encode("ascii")
        piece = [
            _ID,
            _varint(len(chunk_id)),
            chunk_id,
            _DATA,
            _varint(len(chunk.data)),
            chunk.data,
            _BLAKE3,
            _varint(len(chunk.blake3)),
            chunk.blake3,
        ]
        parts += [_CHUNKS, _varint(sum(len(p) for p in piece)), *piece]
    return b"".join(parts)
