"""Batched writes (check-ins and reports grouped into one bulk statement) give the same
results as the same writes one by one, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.dialects import sqlite
from storesafe.v1 import agent_pb2, types_pb2

from common.errors import InvalidArgument, PermissionDenied
from server.db.engine import make_engine, migrate
from server.deferred import Deferred
from server.domain.records import CheckInFacts, RunRecord
from server.domain.status import Disk
from server.rpc.convert import agent as convert
from server.services.agents import valid_checkin, valid_run
from server.state import bulk, hot_writes
from server.state.sql import SqlFleetState
from server.state.writer import BatchWriter, run_batch
from server.state.writer_process import batch_writer
from tests.integration.server.test_state import NOW, enroll, make_token

SUMMARY = [
    "last_backup_at",
    "last_backup_ok",
    "last_backup_error",
    "last_backup_size",
    "last_good_backup_at",
    "last_image_sync_at",
    "last_image_sync_ok",
    "last_image_sync_error",
    "last_image_sync_warning",
    "last_validation_errors",
    "last_validation_summary",
]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def _run(kind: str, run_id: str, finished: dt.datetime, ok: bool, size: int) -> RunRecord:
    details: dict[str, Any] = {}
    if kind == "backup":
        details = {"backup": {"method": "gbak"}}
        if size:
            details["backup"]["size_compressed"] = str(size)
    elif kind == "validation":
        details = {"validation": {"errors": 0 if ok else 3, "summary": f"v {run_id}"}}
    return RunRecord(
        id=run_id,
        kind=kind,
        started_at=finished - dt.timedelta(minutes=1),
        finished_at=finished,
        outcome="succeeded" if ok else "failed",
        verification=("passed" if ok else "failed") if kind == "backup" else "",
        error_class="" if ok else "x.y",
        error_message="" if ok else f"failed {run_id}",
        trigger="schedule",
        details=details,
    )


def _random_runs(rng: random.Random, prefix: str, n: int) -> list[RunRecord]:
    out = []
    for i in range(n):
        kind = rng.choice(["backup", "backup", "image-sync", "validation", "upload"])
        # few distinct times, so ties between runs happen often
        finished = NOW + dt.timedelta(hours=rng.randrange(6))
        size = 1000 + i if rng.random() < 0.5 else 0  # 0: the report carries no size
        out.append(_run(kind, f"{prefix}-{i}", finished, rng.random() < 0.6, size))
    return out


def _summary(state: SqlFleetState, site: str) -> dict[str, Any]:
    row = asyncio.run(state.get_site(site))
    return {k: getattr(row, k) for k in SUMMARY}


def test_grouped_reports_equal_one_by_one(engine: Engine) -> None:
    """run_many over a mixed group leaves the same rows and answers as calling each op."""
    state = SqlFleetState(engine, BatchWriter(engine))
    try:

        async def setup() -> tuple[int, int]:
            a, _ = await enroll(state, "bulk-a", await make_token(state, "bulk-a"), "ba")
            b, _ = await enroll(state, "bulk-b", await make_token(state, "bulk-b"), "bb")
            return a, b

        site_a, site_b = asyncio.run(setup())
        for seed in range(5):
            rng = random.Random(seed)
            runs = _random_runs(rng, f"s{seed}", 60)
            runs += runs[:5]  # replays within the same group
            later = NOW + dt.timedelta(minutes=1)
            one = [hot_writes.Report(site_a, r, later) for r in runs]
            grouped = [
                hot_writes.Report(site_b, dataclasses.replace(r, id=r.id + "b"), later)
                for r in runs
            ]
            with engine.begin() as conn:
                answers_one = [op(conn) for op in one]
            with engine.begin() as conn:
                answers_grouped = grouped[0].run_many(conn, grouped)
            assert answers_one == answers_grouped
            assert answers_one[-5:] == [True] * 5
            assert _summary(state, "bulk-a") == _summary(state, "bulk-b")
    finally:
        state.close()


WHERE = pytest.mark.parametrize("in_process", [True, False], ids=["writer-process", "thread"])


@WHERE
def test_writer_batch_isolates_foreign_ids_and_replays(engine: Engine, in_process: bool) -> None:
    state = SqlFleetState(engine, batch_writer(engine, child=in_process))
    try:

        async def body() -> None:
            site_f, _ = await enroll(state, "iso-f", await make_token(state, "iso-f"), "f1")
            site_g, _ = await enroll(state, "iso-g", await make_token(state, "iso-g"), "g1")
            await state.store_report(
                site_id=site_g, run=_run("backup", "g-0", NOW, True, 5), now=NOW
            )
            calls = [
                state.store_report(
                    site_id=site_f, run=_run("backup", f"f-{i}", NOW, True, 5), now=NOW
                )
                for i in range(200)
            ]
            calls.insert(
                50,
                state.store_report(
                    site_id=site_f, run=_run("backup", "g-0", NOW, True, 5), now=NOW
                ),
            )  # another site's id
            calls.insert(
                120,
                state.store_report(
                    site_id=site_f, run=_run("backup", "f-3", NOW, True, 5), now=NOW
                ),
            )  # a replay in the same batch
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert isinstance(results[50], PermissionDenied)
            rest = [r for i, r in enumerate(results) if i != 50]
            assert rest.count(True) == 1 and rest.count(False) == 200
            assert len(await state.list_runs(site="iso-f", kind="", limit=1000)) == 200
            assert len(await state.list_runs(site="iso-g", kind="", limit=1000)) == 1

        asyncio.run(body())
    finally:
        state.close()


def _report_msg(
    run_id: str, *, finished: bool = True, kind: int = types_pb2.RUN_KIND_BACKUP
) -> Any:
    msg = types_pb2.RunReport(
        id=run_id,
        kind=kind,
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        backup=types_pb2.BackupDetails(method="gbak", size_compressed=7),
    )
    msg.started_at.FromDatetime(NOW - dt.timedelta(minutes=2))
    if finished:
        msg.finished_at.FromDatetime(NOW - dt.timedelta(minutes=1))
    return msg


@WHERE
def test_deferred_writes_are_decoded_by_the_writer(engine: Engine, in_process: bool) -> None:
    """Reports and check-ins handed over undecoded (as the servicer does) are decoded
    and validated where the batch runs; one that cannot be decoded or is invalid fails
    alone with its own error, and the rest of its batch is stored."""
    state = SqlFleetState(engine, batch_writer(engine, child=in_process))
    try:

        async def body() -> None:
            site, _ = await enroll(state, "dfr", await make_token(state, "dfr"), "d1")

            def report(msg: Any) -> Any:
                run = Deferred(valid_run, Deferred(convert.run_input, msg), NOW)
                return state.store_report(site_id=site, run=run, now=NOW)

            calls = [report(_report_msg(f"d-{i}")) for i in range(40)]
            calls.insert(10, report(_report_msg("no-end", finished=False)))
            calls.insert(20, report(_report_msg("no-kind", kind=types_pb2.RUN_KIND_UNSPECIFIED)))
            checkin = agent_pb2.CheckInRequest(agent_version="9.9", hostname="pos-dfr")
            calls.append(
                state.record_checkin(
                    site_id=site,
                    facts=Deferred(valid_checkin, Deferred(convert.checkin_input, checkin)),
                    now=NOW,
                )
            )
            results = await asyncio.gather(*calls, return_exceptions=True)
            assert isinstance(results[10], InvalidArgument)
            assert "started_at and finished_at" in str(results[10])
            assert isinstance(results[20], InvalidArgument)
            assert "report.kind: is missing" in str(results[20])
            rest = [r for i, r in enumerate(results[:-1]) if i not in (10, 20)]
            assert rest == [False] * 40
            runs = await state.list_runs(site="dfr", kind="", limit=100)
            assert sorted(r.id for r in runs) == sorted(f"d-{i}" for i in range(40))
            assert runs[0].details == {"backup": {"method": "gbak", "size_compressed": "7"}}
            row = await state.get_site("dfr")
            assert row.agent_version == "9.9" and row.hostname == "pos-dfr"
            assert row.last_backup_size == 7

        asyncio.run(body())
    finally:
        state.close()


@WHERE
def test_grouped_checkins_keep_order(engine: Engine, in_process: bool) -> None:
    state = SqlFleetState(engine, batch_writer(engine, child=in_process))
    try:

        async def setup() -> int:
            site, _ = await enroll(state, "ck", await make_token(state, "ck"), "c1")
            return site

        site = asyncio.run(setup())

        def facts(i: int, firebird: bool) -> CheckInFacts:
            return CheckInFacts(
                agent_version=f"1.{i}",
                hostname=f"h{i}",
                os="os",
                agent_time=NOW,
                config_revision=i,
                disks=(Disk("data", "C:\\", 100, i),),
                firebird={"oit": str(i)} if firebird else None,
                outbox_pending=i,
            )

        ops = [
            hot_writes.CheckIn(site, facts(i, i % 7 == 0), NOW + dt.timedelta(seconds=i))
            for i in range(30)
        ]
        assert all(exc is None for _result, exc in run_batch(engine.begin, ops))
        row = asyncio.run(state.get_site("ck"))
        assert row.agent_version == "1.29" and row.outbox_pending == 29
        assert row.firebird == {"oit": "28"}

        async def many() -> None:
            await asyncio.gather(
                *(
                    state.record_checkin(site_id=site, facts=facts(i, i % 2 == 0), now=NOW)
                    for i in range(100)
                )
            )

        asyncio.run(many())
        row = asyncio.run(state.get_site("ck"))
        assert row.agent_version == "1.99" and row.config_revision_applied == 99
        assert row.firebird == {"oit": "98"} and row.disks == (Disk("data", "C:\\", 100, 99),)
    finally:
        state.close()


def test_bulk_sends_sqlite_datetimes_as_the_text_sqlalchemy_stores() -> None:
    """Rows written by the bulk path and by SQLAlchemy compare and sort as one."""
    stored_as = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert stored_as is not None
    for value in (NOW, NOW.replace(microsecond=0), dt.datetime(999, 1, 2, 3, 4, 5, 6)):
        assert bulk.sqlite_time(value) == stored_as(value)
    east = dt.timezone(dt.timedelta(hours=3))
    assert bulk.sqlite_time(NOW.astimezone(east)) == stored_as(NOW)
