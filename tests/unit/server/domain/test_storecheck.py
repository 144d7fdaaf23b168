"""server/domain/storecheck.py: the sampled arcs cover every chunk over repeated checks,
agree with their id ranges, and the findings say what they break."""

from __future__ import annotations

import hashlib
import math
import random

import pytest

from common.errors import InvalidArgument
from server.domain import storecheck
from server.domain.details import STORE_CHECK_DETAILS, checked_fields
from server.domain.storecheck import CIRCLE, Arc, Findings


def ids(n: int, seed: int = 1) -> list[str]:
    rnd = random.Random(seed)
    return [hashlib.sha256(rnd.randbytes(16)).hexdigest() for _ in range(n)]


def in_ranges(arc: Arc, chunk_id: str) -> bool:
    return any(chunk_id >= low and (high is None or chunk_id < high) for low, high in arc.ranges())


@pytest.mark.parametrize("percent", [100, 50, 25, 10, 3.3, 0.5])
def test_consecutive_checks_read_every_chunk_once_per_round(percent: float) -> None:
    chunks = ids(2000)
    start = random.Random(percent).randrange(CIRCLE)
    rounds = math.ceil(100 / percent)
    seen: dict[str, int] = {}
    text = ""
    for i in range(rounds):
        arc = Arc(storecheck.position(text, start if i == 0 else 0), percent)
        for c in chunks:
            assert arc.holds(c) == in_ranges(arc, c), (arc, c)
            if arc.holds(c):
                seen[c] = seen.get(c, 0) + 1
        text = storecheck.cursor(arc.next_start)
    assert set(seen) == set(chunks)  # everything read within ceil(100 / p) checks
    assert max(seen.values()) <= 2  # the last arc may wrap past the first start


def test_a_sample_is_about_its_share_and_starts_where_the_last_ended() -> None:
    chunks = ids(4000, seed=7)
    arc = Arc(12345, 10)
    share = sum(arc.holds(c) for c in chunks) / len(chunks)
    assert 0.07 < share < 0.13
    assert storecheck.position(storecheck.cursor(arc.next_start), 99) == arc.next_start
    assert storecheck.position("", 99) == 99  # the first check starts where told (random)
    assert storecheck.position("zz", 5) == 5  # a garbled cursor: a fresh random start
    wrap = Arc(CIRCLE - 10, 50)
    assert wrap.ranges() == [(storecheck.cursor(CIRCLE - 10), None), ("", "7ffffffffffffff6")]
    assert Arc(0, 100).ranges() == [("", None)]


def test_the_share_is_checked() -> None:
    assert storecheck.check_percent(0) == 100.0
    assert storecheck.check_percent(2.5) == 2.5
    for bad in (-1, 100.01, float("nan"), float("inf")):
        with pytest.raises(InvalidArgument, match=r"^sample_percent: "):
            storecheck.check_percent(bad)


def test_findings_name_chunks_snapshots_and_backups_within_the_rules() -> None:
    bad = ids(150, seed=3)
    damage = {c: storecheck.DAMAGED for c in bad[:120]}
    damage.update({c: storecheck.MISSING for c in bad[120:]})
    found = Findings(
        damage,
        [("a" * 64, "database", "b-2"), ("b" * 64, "database", "b-1"), ("c" * 64, "images", "")],
    )
    details = found.details(12.5, 400, 10_000)
    assert checked_fields("store_check", details, STORE_CHECK_DETAILS) == details
    assert len(details["damaged_chunks"]) == 100  # type: ignore[arg-type]
    assert details["damaged_count"] == "120" and details["missing_count"] == "30"
    assert details["broken_backup_runs"] == ["b-1", "b-2"]
    assert found.summary() == (
        "backups b-1, b-2 cannot be restored; 1 image snapshot(s) cannot be fully restored"
    )
    assert Findings({bad[0]: storecheck.MISSING}, []).summary() == "no snapshot references them"
    assert Findings({}, []).summary() == "" and Findings({}, []).error_message() == ""
    many = [(f"{i:064x}", "database", f"b-{i}") for i in range(8)]
    assert Findings(damage, many).summary() == (
        "backups b-0, b-1, b-2, b-3, b-4 and 3 more cannot be restored"
    )
