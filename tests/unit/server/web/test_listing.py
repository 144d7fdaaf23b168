"""The fleet page's filtering, sorting and pagination."""

from __future__ import annotations

import datetime as dt

import pytest

from common.errors import InvalidArgument
from server.domain.records import SiteRow, SiteView
from server.domain.status import SiteStatus, Status
from server.web.listing import Query, parse_query, select

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def view(name: str, status: Status, group: str = "g", seen_hours: float | None = 1.0) -> SiteView:
    seen = None if seen_hours is None else NOW - dt.timedelta(hours=seen_hours)
    row = SiteRow(
        id=hash(name) & 0xFFFF, name=name, group=group, hostname="", os="", agent_version="",
        enrolled_at=NOW, last_seen_at=seen, last_backup_at=None, last_backup_ok=None,
        last_backup_error="", last_backup_size=0, last_good_backup_at=seen,
        last_image_sync_at=None, last_image_sync_ok=None, last_image_sync_error="",
        last_validation_errors=0, last_validation_summary="", clock_skew_seconds=0.0,
        config_revision_applied=0, outbox_pending=0, disks=(), firebird=None,
    )  # fmt: skip
    return SiteView(row, SiteStatus(status, []))


FLEET = sorted(
    [
        view("a", Status.OK, "north", 1),
        view("b", Status.FAILING, "north", 2),
        view("c", Status.OFFLINE, "south", 30),
        view("d", Status.NEVER, "south", None),
        view("e", Status.OK, "south", 0.5),
    ],
    key=lambda v: v.row.name,
)


def names(views: list[SiteView]) -> list[str]:
    return [v.row.name for v in views]


def test_defaults_list_every_site_by_name_with_counts_per_status() -> None:
    listing = select(FLEET, Query())
    assert names(listing.rows) == ["a", "b", "c", "d", "e"]
    assert listing.counts == {
        "offline": 1, "never": 1, "failing": 1, "stale": 0, "warning": 0, "ok": 2
    }  # fmt: skip
    assert listing.groups == ["north", "south"]
    assert (listing.matched, listing.total, listing.pages) == (5, 5, 1)


def test_filters_by_status_and_group_and_counts_the_group() -> None:
    assert names(select(FLEET, Query(status=Status.OK)).rows) == ["a", "e"]
    south = select(FLEET, Query(group="south"))
    assert names(south.rows) == ["c", "d", "e"]
    assert south.counts["ok"] == 1 and south.counts["failing"] == 0
    assert names(select(FLEET, Query(status=Status.OK, group="south")).rows) == ["e"]
    nothing = select(FLEET, Query(group="west"))
    assert nothing.rows == [] and nothing.matched == 0  # never shown as "all ok"


def test_sorts_worst_first_and_by_moments_with_never_last() -> None:
    assert names(select(FLEET, Query(sort="status")).rows) == ["c", "d", "b", "a", "e"]
    assert names(select(FLEET, Query(sort="status", desc=True)).rows) == ["e", "a", "b", "d", "c"]
    assert names(select(FLEET, Query(sort="last_seen")).rows) == ["c", "b", "a", "e", "d"]
    assert names(select(FLEET, Query(sort="group")).rows) == ["a", "b", "c", "d", "e"]


def test_paginates_and_clamps_a_page_past_the_end() -> None:
    first = select(FLEET, Query(), per_page=2)
    assert names(first.rows) == ["a", "b"] and first.pages == 3
    assert names(select(FLEET, Query(page=3), per_page=2).rows) == ["e"]
    past = select(FLEET, Query(page=9), per_page=2)
    assert past.page == 3 and names(past.rows) == ["e"]


def test_parse_query_reads_parameters_and_refuses_bad_ones() -> None:
    q = parse_query({"status": "failing", "group": "north", "sort": "last_seen", "order": "desc"})
    assert q == Query(Status.FAILING, "north", "last_seen", True, 1)
    assert parse_query({}) == Query()
    for bad in ({"status": "sunny"}, {"sort": "price"}, {"order": "up"}, {"page": "0"},
                {"page": "x"}):  # fmt: skip
        with pytest.raises(InvalidArgument):
            parse_query(bad)


def test_query_params_leave_defaults_out() -> None:
    q = Query(Status.OK, "north", "status", True, 2)
    assert q.params() == {
        "status": "ok", "group": "north", "sort": "status", "order": "desc", "page": "2"
    }  # fmt: skip
    assert q.params(status=None, page=1, sort="site", desc=False) == {"group": "north"}
    assert Query().params(status="never") == {"status": "never"}
