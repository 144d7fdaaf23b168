"""The durable outbox: every run report is stored here before anything is sent.

Design (the invariant "nothing an agent has recorded is lost"):

- `put` commits the report to SQLite (WAL, synchronous=FULL) before it
  returns, so a report survives a crash or power cut the moment a job has
  recorded it. Putting the same report id twice keeps the first copy.
- Delivery is oldest first (`peek`), one report at a time, and a report is
  `remove`d only after the server acknowledged it. A crash between the
  server's acknowledgement and the removal means one replay, which the server
  ignores because it stores reports idempotently by id.
- A report the server refuses for good (malformed, too large) would block
  every later one, so `reject` moves it to a side table: kept, counted and
  visible in `status`, but out of the delivery queue.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import sqlite3
from pathlib import Path
from types import TracebackType

from agent.domain.errors import StateDirUnusable
from agent.domain.reports import RunReport
from common.clock import Clock, SystemClock

log = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL,
    queued_at  TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS rejected (
    id          TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    queued_at   TEXT NOT NULL,
    rejected_at TEXT NOT NULL,
    reason      TEXT NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class PendingReport:
    """A report waiting for delivery, with its delivery history."""

    seq: int
    report: RunReport
    queued_at: dt.datetime
    attempts: int
    last_error: str


class Outbox:
    """A SQLite-backed FIFO of run reports; open one per process and state dir."""

    def __init__(self, path: Path, *, clock: Clock | None = None) -> None:
        self.path = path
        self._clock = clock or SystemClock()
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.Error as exc:
            raise StateDirUnusable(f"cannot open the outbox {path} ({exc})") from exc

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > _SCHEMA_VERSION:
            raise StateDirUnusable(
                f"the outbox {self.path} was written by a newer agent (schema {version})"
            )
        if version < _SCHEMA_VERSION:
            # IMMEDIATE: take the write lock first, so a concurrent opener waits, never fails.
            self._db.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={_SCHEMA_VERSION};COMMIT;"
            )

    def put(self, report: RunReport) -> bool:
        """Store `report` durably; False when a report with this id is queued already."""
        body = json.dumps(report.to_json(), separators=(",", ":"))
        try:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO pending (id, body, queued_at) VALUES (?, ?, ?)",
                (report.id, body, self._clock.now().isoformat()),
            )
        except sqlite3.Error as exc:
            raise StateDirUnusable(
                f"cannot store a report in the outbox {self.path} ({exc})"
            ) from exc
        return cur.rowcount == 1

    def peek(self, limit: int = 1) -> list[PendingReport]:
        """Up to `limit` reports, oldest first; unreadable rows are moved to `rejected`."""
        rows = self._db.execute(
            "SELECT seq, id, body, queued_at, attempts, last_error FROM pending "
            "ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        out: list[PendingReport] = []
        for seq, report_id, body, queued_at, attempts, last_error in rows:
            try:
                report = RunReport.from_json(json.loads(body))
            except (ValueError, KeyError, TypeError) as exc:
                log.error("outbox: report %s is unreadable and was set aside: %s", report_id, exc)
                self.reject(report_id, f"unreadable in the outbox: {exc}")
                continue
            out.append(
                PendingReport(
                    seq=seq,
                    report=report,
                    queued_at=dt.datetime.fromisoformat(queued_at),
                    attempts=attempts,
                    last_error=last_error,
                )
            )
        return out

    def oldest(self) -> PendingReport | None:
        """The next report to deliver, or None when the outbox is empty."""
        while True:
            got = self.peek(1)
            if got:
                return got[0]
            if self.pending() == 0:
                return None

    def remove(self, report_id: str) -> None:
        """Forget a report the server has acknowledged."""
        self._db.execute("DELETE FROM pending WHERE id = ?", (report_id,))

    def record_failure(self, report_id: str, error: str) -> None:
        """Count a failed delivery attempt (the report stays queued)."""
        self._db.execute(
            "UPDATE pending SET attempts = attempts + 1, last_error = ? WHERE id = ?",
            (error[:500], report_id),
        )

    def reject(self, report_id: str, reason: str) -> None:
        """Move a report the server refuses for good out of the queue, keeping it."""
        now = self._clock.now().isoformat()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO rejected (id, body, queued_at, rejected_at, reason) "
                "SELECT id, body, queued_at, ?, ? FROM pending WHERE id = ?",
                (now, reason[:500], report_id),
            )
            self._db.execute("DELETE FROM pending WHERE id = ?", (report_id,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def pending(self) -> int:
        """How many reports wait for delivery."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM pending").fetchone()
        return int(count)

    def rejected(self) -> int:
        """How many reports the server refused for good."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()
        return int(count)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
