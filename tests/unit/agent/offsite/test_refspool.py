"""The ref spool and the distinct ids sorted out of it: in order back, sorted and distinct, built
in runs of bounded size (never one list of every id), run files removed."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.offsite import refspool
from agent.offsite.refspool import DistinctIds, RefSpool


def test_the_spool_gives_the_refs_back_in_order_with_repeats(tmp_path: Path) -> None:
    refs = [(os.urandom(32).hex(), n) for n in range(10_000)]
    refs.insert(5000, refs[3])  # a repeated chunk stays in the manifest order
    spool = RefSpool(tmp_path / "refs.bin")
    for chunk_id, length in refs:
        spool.add(chunk_id, length)
    spool.close()
    assert spool.count == len(refs)
    assert list(spool.refs()) == refs
    assert list(spool.ids()) == [bytes.fromhex(i) for i, _ in refs]


@pytest.mark.parametrize("run_ids", [7, 1000, 1 << 16])
def test_distinct_ids_are_sorted_distinct_and_reiterable(tmp_path: Path, run_ids: int) -> None:
    rng = random.Random(run_ids)
    pool = [rng.randbytes(32) for _ in range(3000)]
    ids = [rng.choice(pool) for _ in range(9000)]  # many repeats, across runs
    built = DistinctIds.build(tmp_path / "ids.bin", iter(ids), run_ids=run_ids)
    want = sorted({i.hex() for i in ids})
    assert len(built) == len(want)
    assert list(built) == want
    assert list(built) == want  # a second pass reads the file again (a retried stream)
    assert all(i in built for i in want[:50] + want[-50:])
    assert rng.randbytes(32).hex() not in built and "zz" not in built and 7 not in built
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.bin"]  # no run files left


def test_no_ids_make_an_empty_file(tmp_path: Path) -> None:
    built = DistinctIds.build(tmp_path / "ids.bin", iter([]))
    assert len(built) == 0 and list(built) == []


def test_the_build_holds_one_run_not_every_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sort never holds more than run_ids ids at once, and many runs are merged in
    rounds of at most FAN_IN open files."""
    monkeypatch.setattr(refspool, "FAN_IN", 3)
    largest = [0]
    real_write = refspool._write_run

    def write_run(name: Path, run: list[bytes]) -> Path:
        largest[0] = max(largest[0], len(run))
        return real_write(name, run)

    monkeypatch.setattr(refspool, "_write_run", write_run)
    opened: list[int] = []
    real_merge = refspool._merge_into

    def merge_into(runs: list[Path], out: Path) -> int:
        opened.append(len(runs))
        return real_merge(runs, out)

    monkeypatch.setattr(refspool, "_merge_into", merge_into)
    ids = [os.urandom(32) for _ in range(1000)]
    built = DistinctIds.build(tmp_path / "ids.bin", iter(ids + ids[:100]), run_ids=50)
    assert list(built) == sorted(i.hex() for i in ids)
    assert largest[0] == 50
    assert max(opened) <= 3 and len(opened) > 8  # 22 runs: merged in rounds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.bin"]


def test_a_failed_build_leaves_no_run_files(tmp_path: Path) -> None:
    def ids() -> Iterator[bytes]:
        yield from (os.urandom(32) for _ in range(30))
        raise OSError("the spool could not be read")

    with pytest.raises(OSError, match="could not be read"):
        DistinctIds.build(tmp_path / "ids.bin", ids(), run_ids=10)
    assert [p.name for p in tmp_path.iterdir() if ".run" in p.name] == []


def test_an_id_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="31 bytes"):
        DistinctIds.build(tmp_path / "ids.bin", iter([os.urandom(31)]))
