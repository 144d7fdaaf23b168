"""Where the wrong-database guard keeps its baseline: the SQL steps around server/figures.py.

`check_report` runs inside a report's write, for a newly stored good backup;
`accept` runs as one write of its own. Both keep each site's accepted baseline,
its open change and the finish time of the newest good backup compared on the
site's row (a report older than that one changes nothing: the outbox may
deliver reports late and out of order).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from common.clock import utc
from common.errors import FailedPrecondition, NotFound
from server.domain import FiguresAccepted, RunRecord
from server.figures import Figures, figures_of, judge
from server.state.tables import RUNS, SITES


def check_report(conn: Connection, site_id: int, run: RunRecord) -> None:
    """Compare a newly stored good backup with the site's baseline and record the verdict."""
    current = figures_of(run)
    if current is None:
        return
    row = conn.execute(
        select(SITES.c.name, SITES.c.figures_baseline_json, SITES.c.figures_checked_at).where(
            SITES.c.id == site_id
        )
    ).one()
    if row.figures_checked_at is not None and utc(row.figures_checked_at) >= run.finished_at:
        return
    verdict = judge(_baseline(row.figures_baseline_json), current, site=row.name)
    _store(conn, site_id, verdict.baseline, verdict.change, run.finished_at)


def accept(
    conn: Connection, *, site: str, run_id: str, by: str, now: dt.datetime
) -> FiguresAccepted:
    """Make the figures of `run_id` (or of the newest good backup) the site's baseline.

    MUST raise NotFound for an unknown site or run, and FailedPrecondition when the
    run is not a verified backup with figures. The newest good backup is judged again
    against the new baseline, so accepting an older run keeps a later change open.
    """
    found = conn.execute(
        select(SITES.c.id, SITES.c.name, SITES.c.figures_change, SITES.c.figures_checked_at).where(
            SITES.c.name == site
        )
    ).first()
    if found is None:
        raise NotFound(f"there is no site named {site!r}")
    newest = _newest_good(conn, found.id)
    chosen = newest if not run_id else _run(conn, found.id, site, run_id)
    if chosen is None:
        raise FailedPrecondition(f"site {site!r} has no verified backup to accept yet")
    figures = figures_of(chosen)
    if figures is None:
        raise FailedPrecondition(
            f"run {chosen.id} is not a verified backup with row counts, so it cannot be accepted"
        )
    baseline = dataclasses.replace(figures, accepted_by=by, accepted_at=now)
    change = ""
    newest_figures = figures_of(newest) if newest is not None else None
    if newest_figures is not None and newest_figures.run_id != baseline.run_id:
        change = judge(baseline, newest_figures, site=site).change
    checked = newest.finished_at if newest is not None else baseline.at
    if found.figures_checked_at is not None:
        checked = max(checked, utc(found.figures_checked_at))
    _store(conn, found.id, baseline, change, checked)
    return FiguresAccepted(baseline.run_id, found.figures_change)


def _store(
    conn: Connection, site_id: int, baseline: Figures, change: str, checked: dt.datetime
) -> None:
    conn.execute(
        update(SITES)
        .where(SITES.c.id == site_id)
        .values(
            figures_baseline_json=orjson.dumps(baseline.to_json()).decode(),
            figures_change=change,
            figures_checked_at=checked,
        )
    )


def _baseline(text: str) -> Figures | None:
    if not text:
        return None
    try:
        return Figures.from_json(orjson.loads(text))
    except (ValueError, KeyError, TypeError):
        return None  # unreadable: the next good backup becomes the baseline


_GOOD = (
    (RUNS.c.kind == "backup") & (RUNS.c.outcome == "succeeded") & (RUNS.c.verification == "passed")
)


def _newest_good(conn: Connection, site_id: int) -> RunRecord | None:
    row = conn.execute(
        select(RUNS)
        .where(RUNS.c.site_id == site_id, _GOOD)
        .order_by(RUNS.c.finished_at.desc())
        .limit(1)
    ).first()
    return None if row is None else _record(row)


def _run(conn: Connection, site_id: int, site: str, run_id: str) -> RunRecord:
    row = conn.execute(
        select(RUNS).where(RUNS.c.id == run_id[:64], RUNS.c.site_id == site_id)
    ).first()
    if row is None:
        raise NotFound(f"site {site!r} has no run {run_id[:64]!r}")
    return _record(row)


def _record(r: Any) -> RunRecord:
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
    )
