"""Firebird's full read-only validation of a restored copy, its verdict read from firebird.log."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from common.firebird.connection import FirebirdTarget, services
from common.firebird.errors import (
    GDS_VALIDATION,
    FirebirdJobError,
    ValidationFailed,
    fdb_message,
    gdscode,
    translate,
)
from common.firebird.findings import Findings, parse_log, parse_summary

log = logging.getLogger(__name__)

LOG_TRIES = 4  # reads of firebird.log for a validation's verdict
LOG_PAUSE_SECONDS = 0.5


def validate_copy(target: FirebirdTarget, database: Path) -> Findings:
    """Firebird's full read-only validation of a database nobody else has open.

    Raises ValidationFailed when Firebird counted errors, quoting what it found;
    returns the findings otherwise. Warnings alone (record versions of
    transactions in flight when the pages were copied, swept or full bits out
    of step on pointer pages) are not damage, so they do not fail the
    verification: they are reported as figures. The counts come from
    firebird.log's "Validation finished" line for this database (see
    common.firebird.findings), the raised summary only when the log has none.
    """
    with services(target, what="validating the restored copy") as svc:
        try:
            result = svc.repair(
                str(database),
                read_only_validation=1,
                validate_database=1,
                validate_record_fragments=1,
            )
        except Exception as exc:
            if gdscode(exc) != GDS_VALIDATION:
                err = translate(exc, what="validation of the restored copy")
                if type(err) is not FirebirdJobError:  # e.g. unreachable, busy: not a verdict
                    raise err from exc
                raise ValidationFailed(
                    f"Validation of the restored copy failed: {err.message}"
                ) from exc
            logged = logged_findings(target, database)
            # a log that calls it clean contradicts the raise: then the summary decides
            if logged is not None and not logged.clean:
                findings = logged
            else:
                findings = parse_summary(fdb_message(exc))
            if findings.errors:
                failed = ValidationFailed(
                    f"Firebird's validation of the restored copy found {findings.describe()}."
                )
                failed.errors, failed.warnings = findings.errors, findings.warnings
                raise failed from exc
            return findings
    if result and str(result).strip():
        raise ValidationFailed(f"Validation of the restored copy reported: {str(result).strip()}")
    return Findings()


def logged_findings(
    target: FirebirdTarget,
    database: Path,
    *,
    tries: int = LOG_TRIES,
    pause: float = LOG_PAUSE_SECONDS,
    read: Callable[[FirebirdTarget], list[str]] | None = None,
) -> Findings | None:
    """This database's last validation verdict in firebird.log (None if none was found).

    The log is read over a connection of its own (the one that ran the validation
    may still be busy with it), and read again a few times while it holds no verdict
    for `database`: a verdict seen missing once made a backup with two warnings a
    false failure (1 in 4 runs under load).
    """
    read = read or _read_log
    for attempt in range(tries):
        try:
            lines = read(target)
        except Exception as exc:  # noqa: BLE001 - the log is a better source, not a required one
            log.info("cannot read firebird.log (%s); trying again", exc)
            lines = []
        found = parse_log(lines, os.path.realpath(database)) or parse_log(lines, str(database))
        if found is not None:
            return found
        if attempt + 1 < tries:
            time.sleep(pause)
    log.warning(
        "firebird.log holds no validation verdict for %s; judging by the summary Firebird "
        "raised instead",
        database,
    )
    return None


def _read_log(target: FirebirdTarget) -> list[str]:
    with services(target, what="reading firebird.log") as svc:
        svc.get_log()
        return [str(line) for line in svc]
