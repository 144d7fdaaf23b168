"""AdminService.VerifyStore end to end: a real server (SQLite and PostgreSQL) over real
gRPC, its filesystem store tampered with on disk, and an S3 store (moto) tampered with
through the S3 API; findings named, recorded as store-check runs, shown by status until
a later check reads the chunks fine."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select
from storesafe.v1 import admin_pb2, types_pb2

from server.db.engine import make_engine
from server.state.tables import CHUNKS
from tests.integration.server.test_offsite_api import agent_stub, bearer
from tests.integration.server.test_offsite_runs_api import (
    backup_run,
    database_copy,
    report,
    summary,
)
from tests.support.damage import damage
from tests.support.s3servers import BUCKET, S3Server, start_moto, use_test_credentials
from tests.support.sealed import SiteUpload, put_request, site_upload
from tests.support.server import ServerHandle, enroll_agent, start_server

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def verify(
    server: ServerHandle, site: str = "", percent: float = 0
) -> list[admin_pb2.VerifyStoreUpdate]:
    return list(
        server.admin_stub().VerifyStore(
            admin_pb2.VerifyStoreRequest(site=site, sample_percent=percent),
            metadata=server.admin_metadata,
            timeout=60,
        )
    )


def result_of(updates: list[admin_pb2.VerifyStoreUpdate], site: str) -> types_pb2.RunReport:
    done = [u for u in updates if u.site == site and u.HasField("result")]
    assert len(done) == 1, updates
    assert done[0] is [u for u in updates if u.site == site][-1]  # the result comes last
    return done[0].result


def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def two_copies(server: ServerHandle, site: str) -> tuple[SiteUpload, SiteUpload]:
    md = bearer(enroll_agent(server, site))
    report(server, md, backup_run(f"{site}-b1", NOW - dt.timedelta(hours=30), 4000))
    report(server, md, backup_run(f"{site}-b2", NOW - dt.timedelta(hours=2), 4000))
    first = database_copy(server, md, site, f"{site}-b1", NOW - dt.timedelta(hours=29))
    second = database_copy(server, md, site, f"{site}-b2", NOW - dt.timedelta(hours=1))
    return first, second


def test_verify_store_names_tampered_and_missing_chunks_until_they_read_fine(
    db_url: str, tmp_path: Path
) -> None:
    server = start_server(tmp_path, db_url=db_url)
    try:
        site, clean = "vs-a", "vs-clean"
        first, second = two_copies(server, site)
        two_copies(server, clean)
        chunks = server.data_dir / "store" / "sites" / site / "chunks"
        stored = {c.chunk_id: c.blob for up in (first, second) for c in up.chunks}

        # all well: every chunk read, nothing found
        updates = verify(server, site)
        ok = result_of(updates, site)
        assert ok.kind == types_pb2.RUN_KIND_STORE_CHECK
        assert ok.outcome == types_pb2.RUN_OUTCOME_SUCCEEDED
        assert ok.store_check.chunks_checked == len(stored) == updates[-1].chunks_total
        assert ok.store_check.bytes_checked == sum(len(b) for b in stored.values())
        assert ok.store_check.sample_percent == 100
        assert updates[0].chunks_checked == 0 and updates[0].chunks_total == len(stored)
        row = summary(server, site)
        assert row.last_store_check_at == ok.finished_at and row.store_damaged_chunks == 0
        assert not [p for p in row.problems if "off-site store" in p]

        # a byte flipped in a chunk only the first copy has, and a part of the second copy deleted
        only_first = next(c.chunk_id for c in first.content)
        second_part = second.snapshot.parts[0]
        tampered = chunks / only_first[:2] / only_first
        os.chmod(tampered, 0o644)
        data = bytearray(tampered.read_bytes())
        data[len(data) // 2] ^= 0x01
        tampered.write_bytes(bytes(data))
        (chunks / second_part[:2] / second_part).unlink()

        updates = verify(server)  # every site
        bad = result_of(updates, site)
        assert result_of(updates, clean).outcome == types_pb2.RUN_OUTCOME_SUCCEEDED
        assert bad.outcome == types_pb2.RUN_OUTCOME_FAILED
        found = bad.store_check
        assert list(found.damaged_chunks) == [only_first]
        assert list(found.missing_chunks) == [second_part]
        assert (found.damaged_count, found.missing_count) == (1, 1)
        assert sorted(found.broken_snapshots) == sorted(
            [first.snapshot.snapshot_id, second.snapshot.snapshot_id]
        )
        assert list(found.broken_backup_runs) == [f"{site}-b1", f"{site}-b2"]
        runs = server.admin_stub().ListRuns(
            admin_pb2.ListRunsRequest(site=site, kind=types_pb2.RUN_KIND_STORE_CHECK),
            metadata=server.admin_metadata,
            timeout=10,
        )
        assert [r.report.id for r in runs.runs] == [bad.id, ok.id]
        row = summary(server, site)
        assert row.store_damaged_chunks == 2 and row.status == types_pb2.SITE_STATUS_WARNING
        assert (
            f"off-site store: 2 chunk(s) damaged or missing; backups {site}-b1, {site}-b2 "
            "cannot be restored"
        ) in row.problems
        assert summary(server, clean).store_damaged_chunks == 0

        # a tiny sample still re-reads the known damage first: still there
        again = result_of(verify(server, site, 0.001), site)
        assert (again.store_check.damaged_count, again.store_check.missing_count) == (1, 1)
        assert summary(server, site).store_damaged_chunks == 2

        # repaired (the right bytes back): the next check, however small, clears it
        tampered.write_bytes(stored[only_first])
        (chunks / second_part[:2] / second_part).write_bytes(stored[second_part])
        fixed = result_of(verify(server, site, 0.001), site)
        assert fixed.outcome == types_pb2.RUN_OUTCOME_SUCCEEDED
        assert fixed.store_check.chunks_checked >= 2
        row = summary(server, site)
        assert row.store_damaged_chunks == 0
        assert not [p for p in row.problems if "off-site store" in p]
    finally:
        server.stop()


def test_verify_store_checks_each_chunk_with_the_digest_it_was_stored_with(
    db_url: str, tmp_path: Path
) -> None:
    """Chunks an older agent stated sha256 for and chunks a current one stated blake3 for,
    in one site: each is read back and hashed with its own algorithm; a damaged one of
    either kind is found."""
    server = start_server(tmp_path, db_url=db_url)
    try:
        site = "vs-digests"
        md = bearer(enroll_agent(server, site))
        s = agent_stub(server)
        old = site_upload(site, {"old.tif": os.urandom(3000)})
        new = site_upload(site, {"new.tif": os.urandom(3000)})
        for up, form in ((old, "sha256"), (new, "blake3")):
            s.PutSiteKey(up.site_key_request(), metadata=md, timeout=10)
            puts = [
                put_request(c, blake3=b"", sha256=hashlib.sha256(c.blob).digest())
                if form == "sha256"
                else put_request(c)
                for c in up.chunks
            ]
            assert s.PutChunks(iter(puts), metadata=md, timeout=30).stored == len(puts)
            s.CommitSnapshot(iter(up.commit_requests()), metadata=md, timeout=30)
        engine = make_engine(db_url)
        with engine.connect() as conn:
            algorithms = dict(
                conn.execute(select(CHUNKS.c.chunk_id, CHUNKS.c.digest_algorithm)).all()
            )
        engine.dispose()
        assert algorithms == {
            **{c.chunk_id: "sha256" for c in old.chunks},
            **{c.chunk_id: "blake3" for c in new.chunks},
        }

        ok = result_of(verify(server, site), site)
        assert ok.outcome == types_pb2.RUN_OUTCOME_SUCCEEDED, ok.store_check
        assert ok.store_check.chunks_checked == len(algorithms)

        chunks = server.data_dir / "store" / "sites" / site / "chunks"
        spoiled = [old.content[0].chunk_id, new.content[0].chunk_id]
        for chunk_id in spoiled:
            os.chmod(chunks / chunk_id[:2] / chunk_id, 0o644)  # stored read-only
            damage(chunks / chunk_id[:2] / chunk_id)
        bad = result_of(verify(server, site), site)
        assert bad.outcome == types_pb2.RUN_OUTCOME_FAILED
        assert sorted(bad.store_check.damaged_chunks) == sorted(spoiled)
        assert not bad.store_check.missing_chunks
    finally:
        server.stop()


def test_bad_verify_requests_get_a_precise_status(shared_server: ServerHandle) -> None:
    enroll_agent(shared_server, "vs-empty")
    for site, percent, code, text in (
        ("vs-empty", 150, grpc.StatusCode.INVALID_ARGUMENT, "sample_percent: 150 is not"),
        ("vs-empty", -2, grpc.StatusCode.INVALID_ARGUMENT, "sample_percent: -2 is not"),
        ("vs-empty", float("nan"), grpc.StatusCode.INVALID_ARGUMENT, "sample_percent: is not"),
        ("no-such-site", 10, grpc.StatusCode.NOT_FOUND, "there is no site named"),
        ("../x", 10, grpc.StatusCode.INVALID_ARGUMENT, "'../x' is not a valid site name"),
    ):
        got, details = code_of(
            lambda site=site, percent=percent: verify(shared_server, site, percent)
        )
        assert got == code and details.startswith(text), details
    # a site without chunks: checked, nothing to read
    (done,) = [u for u in verify(shared_server, "vs-empty") if u.HasField("result")]
    assert done.result.store_check.chunks_checked == 0
    assert done.result.outcome == types_pb2.RUN_OUTCOME_SUCCEEDED
    with pytest.raises(grpc.RpcError) as err:
        list(
            shared_server.admin_stub().VerifyStore(
                admin_pb2.VerifyStoreRequest(site="vs-empty"),
                metadata=[("authorization", "Bearer nope")],
                timeout=10,
            )
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    use_test_credentials()
    server = start_moto(tmp_path_factory.mktemp("moto-verify"))
    try:
        yield server
    finally:
        server.stop()


def test_verify_store_on_s3_finds_a_replaced_and_a_deleted_object(
    moto: S3Server, tmp_path: Path
) -> None:
    prefix = f"vs-{uuid.uuid4().hex[:10]}"
    server = start_server(tmp_path, extra_args=("--store", moto.url(prefix)))
    try:
        site = "vs-s3"
        first, second = two_copies(server, site)
        assert result_of(verify(server, site), site).outcome == types_pb2.RUN_OUTCOME_SUCCEEDED
        s3: Any = moto.client()
        changed = first.content[0].chunk_id
        gone = second.content[0].chunk_id
        key = f"{prefix}/sites/{site}/chunks"
        s3.put_object(Bucket=BUCKET, Key=f"{key}/{changed[:2]}/{changed}", Body=b"not it")
        s3.delete_object(Bucket=BUCKET, Key=f"{key}/{gone[:2]}/{gone}")
        found = result_of(verify(server, site), site).store_check
        assert (list(found.damaged_chunks), list(found.missing_chunks)) == ([changed], [gone])
        assert summary(server, site).store_damaged_chunks == 2
    finally:
        server.stop()
