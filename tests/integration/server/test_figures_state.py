"""The wrong-database guard in the state: baselines kept, changes opened and accepted
(FleetState.store_report and accept_figures), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from common.errors import FailedPrecondition, NotFound
from server.db.engine import make_engine, migrate
from server.domain.records import RunRecord
from server.state.sql import SqlFleetState
from server.state.writer import BatchWriter
from tests.integration.server.test_state import NOW, enroll, make_token

SHOP = {"ACCOUNTS": 10_000, "CUSTOMERS": 2_000, "RATES": 12}
DEMO = {"ACCOUNTS": 40, "CUSTOMERS": 3, "RATES": 12}


@pytest.fixture
def state(db_url: str) -> Iterator[SqlFleetState]:
    engine = make_engine(db_url)
    migrate(engine)
    st = SqlFleetState(engine, BatchWriter(engine))
    try:
        yield st
    finally:
        st.close()


def good(
    run_id: str, hours: float, counts: dict[str, int], database: str = "/srv/shop.fdb", **kw: Any
) -> RunRecord:
    finished = NOW + dt.timedelta(hours=hours)
    return RunRecord(
        id=run_id,
        kind="backup",
        started_at=finished - dt.timedelta(minutes=5),
        finished_at=finished,
        outcome=kw.get("outcome", "succeeded"),
        verification=kw.get("verification", "passed"),
        error_class="",
        error_message="",
        trigger="schedule",
        details={
            "backup": {"database": database, "table_counts": {k: str(v) for k, v in counts.items()}}
        },
    )


async def new_site(st: SqlFleetState, site: str) -> int:
    site_id, _group = await enroll(st, site, await make_token(st, site), agent_id=f"a-{site}")
    return site_id


async def change(st: SqlFleetState, site: str) -> str:
    return (await st.get_site(site)).figures_change


def test_another_database_opens_a_change_that_stays_until_accepted(state: SqlFleetState) -> None:
    async def body() -> None:
        sid = await new_site(state, "shop-f")
        await state.store_report(site_id=sid, run=good("r1", 1, SHOP), now=NOW)
        assert await change(state, "shop-f") == ""
        await state.store_report(site_id=sid, run=good("r2", 25, DEMO, "/srv/demo.fdb"), now=NOW)
        opened = await change(state, "shop-f")
        assert opened.startswith("backup r2 from database /srv/demo.fdb (was /srv/shop.fdb)")
        assert "ACCOUNTS 10000 -> 40 rows" in opened
        # the next backup of the same wrong database is compared with r1, not r2
        await state.store_report(site_id=sid, run=good("r3", 49, DEMO, "/srv/demo.fdb"), now=NOW)
        assert (await change(state, "shop-f")).startswith("backup r3 ")
        # a late report of an older good backup changes nothing
        await state.store_report(site_id=sid, run=good("r0", 0, SHOP), now=NOW)
        assert (await change(state, "shop-f")).startswith("backup r3 ")

        done = await state.accept_figures(site="shop-f", run_id="", by="alice", now=NOW)
        assert (done.run_id, done.cleared.startswith("backup r3 ")) == ("r3", True)
        assert await change(state, "shop-f") == ""
        # later backups are compared with the accepted one
        await state.store_report(site_id=sid, run=good("r4", 73, DEMO, "/srv/demo.fdb"), now=NOW)
        assert await change(state, "shop-f") == ""
        await state.store_report(site_id=sid, run=good("r5", 97, SHOP), now=NOW)
        assert (await change(state, "shop-f")) == ""  # growth is no change

    asyncio.run(body())


def test_accepting_an_older_run_keeps_a_later_change_open(state: SqlFleetState) -> None:
    async def body() -> None:
        sid = await new_site(state, "shop-g")
        for rep in (good("g1", 1, SHOP), good("g2", 2, DEMO), good("g3", 3, SHOP)):
            await state.store_report(site_id=sid, run=rep, now=NOW)
        assert await change(state, "shop-g") == ""  # g3 matches g1 again
        await state.store_report(site_id=sid, run=good("g4", 4, DEMO), now=NOW)
        assert (await change(state, "shop-g")).startswith("backup g4 ")
        await state.accept_figures(site="shop-g", run_id="g2", by="bob", now=NOW)
        assert await change(state, "shop-g") == ""  # g4 is like the accepted g2
        await state.accept_figures(site="shop-g", run_id="g1", by="bob", now=NOW)
        assert (await change(state, "shop-g")).startswith("backup g4 ")

    asyncio.run(body())


def test_accept_refuses_what_cannot_be_a_baseline(state: SqlFleetState) -> None:
    async def body() -> None:
        sid = await new_site(state, "shop-h")
        with pytest.raises(FailedPrecondition, match="no verified backup to accept"):
            await state.accept_figures(site="shop-h", run_id="", by="a", now=NOW)
        failed = good("h1", 1, SHOP, outcome="failed", verification="not-run")
        await state.store_report(site_id=sid, run=failed, now=NOW)
        with pytest.raises(FailedPrecondition, match="run h1 is not a verified backup"):
            await state.accept_figures(site="shop-h", run_id="h1", by="a", now=NOW)
        with pytest.raises(NotFound, match="no run 'nope'"):
            await state.accept_figures(site="shop-h", run_id="nope", by="a", now=NOW)
        with pytest.raises(NotFound, match="no site named"):
            await state.accept_figures(site="shop-none", run_id="", by="a", now=NOW)

    asyncio.run(body())


def test_reports_written_together_are_judged_in_order(state: SqlFleetState) -> None:
    """Reports of one batch (the writer's bulk path) see each other's baselines."""

    async def body() -> None:
        sids = [await new_site(state, f"shop-b{i}") for i in range(4)]
        await asyncio.gather(
            *(state.store_report(site_id=s, run=good(f"b{s}-1", 1, SHOP), now=NOW) for s in sids)
        )
        await asyncio.gather(
            *(state.store_report(site_id=s, run=good(f"b{s}-2", 2, DEMO), now=NOW) for s in sids)
        )
        for i, s in enumerate(sids):
            assert (await change(state, f"shop-b{i}")).startswith(f"backup b{s}-2 ")

    asyncio.run(body())
