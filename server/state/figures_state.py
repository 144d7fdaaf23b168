"""Where the wrong-database guard keeps its baseline: the SQL steps around server/domain/figures.py.

`check_report` runs inside a report's write, for a newly stored good backup;
`accept` runs as one write of its own. Both keep each site's accepted baseline,
its open change and the finish time of the newest good backup compared on the
site's row (a report older than that one changes nothing: the outbox may
deliver reports late and out of order).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import orjson
from sqlalchemy import Connection, bindparam, select, update

from common.clock import utc
from common.errors import FailedPrecondition, NotFound
from server.domain.figures import Figures, figures_of, judge
from server.domain.records import FiguresAccepted, RunRecord
from server.state.rows import run_record
from server.state.tables import RUNS, SITES


def check_report(conn: Connection, site_id: int, run: RunRecord) -> None:
    """Compare a newly stored good backup with the site's baseline and record the verdict."""
    check_reports(conn, [(site_id, run)])


def check_reports(conn: Connection, stored: Sequence[tuple[int, RunRecord]]) -> None:
    """`check_report` for a batch of newly stored runs: one read and one write in all.

    Runs that are not good backups with figures are passed over; several of one site
    are judged in the order they finished, each against the verdict of the one before.
    """
    good = [(site_id, run, f) for site_id, run in stored if (f := figures_of(run)) is not None]
    if not good:
        return
    ids = sorted({site_id for site_id, _, _ in good})
    rows = conn.execute(_SITE_FIGURES, {"ids": ids}).all()
    sites = {
        r.id: _SiteFigures(r.name, _baseline(r.figures_baseline_json), r.figures_checked_at)
        for r in rows
    }
    changed: dict[int, dict[str, object]] = {}
    for site_id, run, current in sorted(good, key=lambda g: g[1].finished_at):
        site = sites[site_id]
        if site.checked_at is not None and utc(site.checked_at) >= run.finished_at:
            continue
        verdict = judge(site.baseline, current, site=site.name)
        site.baseline, site.checked_at = verdict.baseline, run.finished_at
        changed[site_id] = _values(site_id, verdict.baseline, verdict.change, run.finished_at)
    if changed:
        conn.execute(_STORE, list(changed.values()))


@dataclasses.dataclass
class _SiteFigures:
    name: str
    baseline: Figures | None
    checked_at: dt.datetime | None


_SITE_FIGURES = select(
    SITES.c.id, SITES.c.name, SITES.c.figures_baseline_json, SITES.c.figures_checked_at
).where(SITES.c.id.in_(bindparam("ids", expanding=True)))
_STORE = (
    update(SITES)
    .where(SITES.c.id == bindparam("b_id"))
    .values(
        figures_baseline_json=bindparam("b_baseline"),
        figures_change=bindparam("b_change"),
        figures_checked_at=bindparam("b_checked"),
    )
)


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
    conn.execute(_STORE, [_values(site_id, baseline, change, checked)])


def _values(
    site_id: int, baseline: Figures, change: str, checked: dt.datetime
) -> dict[str, object]:
    return {
        "b_id": site_id,
        "b_baseline": orjson.dumps(baseline.to_json()).decode(),
        "b_change": change,
        "b_checked": checked,
    }


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
    return None if row is None else run_record(row)


def _run(conn: Connection, site_id: int, site: str, run_id: str) -> RunRecord:
    row = conn.execute(
        select(RUNS).where(RUNS.c.id == run_id[:64], RUNS.c.site_id == site_id)
    ).first()
    if row is None:
        raise NotFound(f"site {site!r} has no run {run_id[:64]!r}")
    return run_record(row)
