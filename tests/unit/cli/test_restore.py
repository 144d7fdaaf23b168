"""`storesafe images restore` on real sealed data served from memory, into real folders."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import secrets
from pathlib import Path

import orjson
import pytest

from cli.restore_target import Target, UnsafePath
from common.vault.chunks import open_chunk
from common.vault.keyfile import write_key_file
from common.vault.keys import FleetPrivateKey
from tests.support.cli import NOW, FakeStoreClient, invoke, pretend_names_fold
from tests.support.sealed import Files, SealedSite, mtime_of, new_site, seal_files, seal_lines


def _bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


FILES: Files = {
    "2026/11/scan-001.jpg": _bytes(1, 40_000),
    "2026/11/scan-002.jpg": _bytes(2, 5_000_000),  # over 4 MiB: two chunks or more
    "2026/12/copy-of-001.jpg": _bytes(1, 40_000),  # the same bytes as scan-001
    "empty.txt": b"",
    "readme.txt": b"hello\n",
}


@pytest.fixture
def site() -> SealedSite:
    return new_site("shop-a")


@pytest.fixture
def key_file(tmp_path: Path, site: SealedSite) -> Path:
    path = tmp_path / "fleet.key"
    write_key_file(path, site.fleet, NOW)
    return path


def _run(client: FakeStoreClient, key: Path, to: Path, *more: str) -> tuple[int, str, str]:
    result = invoke(
        client, "images", "restore", "shop-a", "--to", str(to), "--key", str(key), *more
    )
    return result.exit_code, result.stdout, result.stderr


def _tree(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _expected(files: Files) -> dict[str, tuple[bytes, int]]:
    return {path: (data, mtime_of(path)) for path, data in files.items()}


def test_restores_every_file_with_its_bytes_and_mtime(
    tmp_path: Path, site: SealedSite, key_file: Path
) -> None:
    snap = seal_files(site, FILES)
    client = FakeStoreClient(site, snap)
    code, out, err = _run(client, key_file, tmp_path / "out")
    assert (code, err) == (0, "")
    assert _tree(tmp_path / "out") == _expected(FILES)
    assert out == (
        f"Snapshot {snap.snapshot_id[:12]} (taken 2026-11-26T21:00:00Z) to {tmp_path / 'out'}: "
        "5 files restored (4.8 MiB), 0 already there and checked, 0 not restored.\n"
    )
    fetched = [i for batch in client.fetches for i in batch]
    assert len(fetched) == len(set(fetched))  # the shared chunk came once


def test_a_second_run_checks_and_skips_what_is_there(
    tmp_path: Path, site: SealedSite, key_file: Path
) -> None:
    snap = seal_files(site, FILES)
    client = FakeStoreClient(site, snap)
    assert _run(client, key_file, tmp_path / "out")[0] == 0
    client.fetches.clear()
    code, out, _ = _run(client, key_file, tmp_path / "out", "--json")
    assert code == 0
    shown = json.loads(out)
    assert (shown["restored"], shown["skipped"], shown["failed"]) == (0, 5, 0)
    assert client.fetches == [list(snap.parts)]  # only the manifest


def test_a_changed_file_is_refused_then_replaced_with_force(
    tmp_path: Path, site: SealedSite, key_file: Path
) -> None:
    client = FakeStoreClient(site, seal_files(site, FILES))
    out_dir = tmp_path / "out"
    assert _run(client, key_file, out_dir)[0] == 0
    changed = out_dir / "readme.txt"
    changed.write_bytes(b"HELLO\n")  # same size, new mtime
    os.utime(changed, ns=(mtime_of("readme.txt"), mtime_of("readme.txt")))  # and same mtime
    code, out, err = _run(client, key_file, out_dir)
    assert code == 5
    assert err == (
        f"error: 'readme.txt' is not restored: {out_dir.resolve() / 'readme.txt'} exists and "
        "differs from the snapshot (--force replaces it)\n"
        f"error: 1 problem(s): not every file of the snapshot is in {out_dir}\n"
    )
    assert "0 files restored (0 B), 4 already there and checked, 1 not restored." in out
    assert changed.read_bytes() == b"HELLO\n"
    code, out, err = _run(client, key_file, out_dir, "--force")
    assert (code, err) == (0, "")
    assert _tree(out_dir) == _expected(FILES)


def test_path_restores_one_folder(tmp_path: Path, site: SealedSite, key_file: Path) -> None:
    client = FakeStoreClient(site, seal_files(site, FILES))
    code, _, _ = _run(client, key_file, tmp_path / "out", "--path", "2026/11/")
    assert code == 0
    assert set(_tree(tmp_path / "out")) == {"2026/11/scan-001.jpg", "2026/11/scan-002.jpg"}
    code, _, err = _run(client, key_file, tmp_path / "out", "--path", "2026/1")
    assert (code, err) == (3, "error: the snapshot holds no file at or under '2026/1'\n")
    code, _, err = _run(client, key_file, tmp_path / "out", "--path", "../etc")
    assert code == 2
    assert err == "error: --path: path '../etc' has a '..' part\n"


def test_batches_stay_small_and_split_files(
    tmp_path: Path, site: SealedSite, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cli.restore_fetch.BATCH_IDS", 1)
    # One id a batch whatever the site's keyed cut points: with 4 fetchers a batch could
    # hold scan-001, the chunks of scan-002 and copy-of-001, and fetch the shared chunk once.
    monkeypatch.setattr("cli.restore_fetch.FETCHERS", 1)
    monkeypatch.setattr("cli.restore_fetch.CACHE_BYTES", 0)  # the shared chunk is fetched again
    snap = seal_files(site, FILES)
    client = FakeStoreClient(site, snap)
    code, _, err = _run(client, key_file, tmp_path / "out")
    assert (code, err) == (0, "")
    assert _tree(tmp_path / "out") == _expected(FILES)
    content = client.fetches[1:]
    assert len(_chunks_of(site, client, "2026/11/scan-002.jpg")) >= 2  # a file split by batches
    assert all(len(batch) == 1 for batch in content)
    assert len(content) == len(snap.chunks) - len(snap.parts) + 1


def test_a_tampered_chunk_is_named_with_the_files_it_breaks(
    tmp_path: Path, site: SealedSite, key_file: Path
) -> None:
    client = FakeStoreClient(site, seal_files(site, FILES))
    (shared,) = _chunks_of(site, client, "2026/11/scan-001.jpg")
    blob = bytearray(client.chunks[shared])
    blob[-20] ^= 1
    client.chunks[shared] = bytes(blob)
    code, _, err = _run(client, key_file, tmp_path / "out")
    assert code == 5
    first, last = err.splitlines()
    assert first.startswith(f"error: chunk {shared}")
    assert first.endswith(
        "; it breaks 2 file(s), not restored: '2026/11/scan-001.jpg', '2026/12/copy-of-001.jpg'"
    )
    assert last.startswith("error: 1 problem(s)")
    restored = _tree(tmp_path / "out")
    assert set(restored) == {"2026/11/scan-002.jpg", "empty.txt", "readme.txt"}
    assert not list((tmp_path / "out").rglob(".storesafe-restore-*"))


def test_a_missing_chunk_is_named(tmp_path: Path, site: SealedSite, key_file: Path) -> None:
    client = FakeStoreClient(site, seal_files(site, FILES))
    (gone,) = _chunks_of(site, client, "readme.txt")
    del client.chunks[gone]
    code, _, err = _run(client, key_file, tmp_path / "out")
    assert code == 5
    assert err.splitlines()[0] == (
        f"error: chunk {gone} is missing from the store; it breaks 1 file(s), not restored: "
        "'readme.txt'"
    )
    assert len(_tree(tmp_path / "out")) == 4


def test_a_wrong_key_file_is_refused(tmp_path: Path, site: SealedSite) -> None:
    other = FleetPrivateKey.generate()
    wrong = tmp_path / "other.key"
    write_key_file(wrong, other, NOW)
    client = FakeStoreClient(site, seal_files(site, FILES))
    code, out, err = _run(client, wrong, tmp_path / "out")
    assert (code, out) == (5, "")
    assert err == (
        f"error: this key file (fingerprint {other.fingerprint}) is not the fleet key that "
        f"site shop-a's data key was sealed to (fingerprint {site.fleet.fingerprint})\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_path_attack_in_the_manifest_is_refused(
    tmp_path: Path, site: SealedSite, key_file: Path
) -> None:
    line = orjson.dumps({"p": "../escaped.txt", "s": 0, "m": 0, "c": []}) + b"\n"
    client = FakeStoreClient(site, seal_lines(site, [line], 0))
    code, _, err = _run(client, key_file, tmp_path / "out")
    assert code == 5
    assert err.startswith("error: snapshot ")
    assert "cannot be opened, nothing was written: " in err
    assert "'../escaped.txt'" in err
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "out").exists()


def test_a_link_in_the_target_is_never_followed(
    tmp_path: Path, site: SealedSite, key_file: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "2026").symlink_to(outside, target_is_directory=True)
    client = FakeStoreClient(site, seal_files(site, FILES))
    code, _, err = _run(client, key_file, tmp_path / "out")
    assert code == 5
    link = (tmp_path / "out").resolve() / "2026"
    assert err.splitlines()[:3] == [
        f"error: '{p}' is not restored: {link} is a symbolic link "
        "(a restore never writes through a link)"
        for p in ("2026/11/scan-001.jpg", "2026/11/scan-002.jpg", "2026/12/copy-of-001.jpg")
    ]
    assert list(outside.iterdir()) == []
    assert set(_tree(tmp_path / "out")) == {"empty.txt", "readme.txt"}


def test_a_folder_swapped_for_a_link_after_the_check_is_not_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the check of a path and the write of its file, a folder below the target
    is replaced with a link to elsewhere: the write never lands outside the target."""
    outside = tmp_path / "outside"
    (outside / "11").mkdir(parents=True)
    out = tmp_path / "out"
    (out / "2026" / "11").mkdir(parents=True)
    target = Target(out)

    def swap(aside: str = "moved") -> None:  # the folder moved aside, a link in its place
        (out / "2026").rename(out / aside)
        (out / "2026").symlink_to(outside, target_is_directory=True)

    # swapped after the check, before the temporary file is made (as the name is drawn)
    final = target.path_of("2026/11/a.txt")
    draw = secrets.token_hex

    def swap_then_draw(n: int) -> str:
        swap("first")
        return draw(n)

    monkeypatch.setattr(secrets, "token_hex", swap_then_draw)
    with pytest.raises(UnsafePath, match="is no longer a plain folder"):
        target.open_temp(final)
    monkeypatch.undo()
    assert list(outside.rglob("*")) == [outside / "11"]

    # swapped while the file is written: it lands in the folder it was opened in
    (out / "2026").unlink()
    (out / "2026" / "11").mkdir(parents=True)
    temp = target.open_temp(final)
    temp.handle.write(b"data")
    swap()
    Target.commit(temp, mtime_of("a.txt"))
    assert list(outside.rglob("*")) == [outside / "11"]
    assert (out / "moved" / "11" / "a.txt").read_bytes() == b"data"
    assert list((out / "moved" / "11").iterdir()) == [out / "moved" / "11" / "a.txt"]

    # and one left unfinished is removed from that folder, not through the link
    temp = target.open_temp(target.path_of("x/b.txt"))
    (out / "x").rename(out / "x-moved")
    (out / "x").symlink_to(outside / "11", target_is_directory=True)
    Target.discard(temp)
    assert list((out / "x-moved").iterdir()) == []
    assert list(outside.rglob("*")) == [outside / "11"]


def test_a_snapshot_is_chosen_by_the_start_of_its_id(
    tmp_path: Path, site: SealedSite, key_file: Path
) -> None:
    old = seal_files(site, {"a.txt": b"old\n"}, NOW - dt.timedelta(days=2))
    new = seal_files(site, {"a.txt": b"new\n"}, NOW - dt.timedelta(days=1))
    client = FakeStoreClient(site, old, new)
    code, _, _ = _run(client, key_file, tmp_path / "newest")
    assert code == 0
    assert (tmp_path / "newest" / "a.txt").read_bytes() == b"new\n"
    code, _, _ = _run(client, key_file, tmp_path / "old", "--snapshot", old.snapshot_id[:8])
    assert code == 0
    assert (tmp_path / "old" / "a.txt").read_bytes() == b"old\n"
    code, _, err = _run(client, key_file, tmp_path / "x", "--snapshot", "zz")
    assert (code, err) == (2, "error: 'zz' is not a snapshot id (hex, as listed)\n")


def test_another_snapshot_than_the_one_asked_for_is_refused(
    tmp_path: Path, site: SealedSite, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = seal_files(site, {"a.txt": b"old\n"}, NOW - dt.timedelta(days=2))
    new = seal_files(site, {"a.txt": b"new\n"}, NOW - dt.timedelta(days=1))
    client = FakeStoreClient(site, old, new)
    newest = client.get_snapshot("shop-a")
    monkeypatch.setattr(client, "get_snapshot", lambda *args, **kwargs: newest)
    code, _, err = _run(client, key_file, tmp_path / "x", "--snapshot", old.snapshot_id)
    assert code == 5
    assert err == (
        f"error: asked for snapshot {old.snapshot_id[:12]}, the server sent "
        f"{new.snapshot_id[:12]}: nothing was written\n"
    )
    assert not (tmp_path / "x").exists()


def _chunks_of(site: SealedSite, client: FakeStoreClient, path: str) -> list[str]:
    """The chunk ids of `path` in the newest snapshot, read from its manifest."""
    snap = client.snapshots[0]
    manifest = b"".join(open_chunk(site.keys, p, client.chunks[p]) for p in snap.parts)
    entry = next(orjson.loads(x) for x in manifest.splitlines() if orjson.loads(x)["p"] == path)
    return [chunk_id for chunk_id, _ in entry["c"]]


def test_names_a_folding_file_system_takes_for_one_are_not_merged(
    tmp_path: Path, site: SealedSite, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"Scan.jpg": b"upper\n", "scan.jpg": b"lower\n", "other.jpg": b"x\n"}
    client = FakeStoreClient(site, seal_files(site, files))
    pretend_names_fold(monkeypatch)
    code, _, err = _run(client, key_file, tmp_path / "out")
    assert code == 5
    assert err.splitlines()[0] == (
        "error: 'scan.jpg' is not restored: this file system takes it for 'Scan.jpg' "
        "(same name but for case or Unicode form)"
    )
    assert _tree(tmp_path / "out") == {
        p: (files[p], mtime_of(p)) for p in ("Scan.jpg", "other.jpg")
    }


def test_the_probe_finds_that_this_file_system_does_not_fold(tmp_path: Path) -> None:
    from cli.restore_target import Target

    target = Target(tmp_path / "t")
    assert target.folds_names() is False
    assert list((tmp_path / "t").iterdir()) == []
