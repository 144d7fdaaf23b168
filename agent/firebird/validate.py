"""Online validation of the live database (2.5.4+ `svc.validate`) and the job that runs it.

A damaged data page backs up and restores "successfully" with rows silently
missing (notes, must-know 2); only validation sees it, so the agent runs this
on the live database on its own schedule. It takes short table locks and
never stops the shop program.
"""

from __future__ import annotations

import logging
import re

from agent.domain.reports import RunKind, ValidationDetails
from agent.firebird.outcome import JobOutcome
from common.clock import Clock
from common.firebird.connection import FirebirdTarget, require_ascii, services
from common.firebird.errors import FirebirdJobError, LiveValidationErrors, translate

log = logging.getLogger(__name__)

_ERRORS = re.compile(r"(\d+)\s+errors?\s+found", re.IGNORECASE)
_WARNINGS = re.compile(r"(\d+)\s+warnings?\s+found", re.IGNORECASE)
_TIME = re.compile(r"^\d\d:\d\d:\d\d\.\d+\s+")
LOCK_TIMEOUT_SECONDS = 10
SUMMARY_LINES = 5


def parse_validation(lines: list[str]) -> ValidationDetails:
    """Count errors and warnings in `svc.validate` output and keep the telling lines.

    Counts come from the "N ERRORS found" / "N warnings found" summaries; bare
    "Error:" lines count only when no summary did. A table whose lock could not
    be taken in time was not checked: that is a warning.
    """
    summarised_errors = warnings = error_lines = 0
    telling: list[str] = []
    for raw in lines:
        line = _TIME.sub("", raw.strip())
        n_errors = sum(int(n) for n in _ERRORS.findall(line))
        n_warnings = sum(int(n) for n in _WARNINGS.findall(line))
        lock_failed = "lock" in line.lower() and "fail" in line.lower()
        summarised_errors += n_errors
        warnings += n_warnings + (1 if lock_failed and not n_warnings else 0)
        error_lines += 1 if line.startswith("Error") else 0
        if n_errors or n_warnings or lock_failed or line.startswith("Error"):
            telling.append(line)
    errors = summarised_errors or error_lines
    if not errors and not warnings:
        summary = "Online validation found no errors."
    else:
        summary = f"Online validation found {errors} errors and {warnings} warnings: " + " | ".join(
            telling[:SUMMARY_LINES]
        )
    return ValidationDetails(errors=errors, warnings=warnings, summary=summary)


def validate_live(target: FirebirdTarget) -> ValidationDetails:
    """Run online validation of the live database and parse what it reports."""
    require_ascii(target.database, what="database")
    with services(target, what="online validation") as svc:
        try:
            svc.validate(target.database, lock_timeout=LOCK_TIMEOUT_SECONDS)
            lines = [str(line) for line in svc]
        except Exception as exc:
            raise translate(exc, what="online validation") from exc
    return parse_validation(lines)


def run_validation_job(target: FirebirdTarget, *, clock: Clock) -> JobOutcome:
    """Online validation of the live database; errors found make the run fail."""
    started = clock.now()
    details = ValidationDetails()
    error: FirebirdJobError | None = None
    try:
        details = validate_live(target)
        if details.errors:
            error = LiveValidationErrors(
                f"Firebird found {details.errors} errors in the live database; "
                "backups may silently miss data until it is repaired."
            )
    except FirebirdJobError as exc:
        error = exc
        details = ValidationDetails(summary=exc.message)
    except Exception as exc:
        log.exception("validation job failed unexpectedly")
        error = FirebirdJobError(f"The validation job failed unexpectedly: {exc}.")
    return JobOutcome(
        kind=RunKind.VALIDATION,
        started_at=started,
        finished_at=clock.now(),
        details=details,
        error_class=error.error_class if error else "",
        error_message=error.message if error else "",
    )
