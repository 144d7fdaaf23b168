"""The image-sync capability in-process: configuration, the site data key, sync-now, its report."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from agent.capability import Seam, Setup
from agent.commands import CommandRunner
from agent.configsync import ConfigStore
from agent.datakey import KEY_FILE, DataKeyFile, KeyFileUnusable
from agent.domain.reports import ImageSyncDetails, Outcome, RunKind
from agent.images.capability import ImageSync, sync_summary
from agent.images.uploader import ImageUploader
from agent.scheduler import Scheduler
from common.vault import FleetPrivateKey, open_data_key
from tests.support.clock import FakeClock
from tests.support.offsitestore import AsyncMemoryStore, MemoryStore

T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)


def build(tmp_path: Path, store: MemoryStore, **config: object) -> tuple[ImageSync, ConfigStore]:
    (tmp_path / "state").mkdir(exist_ok=True)
    cfg = ConfigStore(tmp_path / "state", path_check=lambda key, value: None)
    cfg.apply(1, dict(config))  # type: ignore[arg-type]
    links: list[AsyncMemoryStore] = []

    def connect() -> AsyncMemoryStore:
        links.append(AsyncMemoryStore(store))
        return links[-1]

    setup = Setup(
        config=cfg,
        clock=FakeClock(T0),
        state_dir=tmp_path / "state",
        site="shop-1",
        store_link=connect,
    )
    return ImageSync(setup), cfg


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "Images"
    folder.mkdir()
    (folder / "id-card.jpg").write_bytes(os.urandom(100_000))
    (folder / "contract.pdf").write_bytes(os.urandom(900_000))
    return folder


def test_not_configured_until_images_dir_and_recovery_key_are_set(
    tmp_path: Path, folder: Path
) -> None:
    cap, cfg = build(tmp_path, MemoryStore())
    assert cap.why_not_configured() == "images.dir is not configured"
    cfg.apply(2, {"images.dir": str(folder)})
    assert "upload.recovery_key is not configured" in (cap.why_not_configured() or "")
    fleet = FleetPrivateKey.generate()
    cfg.apply(3, {"images.dir": str(folder), "upload.recovery_key": fleet.public.text})
    assert cap.why_not_configured() is None


def test_sync_now_registers_the_data_key_uploads_commits_and_reports(
    tmp_path: Path, folder: Path
) -> None:
    fleet = FleetPrivateKey.generate()
    store = MemoryStore()
    cap, _ = build(
        tmp_path,
        store,
        **{
            "images.dir": str(folder),
            "upload.recovery_key": fleet.public.text,
            "images.settle_seconds": 0,
        },
    )
    seam = Seam([cap])
    submitted = []

    async def main() -> tuple[object, object]:
        scheduler = Scheduler(
            config=cap._config, tasks=seam.tasks(), clock=FakeClock(T0), state_dir=tmp_path
        )
        scheduler._sink = type("Sink", (), {"submit": staticmethod(submitted.append)})()
        runner = CommandRunner(tmp_path, seam.commands(scheduler))
        first = await runner.run("c1", "sync-now")
        second = await runner.run("c2", "sync-now")
        return first, second

    first, second = asyncio.run(main())
    assert first.outcome == "succeeded" and second.outcome == "succeeded"  # type: ignore[attr-defined]
    # the data key went once, sealed to the fleet key, and opens with its private half
    [registered] = store.site_keys
    key_file = tmp_path / "state" / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = DataKeyFile(tmp_path / "state", "shop-1").keys()
    assert open_data_key(registered.sealed_key, "shop-1", fleet) == keys.data_key
    assert registered.data_key_id == keys.key_id_hex
    assert len(store.snapshots) >= 1
    [report1, report2] = submitted
    assert report1.kind is RunKind.IMAGE_SYNC and report1.outcome is Outcome.SUCCEEDED
    assert report1.trigger == "remote"
    assert isinstance(report1.details, ImageSyncDetails)
    assert report1.details.files_scanned == 2 and report1.details.files_copied == 2
    assert report1.details.bytes_read == 1_000_000
    assert report1.details.bytes_copied > 900_000 and report1.details.chunks_sent >= 2
    assert report1.details.files_new == 2 and report1.details.snapshot_id in store.snapshots
    assert report2.details.files_copied == 0 and report2.details.bytes_copied == 0
    assert report2.details.files_unchanged == 2 and report2.details.chunks_sent == 0


def test_a_new_recovery_key_registers_the_same_data_key_again(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    key_file = DataKeyFile(state, "shop-1")
    first, second = FleetPrivateKey.generate(), FleetPrivateKey.generate()
    reg = key_file.registration(first.public)
    assert reg is not None
    key_file.registered(reg.recovery_key_fingerprint)
    assert key_file.registration(first.public) is None
    again = key_file.registration(second.public)
    assert again is not None and again.data_key_id == reg.data_key_id
    assert open_data_key(again.sealed_key, "shop-1", second) == key_file.keys().data_key


def test_a_key_file_of_another_site_or_damaged_is_refused(tmp_path: Path) -> None:
    DataKeyFile(tmp_path, "shop-1").keys()
    with pytest.raises(KeyFileUnusable, match="is of site 'shop-1'"):
        DataKeyFile(tmp_path, "shop-2").keys()
    (tmp_path / KEY_FILE).write_text("{not json")
    with pytest.raises(KeyFileUnusable, match="is damaged"):
        DataKeyFile(tmp_path, "shop-1").keys()


def test_a_failed_store_call_is_a_failed_report_with_its_sentence(
    tmp_path: Path, folder: Path
) -> None:
    store = MemoryStore(fail_put_call=1)
    fleet = FleetPrivateKey.generate()
    cap, _ = build(
        tmp_path,
        store,
        **{
            "images.dir": str(folder),
            "upload.recovery_key": fleet.public.text,
            "images.settle_seconds": 0,
        },
    )
    report = asyncio.run(cap.sync("local"))
    assert report is not None and report.outcome is Outcome.FAILED
    assert "the connection was cut" in report.error_message
    assert store.snapshots == {}


def test_the_agent_refuses_a_recovery_key_that_is_not_one(tmp_path: Path, folder: Path) -> None:
    cap, cfg = build(tmp_path, MemoryStore())
    result = cfg.apply(2, {"images.dir": str(folder), "upload.recovery_key": "ssrk1:nonsense"})
    assert not result.applied and "upload.recovery_key" in result.error
    assert cap.why_not_configured() == "images.dir is not configured"  # revision 1 still runs


def test_a_state_dir_it_cannot_write_is_a_failed_report_with_its_sentence(
    tmp_path: Path, folder: Path
) -> None:
    fleet = FleetPrivateKey.generate()
    cap, _ = build(
        tmp_path,
        MemoryStore(),
        **{"images.dir": str(folder), "upload.recovery_key": fleet.public.text},
    )
    (tmp_path / "state" / "images").write_text("a file where the index folder goes")
    report = asyncio.run(cap.sync("local"))
    assert report is not None and report.outcome is Outcome.FAILED
    assert report.error_message.startswith("cannot write the image index folder")


def _window_from(start: dt.datetime, minutes: int) -> str:
    """HH:MM-HH:MM in this machine's local time (what upload.window means) from `start`."""
    a, b = start.astimezone(), (start + dt.timedelta(minutes=minutes)).astimezone()
    return f"{a:%H:%M}-{b:%H:%M}"


def test_outside_the_upload_window_no_pass_starts_and_sync_now_says_when_it_opens(
    tmp_path: Path, folder: Path
) -> None:
    store = MemoryStore()
    fleet = FleetPrivateKey.generate()
    cap, _ = build(
        tmp_path,
        store,
        **{
            "images.dir": str(folder),
            "upload.recovery_key": fleet.public.text,
            "images.settle_seconds": 0,
            "upload.window": _window_from(T0 + dt.timedelta(minutes=90), 60),
        },
    )
    seam = Seam([cap])
    submitted: list[object] = []

    async def main() -> object:
        scheduler = Scheduler(
            config=cap._config, tasks=seam.tasks(), clock=FakeClock(T0), state_dir=tmp_path
        )
        scheduler._sink = type("Sink", (), {"submit": staticmethod(submitted.append)})()
        assert await scheduler.run("image-sync", trigger="schedule") is None
        return await CommandRunner(tmp_path, seam.commands(scheduler)).run("c1", "sync-now")

    answer = asyncio.run(main())
    assert answer.outcome == "rejected"  # type: ignore[attr-defined]
    assert answer.message == (  # type: ignore[attr-defined]
        f"not run on this agent: outside the upload window "
        f"({_window_from(T0 + dt.timedelta(minutes=90), 60)} local time); "
        "it next opens in 90 min"
    )
    assert submitted == [] and store.put_calls == 0 and store.site_keys == []


def test_a_pass_cut_by_its_budget_is_a_succeeded_report_marked_incomplete(
    tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.images.uploader.SEND_AFTER_FILE", 128 << 10)  # a batch a file
    store = MemoryStore()
    fleet = FleetPrivateKey.generate()
    cap, _ = build(
        tmp_path,
        store,
        **{
            "images.dir": str(folder),
            "upload.recovery_key": fleet.public.text,
            "images.settle_seconds": 0,
            "images.max_pass_minutes": 1,
        },
    )
    clock = cap._clock
    assert isinstance(clock, FakeClock)
    real_store = ImageUploader.store
    slow = True

    def slow_file(self, file, stream):  # type: ignore[no-untyped-def]
        ids = real_store(self, file, stream)
        if slow:
            clock.advance(dt.timedelta(minutes=2))  # each file takes 2 min, in the pass's thread
        return ids

    monkeypatch.setattr(ImageUploader, "store", slow_file)
    report = asyncio.run(cap.sync("schedule"))
    assert report is not None and report.outcome is Outcome.SUCCEEDED
    d = report.details
    assert isinstance(d, ImageSyncDetails)
    assert d.files_copied == 1 and d.snapshot_id == "" and d.current_snapshot_id == ""
    assert d.incomplete == "the pass used its time budget of 1 min (images.max_pass_minutes)"
    assert d.summary.startswith("incomplete: ")
    assert sync_summary(report).startswith("image sync incomplete: 2 files seen, 1 stored")
    assert store.snapshots == {}

    slow = False
    again = asyncio.run(cap.sync("schedule"))
    assert again is not None and isinstance(again.details, ImageSyncDetails)
    assert again.details.files_copied == 1 and again.details.snapshot_id in store.snapshots
    assert again.details.incomplete == ""
    assert sync_summary(again).endswith(f"snapshot {again.details.snapshot_id[:12]}")
