"""The upload of backup files into an in-memory store: an nbackup chain as two streams, read
back byte for byte; a damaged file is refused and nothing is committed."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from agent.domain.offsite import SnapshotCommit
from agent.firebird import upload as upload_module
from agent.firebird.files import Manifest, Status
from agent.firebird.stream import compress_following
from agent.firebird.upload import Choice, UploadSettings, upload_backup
from agent.offsite import refspool
from agent.offsite.refspool import DistinctIds
from common.firebird.errors import BackupCorrupt
from common.vault import (
    SiteKeys,
    new_data_key,
    open_chunk,
    open_snapshot,
)
from common.vault.backupset import BackupInfo, stream_refs
from common.vault.snapshot import open_record
from common.window import UploadWindow
from tests.support.clock import FakeClock
from tests.support.offsitestore import MemoryStore

T0 = dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.UTC)


def level_file(folder: Path, name: str, data: bytes, level: int, chain: list[str]) -> Manifest:
    raw = folder / f"{name}.raw"
    raw.write_bytes(data)
    got = compress_following(raw, folder / f"{name}.nbk.zst", finished=lambda: True)
    raw.unlink()
    return Manifest(
        name=name,
        file=f"{name}.nbk.zst",
        database="/db/shop.fdb",
        method="nbackup",
        level=level,
        started_at=T0.isoformat(),
        finished_at=T0.isoformat(),
        size_raw=got.size_raw,
        size_compressed=got.size_compressed,
        sha256=got.sha256,
        raw_sha256=got.raw_sha256,
        run_id=f"run-{name}",
        chain=chain,
        status=Status.GOOD,
    )


def upload(folder: Path, choice: Choice, keys: SiteKeys, store: MemoryStore) -> object:
    return upload_backup(
        choice,
        folder,
        UploadSettings(UploadWindow.parse("")),
        keys,
        store,
        spool_dir=folder / "spool",
        clock=FakeClock(T0),
        sleep=time.sleep,
    )


def test_an_nbackup_chain_is_two_streams_that_read_back_byte_for_byte(tmp_path: Path) -> None:
    base_data = os.urandom(200_000) + b"page " * 60_000
    level1_data = os.urandom(50_000) + b"delta " * 10_000
    base = level_file(tmp_path, "l0", base_data, 0, [])
    level1 = level_file(tmp_path, "l1", level1_data, 1, ["l0.nbk.zst"])
    keys, store = SiteKeys.derive("shop-1", new_data_key()), MemoryStore()
    got = upload(tmp_path, Choice(level1, (base,)), keys, store)
    assert got.complete and got.bytes == len(base_data) + len(level1_data)  # type: ignore[attr-defined]
    [(snapshot_id, commit)] = store.snapshots.items()
    assert commit.backup_run_id == "run-l1"
    snap = open_snapshot(keys, snapshot_id, commit.record, store.fetch)
    info = BackupInfo.from_snapshot_info(snap.info)
    assert [(s.file, s.level) for s in info.streams] == [("l0.nbk.zst", 0), ("l1.nbk.zst", 1)]
    streams = [
        b"".join(open_chunk(keys, cid, store.fetch(cid)) for cid, _ in refs)
        for refs in stream_refs(info, snap.entries)
    ]
    assert streams == [base_data, level1_data]
    assert not list((tmp_path / "spool").iterdir())  # the ref spools are gone


def test_a_damaged_backup_file_is_refused_and_nothing_is_committed(tmp_path: Path) -> None:
    m = level_file(tmp_path, "l0", os.urandom(100_000) + b"x" * 300_000, 0, [])
    path = tmp_path / m.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    store = MemoryStore()
    with pytest.raises(BackupCorrupt, match="is damaged"):
        upload(tmp_path, Choice(m), SiteKeys.derive("shop-1", new_data_key()), store)
    assert store.snapshots == {}


def test_the_commit_streams_its_references_from_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The distinct chunk ids are sorted out of the spool in runs (RUN_IDS) and handed to the
    commit as a file-backed collection, never as one list of every ref; the manifest pieces
    go out in batches as they are cut. What the store receives is what the manifest needs."""
    monkeypatch.setattr(refspool, "RUN_IDS", 10)
    monkeypatch.setattr(upload_module, "MAX_MISSING_IDS", 3)  # a piece batch: 3 pieces
    data = os.urandom(600_000) + b"same page " * 50_000  # repeated chunks among new ones
    backup = level_file(tmp_path, "l0", data, 0, [])
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "ids.bin.run000099").write_bytes(b"left by a crashed run")
    keys, store = SiteKeys.derive("shop-1", new_data_key()), MemoryStore()
    handed: list[object] = []
    real_commit = store.commit

    def commit(snapshot: SnapshotCommit) -> bool:
        handed.append(snapshot.references)
        return real_commit(snapshot)

    monkeypatch.setattr(store, "commit", commit)
    got = upload(tmp_path, Choice(backup), keys, store)
    assert got.complete  # type: ignore[attr-defined]
    [refs] = handed
    assert isinstance(refs, DistinctIds) and not isinstance(refs, list)
    [(snapshot_id, committed)] = store.snapshots.items()
    snap = open_snapshot(keys, snapshot_id, committed.record, store.fetch)
    _, _, _, parts = open_record(keys, snapshot_id, committed.record)
    needed = {cid for e in snap.entries for cid, _ in e.chunks} | set(parts)
    assert list(committed.references) == sorted(needed)
    assert len(needed) > 10  # more than one run
    assert not list((tmp_path / "spool").iterdir())  # spools, ids and runs are gone
