"""Rows of the state tables as domain records (shared by the state modules)."""

from __future__ import annotations

from typing import Any

import orjson

from common.clock import utc
from server.domain.records import RunRecord


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
