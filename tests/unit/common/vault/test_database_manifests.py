"""How database snapshot manifests are cut: small pieces, a bounded record, opened like any."""

from __future__ import annotations

import datetime as dt

from common.vault import SiteKeys, new_data_key, open_snapshot, seal_snapshot
from common.vault.backupset import BackupInfo, StreamInfo, stream_entries, stream_refs
from common.vault.chunking import (
    BACKUPS,
    KIB,
    MANIFEST_PARTS,
    MANIFEST_REF_BYTES,
    MANIFESTS,
    MIB,
    database_manifests,
)

WHEN = dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.UTC)


def test_pieces_are_small_and_grow_only_to_keep_the_record_bounded() -> None:
    assert database_manifests(200 * MIB).avg_size == 4 * KIB
    for size in (2 << 30, 8 << 30):
        got = database_manifests(size)
        refs = size // (BACKUPS.avg_size + BACKUPS.min_size)
        assert refs * MANIFEST_REF_BYTES <= got.avg_size * MANIFEST_PARTS * 1.1
        assert got.avg_size <= MANIFESTS.avg_size
    assert database_manifests(1 << 40).avg_size == MANIFESTS.avg_size


def test_a_database_snapshot_cut_in_small_pieces_opens_and_reads_back() -> None:
    keys = SiteKeys.derive("shop-1", new_data_key())
    refs = [(keys.chunk_id(n.to_bytes(4, "little")), 5000 + n % 7) for n in range(9000)]
    size = sum(n for _, n in refs)
    info = BackupInfo(
        run_id="0b6f8f8e-0c39-4c8e-9a57-5d0c7f3e2a11",
        method="gbak",
        database="/db/shop.fdb",
        backup_sha256="ab" * 32,
        backup_size=size // 3,
        streams=(StreamInfo(0, "shop.fbk.zst", size, "cd" * 32),),
    )
    profile = database_manifests(size)
    sealed = seal_snapshot(
        keys, info.snapshot_info("shop-1", WHEN), stream_entries(0, refs), profile=profile
    )
    big = seal_snapshot(keys, info.snapshot_info("shop-1", WHEN), stream_entries(0, refs))
    assert len(sealed.parts) > len(big.parts)  # smaller pieces than the default
    parts = {p.chunk_id: p.blob for p in sealed.parts}
    snap = open_snapshot(keys, sealed.snapshot_id, sealed.record, parts.__getitem__)
    assert stream_refs(BackupInfo.from_snapshot_info(snap.info), snap.entries) == [refs]
