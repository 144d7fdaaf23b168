"""Rows of the state tables as domain records (shared by the state modules)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import DateTime

from common.clock import utc
from server.domain.records import AdminTokenRecord, RunRecord, SiteRow
from server.domain.status import Disk
from server.state.tables import SITES


def run_record(r: Any, site: str = "") -> RunRecord:
    """A `runs` row (every column selected) as a RunRecord of `site`."""
    return RunRecord(
        id=r.id,
        kind=r.kind,
        started_at=utc(r.started_at),
        finished_at=utc(r.finished_at),
        outcome=r.outcome,
        verification=r.verification,
        error_class=r.error_class,
        error_message=r.error_message,
        trigger=r.trigger,
        details=orjson.loads(r.details_json or "{}"),
        site=site,
        received_at=utc(r.received_at),
        file_state=r.file_state,
    )


def admin_record(r: Any) -> AdminTokenRecord:
    """An `admin_tokens` row as a record (never its hash)."""
    return AdminTokenRecord(
        id=r.id,
        name=r.name,
        created_at=utc(r.created_at),
        created_by=r.created_by,
        revoked_at=utc(r.revoked_at) if r.revoked_at is not None else None,
        revoked_by=r.revoked_by,
    )


def site_row(r: Any) -> SiteRow:
    """One `sites` row (ROW_COLUMNS selected, by name) as a SiteRow."""
    return site_rows([tuple(r._mapping[c] for c in ROW_COLUMNS)])[0]


# SiteRow's fields as columns, in its field order: ListSites turns 10,000 rows into
# SiteRows by position, without a Python call per field.
ROW_COLUMNS = [
    SITES.c[{"disks": "disks_json", "firebird": "firebird_json"}.get(f.name, f.name)]
    for f in dataclasses.fields(SiteRow)
]
_DATETIME_AT = [i for i, c in enumerate(ROW_COLUMNS) if isinstance(c.type, DateTime)]
_DISKS_AT = [c.name for c in ROW_COLUMNS].index("disks_json")
_FIREBIRD_AT = [c.name for c in ROW_COLUMNS].index("firebird_json")


def site_rows(rows: Iterable[Sequence[Any]]) -> list[SiteRow]:
    """SiteRows from rows of `ROW_COLUMNS`: datetimes in UTC, the JSON columns parsed."""
    out = []
    loads = orjson.loads
    for r in rows:
        v = list(r)
        for i in _DATETIME_AT:
            if v[i] is not None:
                v[i] = utc(v[i])
        v[_DISKS_AT] = tuple(
            Disk(d["label"], d["path"], d["total_bytes"], d["free_bytes"])
            for d in loads(v[_DISKS_AT] or "[]")
        )
        firebird = v[_FIREBIRD_AT]
        v[_FIREBIRD_AT] = loads(firebird) if firebird else None
        out.append(SiteRow(*v))
    return out
