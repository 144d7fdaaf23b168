"""Delivering one report at once from outside the agent loop (a local `backup-now`).

The report is in the outbox before anything is sent, so this is only a faster
path, never the only one: a report that cannot be sent now stays queued for
`storesafe-agent run`. A running agent may deliver the same report at the same
moment; the server stores reports by id, so a double send is harmless, and the
outbox's SQLite transactions keep two processes from corrupting it.
"""

from __future__ import annotations

import logging
from typing import Protocol

from agent.domain.reports import RunReport
from agent.outbox import Outbox
from common.errors import InvalidArgument, ResourceExhausted, StoreSafeError

log = logging.getLogger(__name__)


class ReportLink(Protocol):
    """What delivery needs from the server connection (agent.transport.ServerLink)."""

    async def report_run(self, report: RunReport) -> bool: ...


async def deliver_now(link: ReportLink, outbox: Outbox, report: RunReport) -> str:
    """Send `report`, forget it once acknowledged; return one sentence on what happened."""
    try:
        await link.report_run(report)
    except (InvalidArgument, ResourceExhausted) as exc:
        outbox.reject(report.id, str(exc))
        return f"the server refused the report for good ({exc}); it is kept, set aside"
    except StoreSafeError as exc:
        outbox.record_failure(report.id, str(exc))
        return f"the report waits in the outbox for `storesafe-agent run` to deliver ({exc})"
    outbox.remove(report.id)
    return "reported to the server"
