"""The off-site store's retention and garbage collection end to end: snapshots committed
by the real agent RPCs to a real server (SQLite and PostgreSQL, its filesystem store, and
moto's S3), maintenance run as `store-gc` runs it beside the server, with a test clock
that stands hours ahead of the server's."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import Engine, insert, select
from storesafe.v1 import agent_pb2, agent_pb2_grpc
from typer.testing import CliRunner

from cli.main import app as admin_cli
from common.clock import SystemClock
from common.vault.keyfile import read_key_file
from server.db.engine import make_engine, migrate, sqlite_url
from server.domain import offsite as rules
from server.domain.records import AgentIdentity
from server.domain.store_gc import MaintenanceReport, SiteReport
from server.domain.store_retention import RetentionKeys
from server.main import app as server_cli
from server.services.offsite import ChunkUpload, OffsiteUploads, SnapshotHeader
from server.services.store_gc import StoreMaintenance
from server.state.store_gc_state import SqlStoreGcState
from server.state.store_state import SqlStoreState
from server.state.tables import CHUNKS, SITES
from server.storage import BlobStore, open_store
from tests.conftest import _backends
from tests.support.clock import FakeClock
from tests.support.s3servers import S3Server
from tests.support.sealed import Sealed, SealedSite, mtime_of, new_site, seal_files, upload
from tests.support.server import (
    PG_ENV,
    ServerHandle,
    enroll_agent,
    fresh_pg_database,
    start_server,
)

FILES = {name: random.Random(name).randbytes(2000 + n) for n, name in enumerate("abcdef")}
KEEP_ONE = RetentionKeys(keep_snapshots=1, keep_days=0)
MARGIN = dt.timedelta(hours=24)


def hours(n: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(hours=n)


class Site:
    """A site with a fleet key file registered by `keys create`, enrolled on `server`."""

    def __init__(self, server: ServerHandle, tmp_path: Path) -> None:
        self.server = server
        self.name = f"gc-{uuid.uuid4().hex[:8]}"
        self.key_file = tmp_path / f"{self.name}.key"
        done = CliRunner().invoke(
            admin_cli, ["keys", "create", "--out", str(self.key_file)], env=server.cli_env
        )
        assert done.exit_code == 0, done.output
        self.sealed: SealedSite = new_site(self.name, read_key_file(self.key_file))
        self.credential = enroll_agent(server, self.name)
        self.site_id = 0

    def snapshot(self, names: str, days_ago: float) -> Sealed:
        created = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).replace(microsecond=0)
        return seal_files(self.sealed, {n: FILES[n] for n in names}, created)

    def commit(self, names: str, days_ago: float) -> Sealed:
        snap = self.snapshot(names, days_ago)
        upload(self.server, self.credential, self.sealed, snap)
        return snap


class Gc:
    """Maintenance as `store-gc` runs it: the server's database and store, a test clock."""

    def __init__(self, server: ServerHandle, store_url: str = "") -> None:
        self.engine: Engine = make_engine(server.db_url or sqlite_url(server.data_dir))
        self.state = SqlStoreGcState(self.engine)
        self.store_url = store_url
        self.data_dir = server.data_dir

    def run(
        self, at_hours: float, keys: RetentionKeys = KEEP_ONE, *, crash: str = ""
    ) -> MaintenanceReport:
        async def body() -> MaintenanceReport:
            store = open_store(self.store_url, self.data_dir)
            try:
                gc = StoreMaintenance(
                    self.state,
                    store,
                    FakeClock(hours(at_hours)),
                    lambda s, g: keys,
                    margin=MARGIN,
                    wall_clock=SystemClock(),
                )
                gc.crash_site = crash
                return await gc.run()
            finally:
                await store.close()

        return asyncio.run(body())

    def chunk_rows(self, site: str) -> dict[str, tuple[str, dt.datetime | None]]:
        async def site_id() -> int:
            return {name: sid for sid, name, _ in await self.state.sites()}[site]

        sid = asyncio.run(site_id())
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(CHUNKS.c.chunk_id, CHUNKS.c.state, CHUNKS.c.condemned_at).where(
                    CHUNKS.c.site_id == sid
                )
            )
            return {r.chunk_id: (r.state, r.condemned_at) for r in rows}

    def close(self) -> None:
        self.engine.dispose()


def part(report: MaintenanceReport, site: Site) -> SiteReport:
    """The site's part of a run's report."""
    (found,) = [s for s in report.sites if s.site == site.name]
    return found


def stored(store: BlobStore, keys: list[str]) -> set[str]:
    async def body() -> set[str]:
        found = await store.stat(keys)
        return {k for k, info in found.items() if info is not None}

    return asyncio.run(body())


def only(snap: Sealed, *others: Sealed) -> set[str]:
    """The chunks of `snap` that none of `others` references."""
    rest = set().union(*(o.chunks for o in others))
    return set(snap.chunks) - rest


@pytest.fixture(scope="module", params=_backends())
def gc_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerHandle]:
    """One server per backend for this module; each test uses its own sites and checks
    only their part of each run's report."""
    if request.param == "postgres" and not os.environ.get(PG_ENV):
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the PostgreSQL tests: set {PG_ENV}")
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run and scripts/test)")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(fresh_pg_database()) if request.param == "postgres" else ""
        handle = start_server(tmp_path_factory.mktemp("gc"), db_url=url)
        stack.callback(handle.stop)
        yield handle


def test_forget_condemn_sweep_keeps_what_is_referenced_and_restore_works(
    gc_server: ServerHandle, tmp_path: Path
) -> None:
    site = Site(gc_server, tmp_path)
    s1 = site.commit("ab", days_ago=3)
    s2 = site.commit("bc", days_ago=2)
    s3 = site.commit("cd", days_ago=1)
    gc = Gc(gc_server)
    store = open_store("", gc_server.data_dir)
    db = ["--db", gc_server.db_url] if gc_server.db_url else []
    try:
        # a dry run through the ops command changes nothing
        dry = CliRunner().invoke(
            server_cli,
            ["store-gc", "--data-dir", str(gc_server.data_dir), "--dry-run", "--json", *db],
        )
        assert dry.exit_code == 0, dry.output
        (mine,) = [x for x in json.loads(dry.stdout)["sites"] if x["site"] == site.name]
        assert mine["snapshots_forgotten"] == 0  # the default keys keep all three
        shown = CliRunner().invoke(
            server_cli, ["store-gc", "--data-dir", str(gc_server.data_dir), "--dry-run", *db]
        )
        assert shown.exit_code == 0, shown.output
        assert shown.stdout.startswith("store maintenance (dry run, margin 24 h,")

        first = part(gc.run(1), site)  # s1 and s2 go; their chunks are too young to condemn
        assert (first.snapshots_forgotten, first.chunks_condemned, first.error) == (2, 0, "")
        gone = [rules.snapshot_name(site.name, s.snapshot_id) for s in (s1, s2)]
        gone += [rules.refs_name(site.name, s.snapshot_id) for s in (s1, s2)]
        assert stored(store, gone) == set()

        second = part(gc.run(25), site)  # mark: every chunk only s1 or s2 used
        doomed = only(s1, s3) | only(s2, s3)
        assert (second.chunks_condemned, second.chunks_deleted) == (len(doomed), 0)
        rows = gc.chunk_rows(site.name)
        assert {c for c, (_, condemned) in rows.items() if condemned} == doomed

        # an agent commits a snapshot that uses a condemned chunk (MissingChunks says it is
        # there, so it is not sent again): the commit rescues it in its own transaction
        (a_chunk,) = only(s1, s2, s3) - set(s1.parts)
        s4 = site.commit("ae", days_ago=0)
        assert gc.chunk_rows(site.name)[a_chunk] == ("stored", None)

        third = part(gc.run(50, RetentionKeys(keep_snapshots=2, keep_days=0)), site)
        swept = doomed - set(s4.chunks)
        assert third.error == ""
        assert third.chunks_deleted == len(swept)
        sizes = {**s1.chunks, **s2.chunks}
        assert third.bytes_freed == sum(len(sizes[c]) for c in swept)
        names = {c: rules.chunk_name(site.name, c) for c in (*s1.chunks, *s2.chunks, *s3.chunks)}
        assert stored(store, list(names.values())) == {names[c] for c in names if c not in swept}
        assert set(gc.chunk_rows(site.name)) == set(s3.chunks) | set(s4.chunks)

        # the kept snapshots restore with the real CLI
        for snap, files in ((s3, "cd"), (s4, "ae")):
            out = tmp_path / f"restored-{files}"
            args = ["images", "restore", site.name, "--snapshot", snap.snapshot_id]
            args += ["--to", str(out), "--key", str(site.key_file)]
            result = CliRunner().invoke(admin_cli, args, env=gc_server.cli_env)
            assert result.exit_code == 0, result.output
            found = {p.name: p for p in out.rglob("*") if p.is_file()}
            assert {n: p.read_bytes() for n, p in found.items()} == {n: FILES[n] for n in files}
            assert {n: p.stat().st_mtime_ns for n, p in found.items()} == {
                n: mtime_of(n) for n in files
            }

        last = CliRunner().invoke(
            server_cli,
            ["store-gc", "--data-dir", str(gc_server.data_dir), "--last", "1", "--json", *db],
        )
        assert last.exit_code == 0, last.output
        (recorded,) = json.loads(last.stdout)
        assert recorded["outcome"] == "succeeded" and recorded["dry_run"] is False
        assert recorded["started_at"].endswith("Z")
    finally:
        asyncio.run(store.close())
        gc.close()


def test_store_gc_refuses_bad_input_in_one_sentence(tmp_path: Path) -> None:
    for args, says in (
        ([], "give --data-dir DIR or --db URL"),
        (["--db", f"sqlite:///{tmp_path / 'x.db'}"], "give --data-dir DIR or --store URL"),
        (["--data-dir", str(tmp_path), "--gc-margin-hours", "0.5"], "greater than or equal to 1"),
    ):
        result = CliRunner().invoke(server_cli, ["store-gc", *args])
        assert result.exit_code == 2, result.output
        assert says in result.output


def _stub(server: ServerHandle) -> agent_pb2_grpc.AgentServiceStub:
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    return agent_pb2_grpc.AgentServiceStub(grpc.secure_channel(server.address, creds))


def _put(chunk_id: str, data: bytes) -> agent_pb2.PutChunkRequest:
    return agent_pb2.PutChunkRequest(id=chunk_id, data=data, sha256=hashlib.sha256(data).digest())


def _commit_requests(site: Site, snap: Sealed) -> list[agent_pb2.CommitSnapshotRequest]:
    header = agent_pb2.SnapshotHeader(
        snapshot_id=snap.snapshot_id,
        record=snap.record,
        record_sha256=hashlib.sha256(snap.record).digest(),
        kind=agent_pb2.SNAPSHOT_KIND_IMAGES,
        data_key_id=site.sealed.data_key_id,
        entries=snap.entries,
        size=snap.size,
        reference_count=len(snap.references),
    )
    header.created_at.FromDatetime(snap.created)
    return [
        agent_pb2.CommitSnapshotRequest(header=header),
        agent_pb2.CommitSnapshotRequest(references=snap.references),
    ]


def test_a_crash_after_the_move_to_deleting_is_finished_and_the_chunks_come_back(
    gc_server: ServerHandle, tmp_path: Path
) -> None:
    """While a chunk is `deleting`: MissingChunks reports it missing, PutChunks answers
    UNAVAILABLE, a commit that references it fails naming it (nothing committed); the
    next run finishes the deletion, and the agent's upload then stores it again."""
    site = Site(gc_server, tmp_path)
    s1 = site.commit("a", days_ago=2)
    site.commit("b", days_ago=1)
    gc = Gc(gc_server)
    store = open_store("", gc_server.data_dir)
    md = [("authorization", f"Bearer {site.credential}")]
    try:
        gc.run(1)
        assert part(gc.run(25), site).chunks_condemned == len(s1.chunks)
        crashed = gc.run(50, crash=site.name)  # stops right after the move to `deleting`
        assert not crashed.ok and "simulated crash" in crashed.error
        rows = gc.chunk_rows(site.name)
        assert {c for c, (state, _) in rows.items() if state == "deleting"} == set(s1.chunks)
        blob_names = [rules.chunk_name(site.name, c) for c in s1.chunks]
        assert len(stored(store, blob_names)) == len(s1.chunks)  # blobs not deleted yet

        stub, ids = _stub(gc_server), sorted(s1.chunks)
        missing = stub.MissingChunks(
            agent_pb2.MissingChunksRequest(ids=ids), metadata=md, timeout=10
        )
        assert sorted(missing.missing) == ids
        with pytest.raises(grpc.RpcError) as err:
            stub.PutChunks(iter([_put(ids[0], s1.chunks[ids[0]])]), metadata=md, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "being collected" in (err.value.details() or "")

        again = site.snapshot("a", days_ago=0)
        new_parts = [c for c in again.chunks if c not in s1.chunks]
        stub.PutChunks(iter(_put(c, again.chunks[c]) for c in new_parts), metadata=md, timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.CommitSnapshot(iter(_commit_requests(site, again)), metadata=md, timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        shared = set(again.chunks) & set(s1.chunks)  # its content (and the same manifest)
        assert f"references {len(shared)} chunk(s) this site has not stored" in (
            err.value.details() or ""
        )
        assert any(c in (err.value.details() or "") for c in shared)
        listed = CliRunner().invoke(
            admin_cli, ["images", "snapshots", site.name, "--json"], env=gc_server.cli_env
        )
        assert listed.exit_code == 0 and again.snapshot_id not in listed.stdout

        finished = part(gc.run(51), site)  # the next run finishes the crashed one's work
        assert (finished.chunks_deleted, finished.error) == (len(s1.chunks), "")
        assert stored(store, blob_names) == set()
        assert not set(s1.chunks) & set(gc.chunk_rows(site.name))

        upload(gc_server, site.credential, site.sealed, again)  # sent again, committed
        assert set(again.chunks) <= set(gc.chunk_rows(site.name))
        names = {rules.chunk_name(site.name, c) for c in again.chunks}
        assert stored(store, sorted(names)) == names
    finally:
        asyncio.run(store.close())
        gc.close()


def test_store_gc_on_s3(moto_server: S3Server, tmp_path: Path) -> None:
    """The same collection over moto's S3: the agent calls in process (the service the
    servicer calls), the store's list and delete on S3."""
    url = moto_server.url(f"gc-{uuid.uuid4().hex[:8]}")
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(SITES).values(name="s3-site", group="default", created_at=hours(0)))
    sealed = new_site("s3-site")
    s1 = seal_files(sealed, {n: FILES[n] for n in "ab"}, hours(-48))
    s2 = seal_files(sealed, {n: FILES[n] for n in "bc"}, hours(-24))

    async def body() -> MaintenanceReport:
        store = open_store(url, tmp_path)
        try:
            await store.check()
            state = SqlStoreState(engine)
            who = AgentIdentity("agent", await state.site_id("s3-site"), "s3-site")
            uploads = OffsiteUploads(state, store, SystemClock())
            await uploads.put_site_key(
                who,
                sealed_key=sealed.sealed_key,
                data_key_id=sealed.data_key_id,
                recovery_key_fingerprint=sealed.fleet.fingerprint,
            )
            for snap in (s1, s2):
                for chunk_id in await uploads.missing_chunks(who, list(snap.chunks)):
                    data = snap.chunks[chunk_id]
                    digest = hashlib.sha256(data).digest()
                    await uploads.put_chunk(who, ChunkUpload(chunk_id, data, digest, "sha256"))
                await uploads.commit_snapshot(who, _header(sealed, snap), _batches(snap))
            gc_state = SqlStoreGcState(engine)
            report = None
            for at in (1, 25, 50):
                report = await StoreMaintenance(
                    gc_state,
                    store,
                    FakeClock(hours(at)),
                    lambda s, g: KEEP_ONE,
                    margin=MARGIN,
                    wall_clock=SystemClock(),
                ).run()
            assert report is not None
            names = [rules.chunk_name("s3-site", c) for c in (*s1.chunks, *s2.chunks)]
            found = await store.stat(names)
            assert {k for k, v in found.items() if v} == {
                rules.chunk_name("s3-site", c) for c in s2.chunks
            }
            refs = await store.stat([rules.refs_name("s3-site", s1.snapshot_id)])
            assert list(refs.values()) == [None]
            return report
        finally:
            await store.close()

    try:
        report = asyncio.run(body())
    finally:
        engine.dispose()
    (done,) = report.sites
    assert (done.chunks_deleted, done.error) == (len(only(s1, s2)), "")


def _header(site: SealedSite, snap: Sealed) -> SnapshotHeader:
    return SnapshotHeader(
        snapshot_id=snap.snapshot_id,
        record=snap.record,
        record_sha256=hashlib.sha256(snap.record).digest(),
        kind="images",
        data_key_id=site.data_key_id,
        created_at=snap.created,
        entries=snap.entries,
        size=snap.size,
        backup_run_id="",
        reference_count=len(snap.references),
    )


async def _batches(snap: Sealed) -> AsyncIterator[list[str]]:
    yield snap.references
