"""Reassembling a database snapshot into files: checks, resume after a cut, stale partials."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from cli import backup_fetch
from cli.backup_fetch import StreamMismatch, fetch, open_plan
from common.errors import Unavailable
from tests.support.cli import FakeBackupStore, backup_run
from tests.support.dbsnapshot import seal_backup
from tests.support.sealed import new_site

RAW = random.Random(7).randbytes(300_000)  # ~70 chunks of the backup profile


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeBackupStore:
    monkeypatch.setattr("cli.restore_fetch.BATCH_BYTES", 40_000)  # several batches
    # one call a batch: with four fetchers the calls a batch takes depend on how many
    # chunks the site's keyed cut points put in it, and the cuts below count calls
    monkeypatch.setattr("cli.restore_fetch.FETCHERS", 1)
    site = new_site("shop-a")
    snap, info = seal_backup(site, [("shop.fbk.zst", RAW)], run_id="run-1")
    run = backup_run(
        id="run-1",
        details={
            "file": "shop.fbk.zst",
            "checksum": f"sha256:{info.backup_sha256}",
            "raw_checksum": f"sha256:{hashlib.sha256(RAW).hexdigest()}",
        },
    )
    return FakeBackupStore(site, (snap, "run-1"), runs=[run])


def _fetch(store: FakeBackupStore, to: Path) -> backup_fetch.Fetched:
    plan = open_plan(store, "shop-a", store.sealed_site.fleet, to)
    return fetch(store, plan)


def test_a_cut_restore_resumes_from_the_last_batch_on_disk(
    store: FakeBackupStore, tmp_path: Path
) -> None:
    to = tmp_path / "shop.fbk"
    store.cut_after = 3  # the manifest, then two batches
    with pytest.raises(Unavailable):
        _fetch(store, to)
    state = json.loads((tmp_path / "shop.fbk.partial.json").read_text())
    assert state["bytes"] > 0 and not to.exists()
    with (tmp_path / "shop.fbk.partial").open("ab") as handle:
        handle.write(b"half a batch that was never recorded")
    store.cut_after = None
    asked_before = sum(len(f) for f in store.fetches)
    done = _fetch(store, to)
    assert to.read_bytes() == RAW
    assert done.bytes_resumed == state["bytes"]
    assert done.bytes_written == len(RAW) - state["bytes"]
    assert done.checked_against_server
    assert not list(tmp_path.glob("*.partial*"))
    chunks_fetched_again = sum(len(f) for f in store.fetches) - asked_before
    assert chunks_fetched_again < len(store.chunks) - 1


def test_a_partial_of_another_snapshot_is_started_afresh(
    store: FakeBackupStore, tmp_path: Path
) -> None:
    (tmp_path / "shop.fbk.partial").write_bytes(RAW[:1000])
    (tmp_path / "shop.fbk.partial.json").write_text(
        json.dumps({"snapshot": "0" * 64, "stream": 0, "chunks": 1, "bytes": 1000})
    )
    done = _fetch(store, tmp_path / "shop.fbk")
    assert done.bytes_resumed == 0
    assert (tmp_path / "shop.fbk").read_bytes() == RAW


def test_a_damaged_partial_fails_the_checksum_and_is_removed(
    store: FakeBackupStore, tmp_path: Path
) -> None:
    to = tmp_path / "shop.fbk"
    store.cut_after = 3
    with pytest.raises(Unavailable):
        _fetch(store, to)
    partial = tmp_path / "shop.fbk.partial"
    data = bytearray(partial.read_bytes())
    data[10] ^= 1
    partial.write_bytes(bytes(data))
    store.cut_after = None
    with pytest.raises(StreamMismatch) as err:
        _fetch(store, to)
    assert "where the snapshot recorded" in err.value.message
    assert not partial.exists() and not to.exists()
    assert _fetch(store, to).bytes_resumed == 0
    assert to.read_bytes() == RAW


def test_a_backup_run_whose_file_checksum_differs_is_refused(
    store: FakeBackupStore, tmp_path: Path
) -> None:
    store.runs = [backup_run(id="run-1", details={"checksum": "sha256:" + "1" * 64})]
    with pytest.raises(StreamMismatch) as err:
        _fetch(store, tmp_path / "shop.fbk")
    assert err.value.message.startswith("the server recorded backup run run-1 with checksum")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_run_is_named(store: FakeBackupStore, tmp_path: Path) -> None:
    with pytest.raises(backup_fetch.NotFound) as err:
        open_plan(store, "shop-a", store.sealed_site.fleet, tmp_path / "x", run_id="run-9")
    assert err.value.message == (
        "site shop-a has no database snapshot of backup run run-9 in the off-site store"
    )


def test_a_chain_cut_in_its_second_level_resumes_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cli.restore_fetch.BATCH_BYTES", 40_000)
    site = new_site("shop-a")
    levels = [("l0.nbk.zst", RAW[:150_000]), ("l1.nbk.zst", RAW[150_000:])]
    snap, _ = seal_backup(site, levels, run_id="run-2", method="nbackup")
    store = FakeBackupStore(site, (snap, "run-2"))
    plan = open_plan(store, "shop-a", site.fleet, tmp_path / "chain")
    second = plan.files[1].refs
    store.cut_at = {second[len(second) // 2][0]}
    with pytest.raises(Unavailable):
        fetch(store, plan)
    assert sorted(p.name for p in (tmp_path / "chain").iterdir()) == [
        "l0.nbk.partial",
        "l0.nbk.partial.json",
        "l1.nbk.partial",
        "l1.nbk.partial.json",
    ]
    store.cut_at = set()
    again = open_plan(store, "shop-a", site.fleet, tmp_path / "chain")
    backup_fetch.check_targets(again, tmp_path / "chain", force=False)  # nothing final yet
    done = fetch(store, again)
    assert done.bytes_resumed >= 150_000
    assert [(tmp_path / "chain" / n).read_bytes() for n in ("l0.nbk", "l1.nbk")] == [
        RAW[:150_000],
        RAW[150_000:],
    ]
    assert sorted(p.name for p in (tmp_path / "chain").iterdir()) == ["l0.nbk", "l1.nbk"]
