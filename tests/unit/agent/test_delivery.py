"""Delivering one report at once, outside the loop: sent and forgotten, or kept for later."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.delivery import deliver_now
from agent.outbox import Outbox
from common.errors import InvalidArgument
from tests.support.agentfakes import DOWN, FakeLink, report


def test_an_acknowledged_report_leaves_the_outbox(tmp_path: Path) -> None:
    link = FakeLink()
    with Outbox(tmp_path / "o.sqlite") as box:
        box.put(report(1))
        assert asyncio.run(deliver_now(link, box, report(1))) == "reported to the server"
        assert box.pending() == 0
    assert link.deliveries == ["report-0001"]


def test_a_report_the_server_had_already_is_harmless(tmp_path: Path) -> None:
    """The running agent may have sent it a moment before: the server keeps one copy."""
    link = FakeLink()
    with Outbox(tmp_path / "o.sqlite") as box:
        box.put(report(1))
        asyncio.run(deliver_now(link, box, report(1)))
        box.put(report(1))
        assert asyncio.run(deliver_now(link, box, report(1))) == "reported to the server"
        assert box.pending() == 0
    assert list(link.stored) == ["report-0001"]


def test_a_server_out_of_reach_leaves_the_report_for_the_agent(tmp_path: Path) -> None:
    link = FakeLink()
    link.fault = DOWN
    with Outbox(tmp_path / "o.sqlite") as box:
        box.put(report(1))
        said = asyncio.run(deliver_now(link, box, report(1)))
        assert said.startswith("the report waits in the outbox for `storesafe-agent run`")
        [queued] = box.peek(1)
        assert (queued.report.id, queued.attempts) == ("report-0001", 1)


def test_a_report_refused_for_good_is_set_aside(tmp_path: Path) -> None:
    link = FakeLink()
    link.reject["report-0001"] = InvalidArgument("report.kind is not valid")
    with Outbox(tmp_path / "o.sqlite") as box:
        box.put(report(1))
        said = asyncio.run(deliver_now(link, box, report(1)))
        assert said.startswith("the server refused the report for good")
        assert (box.pending(), box.rejected()) == (0, 1)
