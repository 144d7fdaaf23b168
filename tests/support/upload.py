"""Upload a sealed snapshot to a real server with the agent RPCs, as an agent would."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from storesafe.v1 import agent_pb2, agent_pb2_grpc

from tests.support.sealed import Sealed, SealedSite
from tests.support.server import ServerHandle


def _timestamp(when: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def upload(
    server: ServerHandle,
    credential: str,
    site: SealedSite,
    snap: Sealed,
    *,
    kind: agent_pb2.SnapshotKind.ValueType = agent_pb2.SNAPSHOT_KIND_IMAGES,
    backup_run_id: str = "",
) -> None:
    """PutSiteKey, MissingChunks, PutChunks of the missing ones, CommitSnapshot."""
    metadata = (("authorization", f"Bearer {credential}"),)
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    with grpc.secure_channel(server.address, creds) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        stub.PutSiteKey(
            agent_pb2.PutSiteKeyRequest(
                sealed_key=site.sealed_key,
                data_key_id=site.data_key_id,
                recovery_key_fingerprint=site.fleet.fingerprint,
            ),
            metadata=metadata,
            timeout=30,
        )
        ids = snap.references
        missing: list[str] = []
        for at in range(0, len(ids), 1000):
            answer = stub.MissingChunks(
                agent_pb2.MissingChunksRequest(ids=ids[at : at + 1000]),
                metadata=metadata,
                timeout=30,
            )
            missing.extend(answer.missing)

        def chunks() -> Iterator[agent_pb2.PutChunkRequest]:
            for chunk_id in missing:
                data = snap.chunks[chunk_id]
                yield agent_pb2.PutChunkRequest(
                    id=chunk_id, data=data, sha256=hashlib.sha256(data).digest()
                )

        stub.PutChunks(chunks(), metadata=metadata, timeout=60)

        def commit() -> Iterator[agent_pb2.CommitSnapshotRequest]:
            header = agent_pb2.SnapshotHeader(
                snapshot_id=snap.snapshot_id,
                record=snap.record,
                record_sha256=hashlib.sha256(snap.record).digest(),
                kind=kind,
                backup_run_id=backup_run_id,
                data_key_id=site.data_key_id,
                created_at=_timestamp(snap.created),
                entries=snap.entries,
                size=snap.size,
                reference_count=len(ids),
            )
            yield agent_pb2.CommitSnapshotRequest(header=header)
            for at in range(0, len(ids), 10_000):
                yield agent_pb2.CommitSnapshotRequest(references=ids[at : at + 10_000])

        stub.CommitSnapshot(commit(), metadata=metadata, timeout=60)
