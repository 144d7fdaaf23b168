"""The wrong-database guard: each good backup's figures against the site's accepted baseline.

A site's baseline is the figures (row counts per table, live database size,
database path) of a good backup that was not in doubt: the site's first good
backup, then each later good backup that showed no sharp change, or one a
technician accepted (`storesafe accept-change`). A good backup whose figures
differ sharply from the baseline, whatever database path it came from, opens a
change that keeps the site from `ok` (a warning); later backups are still
compared with the same baseline, so the change stays open until a backup
matches the baseline again or a technician accepts the new figures.

A change is sharp when any of these holds (the thresholds are the constants
below):

- the set of tables differs: a table of the baseline is missing, or a new one
  appears;
- one table lost more than TABLE_DROP_FRACTION of its rows, having had at
  least TABLE_MIN_ROWS;
- all tables together lost more than TOTAL_DROP_FRACTION of their rows, having
  had at least TOTAL_MIN_ROWS;
- the live database file shrank by more than SIZE_DROP_FRACTION, having been at
  least SIZE_MIN_BYTES (Firebird never gives pages back to the file system, so
  a shop's database does not shrink on its own).

Pure: no I/O, no clock, no server imports (it sits on the domain floor beside
server/domain/records.py, see .importlinter); the state layer calls it inside the
report's write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Protocol

TABLE_DROP_FRACTION = 0.5
TABLE_MIN_ROWS = 100
TOTAL_DROP_FRACTION = 0.2
TOTAL_MIN_ROWS = 100
SIZE_DROP_FRACTION = 0.5
SIZE_MIN_BYTES = 16 * 2**20
MAX_NAMED = 3
"""Findings named in the problem text; the rest are counted."""


@dataclasses.dataclass(frozen=True)
class Figures:
    """What a good backup says about the database it came from."""

    run_id: str
    at: dt.datetime
    database: str
    tables: dict[str, int]
    size_bytes: int = 0
    accepted_by: str = ""
    accepted_at: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["at"] = self.at.isoformat()
        out["accepted_at"] = self.accepted_at.isoformat() if self.accepted_at else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figures:
        accepted = data.get("accepted_at")
        return cls(
            run_id=str(data["run_id"]),
            at=dt.datetime.fromisoformat(data["at"]),
            database=str(data.get("database", "")),
            tables={str(k): int(v) for k, v in dict(data.get("tables", {})).items()},
            size_bytes=int(data.get("size_bytes", 0)),
            accepted_by=str(data.get("accepted_by", "")),
            accepted_at=dt.datetime.fromisoformat(accepted) if accepted else None,
        )


@dataclasses.dataclass(frozen=True)
class Judgement:
    """The baseline to keep after a backup, and the open change ("" when none)."""

    baseline: Figures
    change: str


class Run(Protocol):
    """What the rule reads of a stored run (server.domain.records.RunRecord has it)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def good(self) -> bool: ...
    @property
    def finished_at(self) -> dt.datetime: ...
    @property
    def details(self) -> dict[str, Any]: ...


def figures_of(run: Run) -> Figures | None:
    """The figures of a good backup run that carries row counts; None for any other run
    (or for details whose figures are not numbers: nothing to compare)."""
    if run.kind != "backup" or not run.good:
        return None
    backup = run.details.get("backup")
    if not isinstance(backup, dict):
        return None
    counts = backup.get("table_counts")
    if not isinstance(counts, dict) or not counts:
        return None
    health = backup.get("health")
    try:
        tables = {str(k): int(v) for k, v in counts.items()}
        size = int(health.get("size_bytes", 0) or 0) if isinstance(health, dict) else 0
    except (TypeError, ValueError):
        return None
    return Figures(run.id, run.finished_at, str(backup.get("database", "")), tables, size)


def compare(baseline: Figures, current: Figures) -> list[str]:
    """Every sharp change from `baseline` to `current` (empty when there is none)."""
    found: list[str] = []
    gone = sorted(set(baseline.tables) - set(current.tables))
    new = sorted(set(current.tables) - set(baseline.tables))
    if gone:
        found.append(f"tables gone: {_names(gone)}")
    if new:
        found.append(f"new tables: {_names(new)}")
    for table, before in sorted(baseline.tables.items()):
        now = current.tables.get(table)
        if now is not None and before >= TABLE_MIN_ROWS and now < before * TABLE_DROP_FRACTION:
            found.append(f"{table} {before} -> {now} rows")
    total_before, total_now = sum(baseline.tables.values()), sum(current.tables.values())
    if total_before >= TOTAL_MIN_ROWS and total_now < total_before * (1 - TOTAL_DROP_FRACTION):
        found.append(f"all tables {total_before} -> {total_now} rows")
    if (
        baseline.size_bytes >= SIZE_MIN_BYTES
        and current.size_bytes
        and current.size_bytes < baseline.size_bytes * (1 - SIZE_DROP_FRACTION)
    ):
        found.append(f"database size {_mib(baseline.size_bytes)} -> {_mib(current.size_bytes)}")
    return found


def judge(baseline: Figures | None, current: Figures, *, site: str) -> Judgement:
    """The baseline and open change after the good backup `current`."""
    if baseline is None:
        return Judgement(current, "")
    found = compare(baseline, current)
    if not found:
        return Judgement(current, "")
    return Judgement(baseline, change_text(baseline, current, found, site=site))


def change_text(baseline: Figures, current: Figures, found: list[str], *, site: str) -> str:
    """The problem line: what changed, against which backup, and how to accept it."""
    shown = "; ".join(found[:MAX_NAMED])
    if len(found) > MAX_NAMED:
        shown += f"; and {len(found) - MAX_NAMED} more"
    where = ""
    if current.database != baseline.database:
        where = f" from database {current.database} (was {baseline.database})"
    return (
        f"backup {current.run_id}{where} differs sharply from the accepted backup "
        f"{baseline.run_id} of {baseline.at:%Y-%m-%d %H:%M} UTC: {shown}; check "
        f"firebird.database, or accept with 'storesafe accept-change {site}'"
    )


def _names(names: list[str]) -> str:
    out = ", ".join(names[:MAX_NAMED])
    return out + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"
