"""The fleet page's rows: filter by status and group, sort, paginate (server-side, pure)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from common.errors import InvalidArgument
from server.domain.records import SiteView
from server.domain.status import PRECEDENCE, Status

PER_PAGE = 500
# Worst first: the order a technician reads a fleet in.
SEVERITY = (*PRECEDENCE, Status.OK)
_RANK = {s: i for i, s in enumerate(SEVERITY)}
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def _when(value: dt.datetime | None) -> tuple[bool, dt.datetime]:
    return (value is None, value or _NEVER)  # "never" sorts after every moment


SORTS: dict[str, Callable[[SiteView], Any]] = {
    "site": lambda v: v.row.name,
    "status": lambda v: (_RANK[v.status.status], v.row.name),
    "group": lambda v: (v.row.group, v.row.name),
    "last_good_backup": lambda v: _when(v.row.last_good_backup_at),
    "last_seen": lambda v: _when(v.row.last_seen_at),
}


@dataclasses.dataclass(frozen=True)
class Query:
    status: Status | None = None
    group: str = ""
    sort: str = "site"
    desc: bool = False
    page: int = 1

    def params(self, **changes: Any) -> dict[str, str]:
        """This query as URL parameters (defaults left out), with `changes` applied."""
        if isinstance(changes.get("status"), str):
            changes["status"] = Status(changes["status"])
        q = dataclasses.replace(self, **changes)
        out = {
            "status": q.status.value if q.status else "",
            "group": q.group,
            "sort": "" if q.sort == "site" else q.sort,
            "order": "desc" if q.desc else "",
            "page": "" if q.page == 1 else str(q.page),
        }
        return {k: v for k, v in out.items() if v}


@dataclasses.dataclass(frozen=True)
class Listing:
    rows: list[SiteView]
    query: Query
    matched: int
    page: int
    pages: int
    counts: dict[str, int]  # per status, over the group's sites (all sites without a group)
    groups: list[str]
    total: int


def parse_query(params: Mapping[str, str]) -> Query:
    """The query from URL parameters; InvalidArgument names a bad one."""
    status: Status | None = None
    raw = params.get("status", "")
    if raw:
        try:
            status = Status(raw)
        except ValueError:
            names = ", ".join(s.value for s in SEVERITY)
            raise InvalidArgument(f"status {raw[:40]!r} is not one of {names}") from None
    sort = params.get("sort", "") or "site"
    if sort not in SORTS:
        raise InvalidArgument(f"sort {sort[:40]!r} is not one of {', '.join(SORTS)}")
    order = params.get("order", "") or "asc"
    if order not in ("asc", "desc"):
        raise InvalidArgument("order must be asc or desc")
    page_text = params.get("page", "") or "1"
    if not page_text.isdigit() or not 1 <= int(page_text) <= 1_000_000:
        raise InvalidArgument("page must be a whole number from 1")
    return Query(status, params.get("group", "")[:200], sort, order == "desc", int(page_text))


def select(views: list[SiteView], query: Query, per_page: int = PER_PAGE) -> Listing:
    """One page of the sites that match `query`; `views` come ordered by site name."""
    groups = sorted({v.row.group for v in views})
    in_group = [v for v in views if v.row.group == query.group] if query.group else views
    counts = Counter(v.status.status.value for v in in_group)
    matched = [v for v in in_group if v.status.status is query.status] if query.status else in_group
    if query.sort != "site" or query.desc:
        matched = sorted(matched, key=SORTS[query.sort], reverse=query.desc)
    pages = max(1, -(-len(matched) // per_page))
    page = min(query.page, pages)
    start = (page - 1) * per_page
    return Listing(
        rows=matched[start : start + per_page],
        query=dataclasses.replace(query, page=page),
        matched=len(matched),
        page=page,
        pages=pages,
        counts={s.value: counts.get(s.value, 0) for s in SEVERITY},
        groups=groups,
        total=len(views),
    )
