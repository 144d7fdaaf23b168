"""The FleetState contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.errors import (
    AlreadyExists,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from server.db.engine import make_engine, migrate
from server.domain import credentials
from server.domain.records import AuditRecord, CheckInFacts, FileChange, RunRecord
from server.domain.status import Disk, StatusPolicy, compute_status
from server.services.fleet import facts_of
from server.state.sql import SqlFleetState
from server.state.writer import BatchWriter

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def state(db_url: str) -> Iterator[SqlFleetState]:
    engine = make_engine(db_url)
    migrate(engine)
    migrate(engine)  # a second upgrade is a no-op
    st = SqlFleetState(engine, BatchWriter(engine))
    try:
        yield st
    finally:
        st.close()


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(fn())  # type: ignore[arg-type]


async def make_token(
    st: SqlFleetState, site: str, *, expires: dt.datetime | None = None, group: str = ""
) -> tuple[str, str]:
    minted = credentials.mint(credentials.ENROLLMENT)
    await st.create_enrollment_token(
        token_id=minted.id,
        secret_hash=minted.secret_hash,
        site=site,
        group=group,
        created_by="admin",
        now=NOW,
        expires_at=expires or NOW + dt.timedelta(hours=1),
    )
    return credentials.parse(minted.text, credentials.ENROLLMENT, "t")


async def enroll(
    st: SqlFleetState,
    site: str,
    token: tuple[str, str],
    agent_id: str = "a1",
    now: dt.datetime = NOW,
) -> tuple[int, str]:
    return await st.enroll(
        token_id=token[0],
        presented_hash=token[1],
        site=site,
        agent_id=agent_id,
        agent_secret_hash="h" * 64,
        hostname="pc",
        now=now,
    )


def backup(run_id: str, finished: dt.datetime, *, ok: bool = True) -> RunRecord:
    return RunRecord(
        id=run_id,
        kind="backup",
        started_at=finished - dt.timedelta(minutes=5),
        finished_at=finished,
        outcome="succeeded" if ok else "failed",
        verification="passed" if ok else "not-run",
        error_class="" if ok else "disk.full",
        error_message="" if ok else "disk full",
        trigger="schedule",
        details={"backup": {"method": "gbak", "size_compressed": "2048"}},
    )


def test_token_creates_site_and_enrolls_once(state: SqlFleetState) -> None:
    async def body() -> None:
        tok = await make_token(state, "shop-a", group="east")
        site = await state.get_site("shop-a")
        assert site.enrolled_at is None and site.group == "east"
        site_id, group = await enroll(state, "shop-a", tok)
        assert (site_id, group) == (site.id, "east")
        with pytest.raises(Unauthenticated, match="already used"):
            await enroll(state, "shop-a", tok, agent_id="a2")
        cred = await state.agent_credential("a1")
        assert cred == ("h" * 64, site_id, "shop-a", "east")

    run(body)


def test_bad_expired_and_foreign_tokens(state: SqlFleetState) -> None:
    async def body() -> None:
        tok = await make_token(state, "shop-b")
        with pytest.raises(Unauthenticated, match="not valid"):
            await enroll(state, "shop-b", (tok[0], "0" * 64))
        with pytest.raises(Unauthenticated, match="not valid"):
            await enroll(state, "shop-b", ("nosuchid", tok[1]))
        with pytest.raises(PermissionDenied, match="made for site 'shop-b'"):
            await enroll(state, "shop-x", tok)
        old = await make_token(state, "shop-b", expires=NOW - dt.timedelta(seconds=1))
        with pytest.raises(Unauthenticated, match="expired"):
            await enroll(state, "shop-b", old)

    run(body)


def test_concurrent_use_of_one_token_enrolls_once(state: SqlFleetState) -> None:
    async def body() -> None:
        tok = await make_token(state, "shop-c")
        results = await asyncio.gather(
            *(enroll(state, "shop-c", tok, agent_id=f"c{i}") for i in range(5)),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert await state.active_agents((await state.get_site("shop-c")).id) == 1

    run(body)


def test_reenrollment_revokes_the_previous_agent(state: SqlFleetState) -> None:
    async def body() -> None:
        await enroll(state, "shop-d", await make_token(state, "shop-d"), agent_id="d1")
        await enroll(state, "shop-d", await make_token(state, "shop-d"), agent_id="d2")
        assert await state.agent_credential("d1") is None
        assert await state.agent_credential("d2") is not None
        assert await state.revoke_agents(site="shop-d", now=NOW) == 1
        assert await state.agent_credential("d2") is None
        with pytest.raises(NotFound):
            await state.revoke_agents(site="nope", now=NOW)

    run(body)


def test_checkin_records_facts(state: SqlFleetState) -> None:
    async def body() -> None:
        site_id, _ = await enroll(state, "shop-e", await make_token(state, "shop-e"))
        later = NOW + dt.timedelta(minutes=3)
        facts = CheckInFacts(
            agent_version="1.2.3",
            hostname="pc-e",
            os="Windows 10",
            config_revision=4,
            agent_time=later + dt.timedelta(seconds=30),
            outbox_pending=2,
            disks=(Disk("backup", "C:\\Backups", 100, 40),),
            firebird={"oit": 5, "oat": 9},
        )
        await state.record_checkin(site_id=site_id, facts=facts, now=later)
        row = await state.get_site("shop-e")
        assert row.last_seen_at == later
        assert (row.agent_version, row.hostname, row.os) == ("1.2.3", "pc-e", "Windows 10")
        assert row.clock_skew_seconds == pytest.approx(30)
        assert row.config_revision_applied == 4 and row.outbox_pending == 2
        assert row.disks == (Disk("backup", "C:\\Backups", 100, 40),)
        assert row.health is not None and row.health.oat == 9

    run(body)


def test_reports_are_idempotent_and_own_site_only(state: SqlFleetState) -> None:
    async def body() -> None:
        site_f, _ = await enroll(state, "shop-f", await make_token(state, "shop-f"), "f1")
        site_g, _ = await enroll(state, "shop-g", await make_token(state, "shop-g"), "g1")
        rec = backup("r-1", NOW)
        assert await state.store_report(site_id=site_f, run=rec, now=NOW) is False
        assert await state.store_report(site_id=site_f, run=rec, now=NOW) is True
        with pytest.raises(PermissionDenied):
            await state.store_report(site_id=site_g, run=rec, now=NOW)
        runs = await state.list_runs(site="shop-f", kind="", limit=10)
        assert [r.id for r in runs] == ["r-1"]
        assert runs[0].details["backup"]["method"] == "gbak"
        assert await state.list_runs(site="shop-g", kind="", limit=10) == []
        row = await state.get_site("shop-f")
        assert row.last_good_backup_at == NOW and row.last_backup_ok is True
        assert row.last_backup_size == 2048

    run(body)


def test_summary_only_moves_forward(state: SqlFleetState) -> None:
    async def body() -> None:
        site_id, _ = await enroll(state, "shop-h", await make_token(state, "shop-h"))
        await state.store_report(site_id=site_id, run=backup("new", NOW), now=NOW)
        old_fail = backup("old", NOW - dt.timedelta(days=1), ok=False)
        await state.store_report(site_id=site_id, run=old_fail, now=NOW)
        row = await state.get_site("shop-h")
        assert row.last_backup_ok is True and row.last_backup_at == NOW
        fail = backup("newer", NOW + dt.timedelta(hours=1), ok=False)
        await state.store_report(site_id=site_id, run=fail, now=NOW)
        row = await state.get_site("shop-h")
        assert row.last_backup_ok is False and row.last_backup_error == "disk full"
        assert row.last_good_backup_at == NOW
        runs = await state.list_runs(site="shop-h", kind="backup", limit=2)
        assert [r.id for r in runs] == ["newer", "new"]

    run(body)


def test_list_sites_filters_by_group_and_audit(state: SqlFleetState) -> None:
    async def body() -> None:
        await make_token(state, "b-site", group="west")
        await make_token(state, "a-site", group="east")
        assert [s.name for s in await state.list_sites()] == ["a-site", "b-site"]
        assert [s.name for s in await state.list_sites(group="west")] == ["b-site"]
        with pytest.raises(NotFound):
            await state.get_site("zzz")
        for i in range(3):
            await state.audit(AuditRecord(NOW, "admin", f"act{i}", "t"))
        assert [a.action for a in await state.list_audit(limit=2)] == ["act2", "act1"]

    run(body)


def test_many_concurrent_writes_batch_and_all_land(state: SqlFleetState) -> None:
    async def body() -> None:
        site_id, _ = await enroll(state, "shop-i", await make_token(state, "shop-i"))
        results = await asyncio.gather(
            *(
                state.store_report(site_id=site_id, run=backup(f"b{i}", NOW), now=NOW)
                for i in range(300)
            )
        )
        assert results == [False] * 300
        assert len(await state.list_runs(site="shop-i", kind="", limit=1000)) == 300

    run(body)


def test_every_write_to_a_site_moves_its_change_time(state: SqlFleetState) -> None:
    from server.state.config_state import SqlConfigState

    async def changed_after(write: Callable[[], Awaitable[Any]]) -> set[str]:
        before = dt.datetime.now(dt.UTC)
        await write()
        return {r.name for r in await state.sites_changed_since(before)}

    async def body() -> None:
        assert {r.name for r in await state.sites_changed_since(None)} == set()
        tok = await make_token(state, "ch-a")
        await make_token(state, "ch-b")
        assert {r.name for r in await state.sites_changed_since(None)} == {"ch-a", "ch-b"}
        site_id, _ = await enroll(state, "ch-a", tok)
        await asyncio.sleep(0.01)
        facts = CheckInFacts("1", "pc", "os", None, 0, (), None, 0)
        assert await changed_after(
            lambda: state.record_checkin(site_id=site_id, facts=facts, now=NOW)
        ) == {"ch-a"}
        assert await changed_after(
            lambda: state.store_report(site_id=site_id, run=backup("x1", NOW), now=NOW)
        ) == {"ch-a"}
        config = SqlConfigState(state)
        assert await changed_after(
            lambda: config.record_ack(site_id=site_id, revision=3, applied=False, error="no")
        ) == {"ch-a"}
        assert await changed_after(lambda: make_token(state, "ch-b", group="g2")) == {"ch-b"}

    run(body)


def test_preloaded_credentials_need_no_read_per_agent_and_exclude_revoked(
    state: SqlFleetState, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.services.auth import Authenticator

    async def body() -> None:
        minted = {}
        for site in ("pre-a", "pre-b"):
            token = await make_token(state, site)
            cred = credentials.mint(credentials.AGENT)
            await state.enroll(
                token_id=token[0],
                presented_hash=token[1],
                site=site,
                agent_id=cred.id,
                agent_secret_hash=cred.secret_hash,
                hostname="pc",
                now=NOW,
            )
            minted[site] = cred
        await state.revoke_agents(site="pre-b", now=NOW)
        auth = Authenticator(state)
        assert await auth.preload() == 1

        async def no_read(agent_id: str) -> None:
            raise AssertionError(f"read the credential of {agent_id} from the database")

        monkeypatch.setattr(state, "agent_credential", no_read)
        who = await auth.agent(minted["pre-a"].text)
        assert (who.site, who.agent_id) == ("pre-a", minted["pre-a"].id)
        with pytest.raises(AssertionError, match="read the credential"):
            await auth.agent(minted["pre-b"].text)  # revoked: not cached, so it is looked up

    asyncio.run(body())


async def make_admin(st: SqlFleetState, name: str) -> str:
    minted = credentials.mint(credentials.ADMIN)
    await st.create_admin_token(
        token_id=minted.id, name=name, secret_hash=minted.secret_hash, created_by="t", now=NOW
    )
    return minted.id


def test_admin_token_names_are_unique_among_active_tokens_even_under_a_race(
    state: SqlFleetState, db_url: str
) -> None:
    replica = make_engine(db_url)
    other = SqlFleetState(replica, BatchWriter(replica))  # another replica, same database

    async def body() -> None:
        first = await make_admin(state, "alice")
        with pytest.raises(AlreadyExists, match="'alice' exists already"):
            await make_admin(other, "alice")
        results = await asyncio.gather(
            make_admin(state, "bob"), make_admin(other, "bob"), return_exceptions=True
        )
        assert sorted(type(r).__name__ for r in results) == ["AlreadyExists", "str"]
        await make_admin(state, "carol")
        revoked = await state.revoke_admin_token(name="alice", revoked_by="carol", now=NOW)
        assert (revoked.id, revoked.active, revoked.revoked_by) == (first, False, "carol")
        await make_admin(other, "alice")  # the name is free again
        listed = await state.list_admin_tokens()
        assert [(t.name, t.active) for t in listed].count(("alice", True)) == 1
        assert await state.admin_credential(first) is None

    try:
        run(body)
    finally:
        other.close()


def test_the_last_active_admin_token_is_never_revoked_even_under_a_race(
    state: SqlFleetState, db_url: str
) -> None:
    replica = make_engine(db_url)
    other = SqlFleetState(replica, BatchWriter(replica))

    async def body() -> None:
        await make_admin(state, "a")
        await make_admin(state, "b")
        with pytest.raises(NotFound):
            await state.revoke_admin_token(name="nobody", revoked_by="t", now=NOW)
        results = await asyncio.gather(
            state.revoke_admin_token(name="a", revoked_by="b", now=NOW),
            other.revoke_admin_token(name="b", revoked_by="a", now=NOW),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1 and isinstance(failed[0], FailedPrecondition), results
        left = [t.name for t in await state.list_admin_tokens() if t.active]
        assert len(left) == 1
        with pytest.raises(FailedPrecondition, match="last active admin token"):
            await other.revoke_admin_token(name=left[0], revoked_by="t", now=NOW)

    try:
        run(body)
    finally:
        other.close()


def test_revoking_a_site_marks_it_until_an_agent_enrolls_again(state: SqlFleetState) -> None:
    async def body() -> None:
        await enroll(state, "rv-a", await make_token(state, "rv-a"), agent_id="ra1")
        assert (await state.get_site("rv-a")).agent_revoked_at is None
        later = NOW + dt.timedelta(minutes=5)
        assert await state.revoke_agents(site="rv-a", now=later) == 1
        assert (await state.get_site("rv-a")).agent_revoked_at == later
        assert await state.revocations_since(NOW) == [("rv-a", None)]
        assert await state.revocations_since(later + dt.timedelta(seconds=1)) == []
        await enroll(state, "rv-a", await make_token(state, "rv-a"), agent_id="ra2")
        assert (await state.get_site("rv-a")).agent_revoked_at is None
        assert await state.revocations_since(NOW) == [("rv-a", "ra2")]

    run(body)


async def enrolled_agent(st: SqlFleetState, site: str) -> credentials.Minted:
    token = await make_token(st, site)
    cred = credentials.mint(credentials.AGENT)
    await st.enroll(
        token_id=token[0],
        presented_hash=token[1],
        site=site,
        agent_id=cred.id,
        agent_secret_hash=cred.secret_hash,
        hostname="pc",
        now=NOW,
    )
    return cred


def test_a_credential_read_overtaken_by_a_revocation_is_not_cached(
    state: SqlFleetState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notice of a revocation arrives while a cache miss is reading the credential
    (the read saw it still active): the answer is read again, not cached for minutes."""
    from server.services.auth import Authenticator

    async def body() -> None:
        cred = await enrolled_agent(state, "race-a")
        auth = Authenticator(state)
        real = state.agent_credential
        reads = 0

        async def overtaken(agent_id: str) -> Any:
            nonlocal reads
            reads += 1
            found = await real(agent_id)
            if reads == 1:  # revoked (and its notice heard) just after this read
                await state.revoke_agents(site="race-a", now=NOW)
                auth.forget_site("race-a")
            return found

        monkeypatch.setattr(state, "agent_credential", overtaken)
        with pytest.raises(Unauthenticated, match="revoked"):
            await auth.agent(cred.text)
        assert reads == 2

    run(body)


def test_a_lost_revocation_notice_is_caught_up_by_the_poll(
    state: SqlFleetState, tmp_path: Path
) -> None:
    """Another replica revoked (its notice never arrived): the feed's poll finds the
    revocation in the database, ends the stream and drops the cached credential."""
    from server.services.auth import Authenticator
    from server.services.push import ConfigHub
    from server.services.revocation import Revocations
    from server.services.secretbox import SecretBox
    from server.state.config_state import SqlConfigState
    from tests.support.clock import FakeClock

    async def body() -> None:
        cred = await enrolled_agent(state, "lost-a")
        kept = await enrolled_agent(state, "lost-b")
        clock = FakeClock(NOW)
        hub = ConfigHub(SqlConfigState(state), SecretBox.for_data_dir(tmp_path, create=True), clock)
        auth = Authenticator(state)
        revocations = Revocations(state, auth, hub, clock)
        who = await auth.agent(cred.text)
        sub = hub.subscribe(who.site_id, who.site, who.group, 0, who.agent_id)
        other = await auth.agent(kept.text)
        sub_b = hub.subscribe(other.site_id, other.site, other.group, 0, other.agent_id)
        clock.advance(dt.timedelta(seconds=30))
        await state.revoke_agents(site="lost-a", now=clock.now())  # no notice here
        await revocations.catch_up()
        assert sub.revoked and not sub_b.revoked
        with pytest.raises(Unauthenticated, match="revoked"):
            await anext(hub.directives(sub))
        with pytest.raises(Unauthenticated):
            await auth.agent(cred.text)
        assert (await auth.agent(kept.text)).site == "lost-b"


def backup_file(run_id: str, finished: dt.datetime, file: str, **changes: Any) -> RunRecord:
    rec = backup(run_id, finished)
    details = {"backup": {**rec.details["backup"], "file": f"C:\\Backups\\{file}"}}
    return dataclasses.replace(rec, details=details, **changes)


def test_file_changes_mark_runs_and_a_damaged_newest_good_backup(state: SqlFleetState) -> None:
    async def body() -> None:
        site_id, _ = await enroll(state, "shop-r", await make_token(state, "shop-r"))
        day = dt.timedelta(days=1)
        old = backup_file("r1", NOW - 2 * day, "a.fbk.zst")
        mid = backup_file("r2", NOW - day, "b.fbk.zst")
        pruning = backup_file(
            "r3", NOW, "c.fbk.zst", file_changes=(FileChange("a.fbk.zst", "pruned", "old"),)
        )
        # stored together: the writer's grouped path applies the changes too
        await asyncio.gather(
            *(state.store_report(site_id=site_id, run=r, now=NOW) for r in (old, mid))
        )
        await state.store_report(site_id=site_id, run=pruning, now=NOW)
        states = {
            r.id: r.file_state for r in await state.list_runs(site="shop-r", kind="", limit=9)
        }
        assert states == {"r1": "pruned", "r2": "kept", "r3": "kept"}
        assert (await state.get_site("shop-r")).damaged_backup_at is None

        check = RunRecord(
            id="fc1",
            kind="file-check",
            started_at=NOW + dt.timedelta(hours=1),
            finished_at=NOW + dt.timedelta(hours=1),
            outcome="failed",
            verification="",
            error_class="backup.corrupt",
            error_message="1 kept backup(s) damaged",
            trigger="schedule",
            details={"file_check": {"files_checked": 2, "files_damaged": 1}},
            file_changes=(FileChange("c.fbk.zst", "damaged", "no longer matches its checksum"),),
        )
        assert await state.store_report(site_id=site_id, run=check, now=NOW) is False
        runs = {r.id: r for r in await state.list_runs(site="shop-r", kind="", limit=9)}
        assert runs["r3"].file_state == "damaged" and runs["fc1"].file_state == ""
        row = await state.get_site("shop-r")
        assert (row.damaged_backup_at, row.damaged_backup_file) == (NOW, "c.fbk.zst")
        verdict = compute_status(facts_of(row), StatusPolicy(), NOW + dt.timedelta(hours=1))
        assert any(
            p.startswith("newest good backup c.fbk.zst is damaged") for p in verdict.problems
        )
        # an older damaged backup does not move the mark back
        older = dataclasses.replace(
            check, id="fc2", file_changes=(FileChange("b.fbk.zst", "damaged", "x"),)
        )
        await state.store_report(site_id=site_id, run=older, now=NOW)
        row = await state.get_site("shop-r")
        assert (row.damaged_backup_at, row.damaged_backup_file) == (NOW, "c.fbk.zst")

    run(body)
