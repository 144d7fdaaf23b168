"""A site's last off-site copy, kept on its row: the newest database snapshot (by its
created_at), the backup run it copies with that run's finish time, and the bytes its
upload runs sent vs the backup's size (server/domain/backups.offsite_figures).

Derived, never accumulated: `refresh` recomputes the facts from the snapshots and runs
tables, so the order in which the commit, the upload runs and the backup run arrive
does not matter. It is called when a database snapshot is committed and when a run
that may change the figures is stored (an upload of the copied backup, the backup run
itself). Each call first locks the site row, so that on PostgreSQL a commit and a
report stored at the same time cannot both miss each other.
"""

from __future__ import annotations

import orjson
from sqlalchemy import Connection, bindparam, select, update

from common.clock import utc
from server.domain import backups
from server.domain.records import RunRecord
from server.state.tables import RUNS, SITES, SNAPSHOTS

_LOCK_SITE = (
    select(SITES.c.last_offsite_backup_run_id)
    .where(SITES.c.id == bindparam("b_site_id"))
    .with_for_update()
)
_NEWEST_COPY = (
    select(SNAPSHOTS.c.created_at, SNAPSHOTS.c.backup_run_id)
    .where(SNAPSHOTS.c.site_id == bindparam("b_site_id"), SNAPSHOTS.c.kind == "database")
    .order_by(SNAPSHOTS.c.created_at.desc(), SNAPSHOTS.c.committed_at.desc())
    .limit(1)
)
_BACKUP_RUN = select(RUNS.c.finished_at, RUNS.c.details_json).where(
    RUNS.c.site_id == bindparam("b_site_id"),
    RUNS.c.id == bindparam("b_run_id"),
    RUNS.c.kind == "backup",
)
_UPLOAD_RUNS = select(RUNS.c.details_json).where(
    RUNS.c.site_id == bindparam("b_site_id"),
    RUNS.c.backup_run_id == bindparam("b_run_id"),
    RUNS.c.kind == "upload",
)
_SET_FACTS = update(SITES).where(SITES.c.id == bindparam("b_site_id"))


def after_report(conn: Connection, site_id: int, run: RunRecord) -> None:
    """A stored run that concerns the site's current off-site copy refreshes its facts."""
    if run.kind == "upload":
        target = backups.backup_run_of(run)
    elif run.kind == "backup":
        target = run.id
    else:
        return
    if target and conn.execute(_LOCK_SITE, {"b_site_id": site_id}).scalar() == target:
        refresh(conn, site_id, locked=True)


def refresh(conn: Connection, site_id: int, *, locked: bool = False) -> None:
    """Recompute the site's last off-site copy from its snapshots and runs."""
    if not locked:
        conn.execute(_LOCK_SITE, {"b_site_id": site_id})
    copy = conn.execute(_NEWEST_COPY, {"b_site_id": site_id}).first()
    if copy is None:
        return
    run_id = copy.backup_run_id
    where = {"b_site_id": site_id, "b_run_id": run_id}
    backup = conn.execute(_BACKUP_RUN, where).first() if run_id else None
    uploads = (
        [orjson.loads(r[0]).get("upload", {}) for r in conn.execute(_UPLOAD_RUNS, where)]
        if run_id
        else []
    )
    backup_details = orjson.loads(backup.details_json).get("backup", {}) if backup else None
    sent, size = backups.offsite_figures(backup_details, uploads)
    conn.execute(
        _SET_FACTS.values(
            last_offsite_at=copy.created_at,
            last_offsite_backup_run_id=run_id,
            last_offsite_backup_at=utc(backup.finished_at) if backup else None,
            last_offsite_bytes_sent=sent,
            last_offsite_backup_size=size,
        ),
        {"b_site_id": site_id},
    )
