"""The off-site upload of verified backups: real gbak backups of a tiny shop database, a real
server on loopback with its real filesystem store, the agent's real transport. The upload
runs in-process (agent.firebird.offsite.BackupUploads) so the tests can cut the connection,
close the window or fill the store at a chosen batch; the snapshot is read back through the
admin RPCs and reassembled with the site's keys."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from storesafe.v1 import admin_pb2, agent_pb2

from agent.capability import Setup
from agent.configsync import ConfigStore
from agent.datakey import DataKeyFile
from agent.domain.offsite import StoreLink
from agent.domain.reports import Outcome, RunReport, UploadDetails
from agent.firebird.decompress import decompress_checked
from agent.firebird.files import Manifest, list_backups, mark_bad
from agent.firebird.jobs import BackupSettings, run_backup_job
from agent.firebird.offsite import BackupUploads
from agent.firebird.retention import RetentionPolicy
from agent.settings import StateDir
from agent.transport.link import ServerLink
from agent.transport.store import StoreCalls
from common.clock import Clock, SystemClock
from common.firebird.connection import FirebirdTarget
from common.vault import FleetPrivateKey, SiteKeys, open_chunk, open_snapshot
from common.vault.backupset import BackupInfo, stream_refs
from tests.integration.firebird.conftest import new_target
from tests.support.agent import enroll_agent
from tests.support.clock import FakeClock
from tests.support.offsitestore import CutBeforePut
from tests.support.server import ServerHandle, start_server, stored_chunks
from tests.support.shopsim import ShopWriter

pytestmark = pytest.mark.firebird
FLEET = FleetPrivateKey.generate()
SMALL_BATCH = 64 << 10  # many batches from a tiny backup


@dataclasses.dataclass(frozen=True)
class Backups:
    """Two verified gbak backups of one tiny shop (day 1, then day 2 after some writes)."""

    folder: Path
    day1: Manifest
    day2: Manifest
    reports: tuple[RunReport, ...]


@pytest.fixture(scope="module")
def backups(fb_root: Path, fb_password: str) -> Backups:
    target: FirebirdTarget = new_target(
        fb_root, fb_password, f"up-{uuid.uuid4().hex[:6]}", accounts=200, filler_mb=1
    )
    folder = fb_root / f"up-backups-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    folder.chmod(0o755)
    settings = BackupSettings(backup_dir=folder, retention=RetentionPolicy(0, 0, 0))
    first = run_backup_job(target, settings, clock=SystemClock())
    writer = ShopWriter(target).start()
    try:
        second = run_backup_job(target, settings, clock=SystemClock())
    finally:
        writer.stop()
    assert first.succeeded and second.succeeded, (first.error_message, second.error_message)
    day1, day2 = list_backups(folder)
    return Backups(folder, day1, day2, (first.to_report(), second.to_report()))


def copy_of(backups: Backups, tmp_path: Path) -> Path:
    """A private copy of the backup folder (a test may mark files bad or add some)."""
    folder = tmp_path / "backups"
    shutil.copytree(backups.folder, folder)
    return folder


def uploads(
    server: ServerHandle,
    tmp_path: Path,
    site: str,
    folder: Path,
    *,
    clock: Clock | None = None,
    wrap: Callable[[StoreLink], StoreLink] = lambda link: link,
    **values: object,
) -> BackupUploads:
    """An enrolled agent's upload of `folder`'s backups to `server`, as the capability runs it."""
    state = StateDir(tmp_path / f"agent-{site}")
    assert enroll_agent(server, state.root, site).returncode == 0
    creds = state.load_credentials()
    config = ConfigStore(state.root)
    settings: dict[str, object] = {
        "backup.dir": str(folder),
        "upload.enabled": True,
        "upload.recovery_key": FLEET.public.text,
        **values,
    }
    assert config.apply(1, settings).applied  # type: ignore[arg-type]

    def connect() -> StoreLink:
        return wrap(StoreCalls(ServerLink.for_agent(state, creds)))

    setup = Setup(config, clock or SystemClock(), state.root, site, connect)
    return BackupUploads(setup)


def run(up: BackupUploads) -> RunReport | None:
    return asyncio.run(up.run("schedule"))


def details(report: RunReport | None) -> UploadDetails:
    assert report is not None
    assert isinstance(report.details, UploadDetails)
    return report.details


def site_keys(tmp_path: Path, site: str) -> SiteKeys:
    return DataKeyFile(tmp_path / f"agent-{site}", site).keys()


def database_snapshots(server: ServerHandle, site: str) -> list[admin_pb2.SnapshotSummary]:
    request = admin_pb2.ListSnapshotsRequest(site=site, kind=agent_pb2.SNAPSHOT_KIND_DATABASE)
    reply = server.admin_stub().ListSnapshots(request, metadata=server.admin_metadata)
    return list(reply.snapshots)


def reassembled(server: ServerHandle, site: str, keys: SiteKeys, run_id: str) -> list[bytes]:
    """The backup streams of the database snapshot of `run_id`, fetched and checked."""
    stub, md = server.admin_stub(), server.admin_metadata
    got = stub.GetSnapshot(
        admin_pb2.GetSnapshotRequest(
            site=site, kind=agent_pb2.SNAPSHOT_KIND_DATABASE, backup_run_id=run_id
        ),
        metadata=md,
    )

    def fetch_many(ids: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for at in range(0, len(ids), 1000):
            request = admin_pb2.FetchChunksRequest(site=site, ids=ids[at : at + 1000])
            out.update((c.id, c.data) for c in stub.FetchChunks(request, metadata=md))
        return out

    snap = open_snapshot(
        keys, got.snapshot.snapshot_id, got.record, lambda cid: fetch_many([cid])[cid]
    )
    info = BackupInfo.from_snapshot_info(snap.info)
    streams = []
    for refs, stream in zip(stream_refs(info, snap.entries), info.streams, strict=True):
        blobs = fetch_many(sorted({cid for cid, _ in refs}))
        data = b"".join(open_chunk(keys, cid, blobs[cid]) for cid, _ in refs)
        assert hashlib.sha256(data).hexdigest() == stream.sha256  # recorded at backup time
        streams.append(data)
    return streams


def plain(folder: Path, manifest: Manifest, tmp_path: Path) -> bytes:
    out = tmp_path / f"plain-{uuid.uuid4().hex[:6]}"
    decompress_checked(folder / manifest.file, out, expected_sha256=manifest.sha256)
    return out.read_bytes()


def test_backups_record_the_raw_checksum_and_their_run_id(backups: Backups, tmp_path: Path) -> None:
    for manifest, report in zip((backups.day1, backups.day2), backups.reports, strict=True):
        assert report.id == manifest.run_id
        assert report.details.raw_checksum == f"sha256:{manifest.raw_sha256}"  # type: ignore[union-attr]
        raw = plain(backups.folder, manifest, tmp_path)
        assert hashlib.sha256(raw).hexdigest() == manifest.raw_sha256
        assert len(raw) == manifest.size_raw


def test_the_newest_verified_backup_is_uploaded_once_and_restores_byte_for_byte(
    shared_server: ServerHandle, backups: Backups, tmp_path: Path
) -> None:
    site = f"up-{uuid.uuid4().hex[:6]}"
    up = uploads(shared_server, tmp_path, site, backups.folder)
    report = run(up)
    assert report is not None and report.outcome is Outcome.SUCCEEDED, report
    got = details(report)
    assert got.complete and got.paused_reason == ""
    assert got.file == backups.day2.file  # the newest; day 1 is passed over
    assert got.backup_run_id == backups.day2.run_id
    assert got.bytes == backups.day2.size_raw
    assert got.backup_size == backups.day2.size_compressed
    assert got.chunks_sent > 0 and got.bytes_sent > 0
    [snap] = database_snapshots(shared_server, site)
    assert (snap.snapshot_id, snap.backup_run_id) == (got.snapshot_id, backups.day2.run_id)
    keys = site_keys(tmp_path, site)
    [stream] = reassembled(shared_server, site, keys, backups.day2.run_id)
    assert stream == plain(backups.folder, backups.day2, tmp_path)
    assert (backups.folder / backups.day2.file).stat().st_size == backups.day2.size_compressed

    assert run(up) is None  # uploaded: nothing more to do
    assert len(database_snapshots(shared_server, site)) == 1


def test_a_backup_that_failed_verification_is_never_uploaded(
    shared_server: ServerHandle, backups: Backups, tmp_path: Path
) -> None:
    folder = copy_of(backups, tmp_path)
    day1, day2 = list_backups(folder)
    mark_bad(folder, day2, "verification failed: the restore found damage (test)")
    site = f"up-{uuid.uuid4().hex[:6]}"
    up = uploads(shared_server, tmp_path, site, folder)
    got = details(run(up))
    assert got.backup_run_id == day1.run_id  # the newest GOOD one, never the bad one
    mark_bad(folder, day1, "found damaged by the re-check (test)")
    before = stored_chunks(shared_server, site)
    assert run(up) is None
    assert [s.backup_run_id for s in database_snapshots(shared_server, site)] == [day1.run_id]
    assert stored_chunks(shared_server, site) == before
    assert all(r.backup_run_id != day2.run_id for r in database_snapshots(shared_server, site))


def test_without_a_recovery_key_each_backup_gets_one_failed_run_saying_so(
    shared_server: ServerHandle, backups: Backups, tmp_path: Path
) -> None:
    site = f"up-{uuid.uuid4().hex[:6]}"
    up = uploads(shared_server, tmp_path, site, backups.folder, **{"upload.recovery_key": ""})
    report = run(up)
    assert report is not None and report.outcome is Outcome.FAILED
    assert report.error_class == "upload.no_recovery_key"
    assert "upload.recovery_key is not configured" in report.error_message
    assert run(up) is None  # said once for this backup
    assert database_snapshots(shared_server, site) == []


def test_a_cut_connection_fails_the_run_and_the_next_resends_nothing_that_arrived(
    server: ServerHandle, backups: Backups, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.offsite.uploader.BATCH_BYTES", SMALL_BATCH)
    site = "up-cut"
    links: list[CutBeforePut] = []
    cut_at = [3]

    def wrap(link: StoreLink) -> StoreLink:
        links.append(CutBeforePut(link, before_put=cut_at[0], cut=lambda: server.stop()))
        return links[-1]

    up = uploads(server, tmp_path, site, backups.folder, wrap=wrap)
    cut = run(up)
    assert cut is not None and cut.outcome is Outcome.FAILED
    assert cut.error_class == "upload.unavailable", cut.error_message
    assert "tried again" in cut.error_message
    arrived = links[0].delivered
    assert len(arrived) >= 2
    server.start()
    assert database_snapshots(server, site) == []  # nothing half committed
    assert stored_chunks(server, site) == set(arrived)

    cut_at[0] = 0
    resumed = run(up)
    assert resumed is not None and resumed.outcome is Outcome.SUCCEEDED, resumed.error_message
    assert details(resumed).complete
    sent_again = links[1].delivered
    assert not set(sent_again) & set(arrived)  # nothing that arrived went twice
    assert details(resumed).chunks_present >= len(arrived)
    [stream] = reassembled(server, site, site_keys(tmp_path, site), backups.day2.run_id)
    assert stream == plain(backups.folder, backups.day2, tmp_path)


def local(day: int, hour: int, minute: int) -> dt.datetime:
    """A time in the machine's local zone (the window is local time), as UTC."""
    return dt.datetime(2026, 12, day, hour, minute).astimezone().astimezone(dt.UTC)


def test_a_window_closing_mid_upload_pauses_it_and_the_next_window_finishes_it(
    shared_server: ServerHandle, backups: Backups, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.offsite.uploader.BATCH_BYTES", SMALL_BATCH)
    clock = FakeClock(local(1, 21, 50))
    site = f"up-{uuid.uuid4().hex[:6]}"
    links: list[CutBeforePut] = []

    def wrap(link: StoreLink) -> StoreLink:  # the first run's window closes at batch 3
        closing = 3 if not links else 0
        links.append(
            CutBeforePut(link, 0, cut=lambda: clock.set(local(1, 22, 0)), before_missing=closing)
        )
        return links[-1]

    up = uploads(
        shared_server,
        tmp_path,
        site,
        backups.folder,
        clock=clock,
        wrap=wrap,
        **{"upload.window": "21:00-22:00"},
    )
    paused = run(up)
    assert paused is not None and paused.outcome is Outcome.SUCCEEDED
    got = details(paused)
    assert not got.complete and got.snapshot_id == ""
    assert 0 < got.bytes < backups.day2.size_raw
    assert got.paused_reason == "the upload window (21:00-22:00 local time) closed"
    # batch 3, asked about as the window closed, and those before it went; no other
    assert links[0].puts == 3
    arrived = links[0].delivered
    assert database_snapshots(shared_server, site) == []

    clock.set(local(2, 6, 0))
    assert run(up) is None  # outside the window nothing starts
    assert len(links) == 1

    clock.set(local(2, 21, 0))
    done = details(run(up))
    assert done.complete and done.snapshot_id
    assert not set(links[1].delivered) & set(arrived)
    [snap] = database_snapshots(shared_server, site)
    assert snap.backup_run_id == backups.day2.run_id


@pytest.fixture
def tiny_store(fb_root: Path) -> Iterator[Path]:
    """A real 160 KiB filesystem (tmpfs) for a server's blob store."""
    mount = fb_root / f"store-{uuid.uuid4().hex[:8]}"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k,mode=0755", "tmpfs", str(mount)], check=True
    )
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_store_fails_the_run_clearly_and_a_later_run_completes_it(
    tiny_store: Path, backups: Backups, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.offsite.uploader.BATCH_BYTES", SMALL_BATCH)
    server = start_server(tmp_path, extra_args=("--store", str(tiny_store)))
    try:
        site = "up-full"
        up = uploads(server, tmp_path, site, backups.folder)
        full = run(up)
        assert full is not None and full.outcome is Outcome.FAILED
        assert full.error_class == "upload.store_full", full.error_message
        assert "free space in the store" in full.error_message
        assert database_snapshots(server, site) == []
        kept = stored_chunks(server, site, tiny_store)
        assert kept  # what fitted stays, and is not sent again

        subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_store)], check=True)
        done = details(run(up))
        assert done.complete
        assert done.chunks_present >= len(kept)
        [snap] = database_snapshots(server, site)
        assert snap.backup_run_id == backups.day2.run_id
    finally:
        server.stop()
