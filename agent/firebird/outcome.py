"""The outcome of one Firebird job: everything the scheduler needs to build a RunReport."""

from __future__ import annotations

import dataclasses
import datetime as dt

from agent.domain.reports import (
    BackupDetails,
    FileChange,
    FileCheckDetails,
    Outcome,
    RunKind,
    RunReport,
    ValidationDetails,
)


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    """Everything a RunReport needs: details, and the earlier backups whose file changed."""

    kind: RunKind
    started_at: dt.datetime
    finished_at: dt.datetime
    details: BackupDetails | ValidationDetails | FileCheckDetails
    error_class: str = ""
    error_message: str = ""
    deleted: tuple[str, ...] = ()
    file_changes: tuple[FileChange, ...] = ()  # earlier backups pruned or found damaged
    report_id: str = ""  # the report's id when fixed beforehand (a backup's manifest names it)

    @property
    def succeeded(self) -> bool:
        return not self.error_class

    def to_report(self, *, trigger: str = "schedule") -> RunReport:
        report = RunReport(
            kind=self.kind,
            started_at=self.started_at,
            finished_at=self.finished_at,
            outcome=Outcome.SUCCEEDED if self.succeeded else Outcome.FAILED,
            details=self.details,
            error_class=self.error_class,
            error_message=self.error_message,
            trigger=trigger,
            file_changes=tuple(FileChange(c.file, c.state, c.reason) for c in self.file_changes),
        )
        return dataclasses.replace(report, id=self.report_id) if self.report_id else report
