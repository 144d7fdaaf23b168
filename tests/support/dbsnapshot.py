"""Database snapshots of real backup files, sealed with common.vault + backupset as the agent does.

For the restore tests: a gbak stream (or an nbackup chain) is cut with the
BACKUPS profile, sealed, laid out as `stream-NN/part-PPPPPP` entries and the
snapshot sealed; `upload_database` sends it to a real server with the agent
RPCs (kind database, its backup run id) and `report_backup` records the backup
run it copies, with the raw checksum taken at backup time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import uuid
from collections.abc import Sequence

import grpc
from storesafe.v1 import agent_pb2, agent_pb2_grpc, types_pb2

from common.vault.backupset import BackupInfo, StreamInfo, stream_entries
from common.vault.chunking import BACKUPS
from common.vault.chunks import SealedChunk, seal_stream
from common.vault.snapshot import seal_snapshot
from tests.support.sealed import TAKEN, Sealed, SealedSite, upload
from tests.support.server import ServerHandle
from tests.support.web import ts


def seal_backup(
    site: SealedSite,
    streams: Sequence[tuple[str, bytes]],
    *,
    run_id: str,
    method: str = "gbak",
    created: dt.datetime = TAKEN,
) -> tuple[Sealed, BackupInfo]:
    """A database snapshot of `streams` ((file name in backup.dir, raw bytes), level 0 first)."""
    content: dict[str, SealedChunk] = {}
    entries = []
    infos = []
    for index, (file, data) in enumerate(streams):
        refs = []
        for chunk in seal_stream(site.keys, io.BytesIO(data), BACKUPS):
            content.setdefault(chunk.chunk_id, chunk)
            refs.append((chunk.chunk_id, chunk.length))
        entries.extend(stream_entries(index, refs))
        infos.append(
            StreamInfo(index, file, len(data), hashlib.sha256(data).hexdigest(), level=index)
        )
    compressed = b"".join(d for _, d in streams)  # stands for the .zst file: only its sha matters
    info = BackupInfo(
        run_id=run_id,
        method=method,
        database="/srv/shop/SHOP.FDB",
        backup_sha256=hashlib.sha256(compressed).hexdigest(),
        backup_size=len(compressed) // 3,
        streams=tuple(infos),
    ).check()
    snap = seal_snapshot(site.keys, info.snapshot_info(site.site, created), entries)
    parts = {p.chunk_id: p for p in snap.parts if p.chunk_id not in content}
    sealed = Sealed(
        snap.snapshot_id,
        snap.record,
        created,
        snap.entries,
        snap.size,
        site.data_key_id,
        (*content.values(), *parts.values()),
        len(content),
    )
    return sealed, info


def upload_database(
    server: ServerHandle, credential: str, site: SealedSite, snap: Sealed, info: BackupInfo
) -> None:
    """Upload `snap` as the database snapshot of backup run `info.run_id`."""
    upload(server, credential, site, snap, backup_run_id=info.run_id)


def report_backup(
    server: ServerHandle,
    credential: str,
    info: BackupInfo,
    *,
    raw_sha256: str | None = None,
    finished: dt.datetime | None = None,
) -> None:
    """Report the verified backup run `info.run_id` whose file the snapshot copies, with the
    raw checksum of its top stream (or `raw_sha256`; "" for none)."""
    finished = finished or dt.datetime.now(dt.UTC).replace(microsecond=0)
    top = info.streams[-1]
    raw = top.sha256 if raw_sha256 is None else raw_sha256
    report = types_pb2.RunReport(
        id=info.run_id,
        kind=types_pb2.RUN_KIND_BACKUP,
        started_at=ts(finished - dt.timedelta(seconds=30)),
        finished_at=ts(finished),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        trigger="schedule",
        backup=types_pb2.BackupDetails(
            method=info.method,
            level=top.level,
            file=top.file,
            size_raw=top.size,
            size_compressed=info.backup_size,
            checksum=f"sha256:{info.backup_sha256}",
            raw_checksum=f"sha256:{raw}" if raw else "",
            verification=types_pb2.VERIFICATION_PASSED,
        ),
    )
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    with grpc.secure_channel(server.address, creds) as channel:
        agent_pb2_grpc.AgentServiceStub(channel).ReportRun(
            agent_pb2.ReportRunRequest(report=report),
            metadata=(("authorization", f"Bearer {credential}"),),
            timeout=30,
        )


def new_run_id() -> str:
    return str(uuid.uuid4())
