"""The wrong-database guard's rule: a good backup's figures against the accepted baseline."""

from __future__ import annotations

import datetime as dt

import pytest

from server.domain import figures
from server.domain.figures import Figures, compare, figures_of, judge
from server.domain.records import RunRecord

AT = dt.datetime(2026, 6, 1, 21, 0, tzinfo=dt.UTC)
SHOP = {"ACCOUNTS": 10_000, "CUSTOMERS": 2_000, "RATES": 12}
MIB = 2**20


def fig(
    tables: dict[str, int] | None = None,
    *,
    run_id: str = "r1",
    database: str = r"C:\RTOwin\DATA.FDB",
    size: int = 400 * MIB,
    days: int = 0,
) -> Figures:
    return Figures(
        run_id=run_id,
        at=AT + dt.timedelta(days=days),
        database=database,
        tables=SHOP if tables is None else tables,
        size_bytes=size,
    )


def test_the_same_database_a_day_later_is_no_change() -> None:
    grown = {**SHOP, "ACCOUNTS": 10_400}
    assert compare(fig(), fig(grown, run_id="r2", days=1)) == []


def test_another_database_path_alone_is_no_change() -> None:
    """A move of the same data (a new disk, a new folder) does not need accepting."""
    assert compare(fig(), fig(run_id="r2", database=r"D:\RTOwin\DATA.FDB")) == []


def test_a_table_losing_more_than_half_its_rows_is_a_change() -> None:
    found = compare(fig(), fig({**SHOP, "CUSTOMERS": 999}, run_id="r2"))
    assert found == ["CUSTOMERS 2000 -> 999 rows"]


def test_exactly_half_is_not_yet_a_change() -> None:
    assert compare(fig(), fig({**SHOP, "CUSTOMERS": 1000}, run_id="r2")) == []


def test_small_tables_may_come_and_go_in_rows() -> None:
    assert compare(fig(), fig({**SHOP, "RATES": 0}, run_id="r2")) == []


def test_total_rows_dropping_more_than_a_fifth_is_a_change() -> None:
    """No table halves, but a quarter of all rows is gone."""
    before = {"A": 5_000, "B": 5_000}
    found = compare(fig(before), fig({"A": 3_000, "B": 4_400}, run_id="r2"))
    assert found == ["all tables 10000 -> 7400 rows"]


def test_missing_and_new_tables_are_a_change() -> None:
    other = {"ACCOUNTS": 10_000, "CUSTOMERS": 2_000, "DEMO_ITEMS": 5}
    assert compare(fig(), fig(other, run_id="r2")) == [
        "tables gone: RATES",
        "new tables: DEMO_ITEMS",
    ]


def test_the_database_shrinking_by_more_than_half_is_a_change() -> None:
    found = compare(fig(), fig(run_id="r2", size=150 * MIB))
    assert found == ["database size 400 MiB -> 150 MiB"]
    assert compare(fig(size=10 * MIB), fig(run_id="r2", size=1 * MIB)) == []  # too small to judge
    assert compare(fig(), fig(run_id="r2", size=0)) == []  # size not reported


def test_thresholds_are_the_documented_constants() -> None:
    assert (figures.TABLE_DROP_FRACTION, figures.TABLE_MIN_ROWS) == (0.5, 100)
    assert (figures.TOTAL_DROP_FRACTION, figures.TOTAL_MIN_ROWS) == (0.2, 100)
    assert (figures.SIZE_DROP_FRACTION, figures.SIZE_MIN_BYTES) == (0.5, 16 * MIB)


def test_the_first_good_backup_becomes_the_baseline() -> None:
    current = fig()
    assert judge(None, current, site="shop-1") == figures.Judgement(current, "")


def test_a_backup_without_change_becomes_the_new_baseline() -> None:
    later = fig(run_id="r2", days=1)
    assert judge(fig(), later, site="shop-1").baseline == later


def test_a_sharp_change_keeps_the_baseline_and_says_what_and_how_to_accept() -> None:
    baseline = fig()
    demo = fig({"ACCOUNTS": 40, "CUSTOMERS": 3}, run_id="r2", database=r"C:\Demo\DEMO.FDB", days=1)
    verdict = judge(baseline, demo, site="shop-1")
    assert verdict.baseline == baseline
    assert verdict.change.startswith(
        r"backup r2 from database C:\Demo\DEMO.FDB (was C:\RTOwin\DATA.FDB) differs sharply "
        "from the accepted backup r1 of 2026-06-01 21:00 UTC: tables gone: RATES; "
        "ACCOUNTS 10000 -> 40 rows; CUSTOMERS 2000 -> 3 rows; and 1 more;"
    )
    assert verdict.change.endswith("accept with 'storesafe accept-change shop-1'")


def test_later_backups_of_the_wrong_database_stay_a_change() -> None:
    """Compared with the accepted baseline, not with the previous (wrong) backup."""
    baseline = fig()
    first = judge(baseline, fig({"A": 1}, run_id="r2", days=1), site="s")
    second = judge(first.baseline, fig({"A": 1}, run_id="r3", days=2), site="s")
    assert second.baseline == baseline and "backup r3" in second.change


def test_figures_round_trip_through_json() -> None:
    accepted = Figures("r9", AT, "/db.fdb", {"A": 1}, 5, "alice", AT + dt.timedelta(hours=1))
    assert Figures.from_json(accepted.to_json()) == accepted
    assert Figures.from_json(fig().to_json()) == fig()


def run(**changes: object) -> RunRecord:
    base: dict[str, object] = dict(
        id="r1",
        kind="backup",
        started_at=AT - dt.timedelta(minutes=5),
        finished_at=AT,
        outcome="succeeded",
        verification="passed",
        error_class="",
        error_message="",
        trigger="schedule",
        details={
            "backup": {
                "database": "/srv/shop.fdb",
                "table_counts": {"A": "120"},
                "health": {"size_bytes": "4096"},
            }
        },
    )
    base.update(changes)
    return RunRecord(**base)  # type: ignore[arg-type]


def test_figures_of_a_good_backup_as_stored() -> None:
    assert figures_of(run()) == Figures("r1", AT, "/srv/shop.fdb", {"A": 120}, 4096)


@pytest.mark.parametrize(
    "changes",
    [
        {"verification": "failed"},
        {"outcome": "failed"},
        {"kind": "image-sync"},
        {"details": {"backup": {"database": "/x"}}},  # no row counts: nothing to compare
        {"details": {}},
        {"details": {"backup": {"table_counts": {"A": "many"}}}},
        {"details": {"backup": "garbage"}},
    ],
)
def test_only_good_backups_with_row_counts_have_figures(changes: dict[str, object]) -> None:
    assert figures_of(run(**changes)) is None
