"""The off-site store RPCs end to end: a real server on loopback (SQLite and PostgreSQL),
its filesystem store, real grpc channels, sealed data from the real vault."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import grpc
import pytest
from storesafe.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc

from common.vault.chunks import SealedChunk, open_chunk
from common.vault.datakey import open_data_key
from common.vault.sitekeys import SiteKeys
from common.vault.snapshot import open_snapshot
from server.domain.offsite import MAX_CHUNK_BYTES, MAX_FETCH_MESSAGE_BYTES
from tests.support.sealed import SiteUpload, put_request, site_upload
from tests.support.server import ServerHandle, enroll_agent, start_server, stored_chunks


def agent_stub(server: ServerHandle) -> agent_pb2_grpc.AgentServiceStub:
    creds = grpc.ssl_channel_credentials(server.ca_path.read_bytes())
    return agent_pb2_grpc.AgentServiceStub(grpc.secure_channel(server.address, creds))


def bearer(credential: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {credential}")]


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    return err.value.code()  # type: ignore[no-any-return]


def upload(s: agent_pb2_grpc.AgentServiceStub, md: list[tuple[str, str]], up: SiteUpload) -> None:
    s.PutSiteKey(up.site_key_request(), metadata=md, timeout=10)
    s.PutChunks(iter([put_request(c) for c in up.chunks]), metadata=md, timeout=30)
    s.CommitSnapshot(iter(up.commit_requests()), metadata=md, timeout=30)


def test_upload_commit_and_restore_round_trip(db_url: str, tmp_path: Path) -> None:
    server = start_server(tmp_path, db_url=db_url)
    try:
        site = "off-round"
        md = bearer(enroll_agent(server, site))
        s = agent_stub(server)
        up = site_upload(site)
        ids = [c.chunk_id for c in up.chunks]

        assert not s.PutSiteKey(up.site_key_request(), metadata=md, timeout=10).duplicate
        assert s.PutSiteKey(up.site_key_request(site), metadata=md, timeout=10).duplicate
        missing = s.MissingChunks(agent_pb2.MissingChunksRequest(ids=ids), metadata=md, timeout=10)
        assert list(missing.missing) == ids

        first = s.PutChunks(iter([put_request(c) for c in up.chunks]), metadata=md, timeout=30)
        assert (first.stored, first.duplicates) == (len(ids), 0)
        assert first.bytes_stored == sum(len(c.blob) for c in up.chunks)
        again = s.PutChunks(iter([put_request(c) for c in up.chunks]), metadata=md, timeout=30)
        assert (again.stored, again.duplicates, again.bytes_stored) == (0, len(ids), 0)
        missing = s.MissingChunks(agent_pb2.MissingChunksRequest(ids=ids), metadata=md, timeout=10)
        assert list(missing.missing) == []

        commit = up.commit_requests(batch=2)
        assert len(commit) > 2  # header and more than one reference batch
        assert not s.CommitSnapshot(iter(commit), metadata=md, timeout=30).duplicate
        assert s.CommitSnapshot(iter(commit), metadata=md, timeout=30).duplicate

        store = server.data_dir / "store" / "sites" / site
        snap_id = up.snapshot.snapshot_id
        assert (store / "snapshots" / snap_id).read_bytes() == up.snapshot.record
        assert (store / "refs" / snap_id).is_file()
        assert (store / "chunks" / ids[0][:2] / ids[0]).read_bytes() == up.chunks[0].blob

        # the restore side: an admin reads it all back and the key file opens it
        admin, amd = server.admin_stub(), server.admin_metadata
        listed = admin.ListSnapshots(
            admin_pb2.ListSnapshotsRequest(site=site), metadata=amd, timeout=10
        ).snapshots
        assert [x.snapshot_id for x in listed] == [snap_id]
        assert listed[0].chunks == len(up.snapshot.references)
        assert listed[0].stored_bytes == sum(len(c.blob) for c in up.chunks)
        assert listed[0].entries == len(up.files)
        got = admin.GetSnapshot(
            admin_pb2.GetSnapshotRequest(site=site, kind=agent_pb2.SNAPSHOT_KIND_IMAGES),
            metadata=amd,
            timeout=10,
        )
        assert got.snapshot.snapshot_id == snap_id and got.record == up.snapshot.record
        keys = admin.ListSiteKeys(
            admin_pb2.ListSiteKeysRequest(site=site), metadata=amd, timeout=10
        ).keys
        assert [k.data_key_id for k in keys] == [up.keys.key_id_hex]
        site_keys = SiteKeys.derive(site, open_data_key(keys[0].sealed_key, site, up.fleet))
        # a client before max_message_bytes gets one chunk a message, in id and data
        messages = list(
            admin.FetchChunks(
                admin_pb2.FetchChunksRequest(site=site, ids=ids), metadata=amd, timeout=30
            )
        )
        assert all(not m.chunks for m in messages)
        fetched = {m.id: m.data for m in messages}
        assert list(fetched) == ids
        opened = open_snapshot(site_keys, snap_id, got.record, fetched.__getitem__)
        for entry in opened.entries:
            plain = b"".join(open_chunk(site_keys, cid, fetched[cid]) for cid, _ in entry.chunks)
            assert plain == up.files[entry.path]
    finally:
        server.stop()


def test_duplicates_conflicts_digests_and_bad_input(shared_server: ServerHandle) -> None:
    site = "off-bad"
    md = bearer(enroll_agent(shared_server, site))
    s = agent_stub(shared_server)
    up = site_upload(site)
    chunk = up.chunks[0]

    def put(*reqs: agent_pb2.PutChunkRequest) -> agent_pb2.PutChunksResponse:
        return s.PutChunks(iter(reqs), metadata=md, timeout=30)

    def missing(*ids: str) -> list[str]:
        reply = s.MissingChunks(agent_pb2.MissingChunksRequest(ids=ids), metadata=md, timeout=10)
        return list(reply.missing)

    # a digest that does not match stores nothing
    assert code_of(lambda: put(put_request(chunk, blake3=bytes(32)))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert missing(chunk.chunk_id) == [chunk.chunk_id]
    assert put(put_request(chunk)).stored == 1
    assert put(put_request(chunk)).duplicates == 1
    # a stored chunk sent again with a wrong digest is a digest mismatch, not a conflict
    assert code_of(lambda: put(put_request(chunk, blake3=bytes(32)))) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    other = chunk.blob[:-1] + bytes([chunk.blob[-1] ^ 1])
    conflicting = put_request(chunk, data=other, blake3=blake3.blake3(other).digest())
    assert code_of(lambda: put(conflicting)) == grpc.StatusCode.ALREADY_EXISTS
    for bad in (
        put_request(chunk, id="ABC"),
        put_request(chunk, id="../" + chunk.chunk_id[3:]),
        put_request(chunk, blake3=b"short"),
    ):
        assert code_of(lambda bad=bad: put(bad)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: put(put_request(chunk, site="off-other"))) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    too_many = [f"{i:064x}" for i in range(1001)]
    assert code_of(lambda: missing(*too_many)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert code_of(lambda: missing("nothex")) == grpc.StatusCode.INVALID_ARGUMENT

    def commit(reqs: list[agent_pb2.CommitSnapshotRequest]) -> bool:
        return s.CommitSnapshot(iter(reqs), metadata=md, timeout=30).duplicate

    # the data key must be registered first
    assert code_of(lambda: commit(up.commit_requests())) == grpc.StatusCode.FAILED_PRECONDITION
    s.PutSiteKey(up.site_key_request(), metadata=md, timeout=10)
    # every reference must be stored: the refusal names the missing ones
    with pytest.raises(grpc.RpcError) as err:
        commit(up.commit_requests())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert up.chunks[1].chunk_id in (err.value.details() or "")
    assert chunk.chunk_id not in (err.value.details() or "")
    put(*[put_request(c) for c in up.chunks[1:]])
    for bad_header in (
        up.header(reference_count=len(up.snapshot.references) + 1),
        up.header(record_sha256=bytes(32)),
        up.header(kind=agent_pb2.SNAPSHOT_KIND_UNSPECIFIED),
        up.header(snapshot_id="x" * 64),
        up.header(record=b"x" * (1024 * 1024 + 1)),
    ):
        reqs = up.commit_requests(header=bad_header)
        assert code_of(lambda reqs=reqs: commit(reqs)) == grpc.StatusCode.INVALID_ARGUMENT
    no_header = up.commit_requests()[1:]
    assert code_of(lambda: commit(no_header)) == grpc.StatusCode.INVALID_ARGUMENT
    assert commit(up.commit_requests()) is False
    assert commit(up.commit_requests(batch=1000)) is True
    changed = up.header(record=b"other", record_sha256=hashlib.sha256(b"other").digest())
    assert code_of(lambda: commit(up.commit_requests(header=changed))) == (
        grpc.StatusCode.ALREADY_EXISTS
    )
    # a key sealed for another site is not this site's
    foreign = site_upload("off-elsewhere")
    req = foreign.site_key_request()
    assert code_of(lambda: s.PutSiteKey(req, metadata=md, timeout=10)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )


def test_a_chunk_states_exactly_one_digest_blake3_or_the_sha256_of_older_agents(
    shared_server: ServerHandle,
) -> None:
    site = "off-digests"
    md = bearer(enroll_agent(shared_server, site))
    s = agent_stub(shared_server)
    up = site_upload(site, {f"scan-{i}.tif": os.urandom(3000 + i) for i in range(4)})
    chunks = up.chunks
    assert len(chunks) >= 4

    def put(*reqs: agent_pb2.PutChunkRequest) -> agent_pb2.PutChunksResponse:
        return s.PutChunks(iter(reqs), metadata=md, timeout=30)

    def missing() -> set[str]:
        ids = [c.chunk_id for c in chunks]
        reply = s.MissingChunks(agent_pb2.MissingChunksRequest(ids=ids), metadata=md, timeout=10)
        return set(reply.missing)

    def sha256_of(chunk: SealedChunk) -> bytes:
        return hashlib.sha256(chunk.blob).digest()

    def refusal(*reqs: agent_pb2.PutChunkRequest) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.RpcError) as err:
            put(*reqs)
        return err.value.code(), err.value.details() or ""

    every = {c.chunk_id for c in chunks}
    # both digests, or neither: refused with one sentence, in a chunk's own fields or a piece
    both = refusal(put_request(chunks[0], sha256=sha256_of(chunks[0])))
    assert both[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "states both a blake3 and a sha256 digest" in both[1], both
    neither = refusal(agent_pb2.PutChunkRequest(chunks=[piece(chunks[0], blake3=b"")]))
    assert neither[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "states no digest" in neither[1], neither
    both_piece = refusal(
        agent_pb2.PutChunkRequest(chunks=[piece(chunks[0], sha256=sha256_of(chunks[0]))])
    )
    assert both_piece[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert missing() == every
    assert stored_chunks(shared_server, site) == set()
    # an older agent's upload (sha256 only) is still taken, and checked
    wrong = refusal(put_request(chunks[0], blake3=b"", sha256=sha256_of(chunks[1])))
    assert wrong[0] == grpc.StatusCode.INVALID_ARGUMENT and "sha256" in wrong[1], wrong
    old = put_request(chunks[0], blake3=b"", sha256=sha256_of(chunks[0]))
    assert put(old).stored == 1
    # a current agent's blake3 upload with a wrong digest stores nothing
    wrong = refusal(put_request(chunks[1], blake3=blake3.blake3(chunks[2].blob).digest()))
    assert wrong[0] == grpc.StatusCode.INVALID_ARGUMENT and "blake3" in wrong[1], wrong
    assert missing() == every - {chunks[0].chunk_id}
    assert stored_chunks(shared_server, site) == {chunks[0].chunk_id}
    # both kinds in one stream; the old chunk again, now with its blake3: a duplicate
    mixed = agent_pb2.PutChunkRequest(
        chunks=[piece(chunks[1]), piece(chunks[2], blake3=b"", sha256=sha256_of(chunks[2]))]
    )
    reply = put(mixed, put_request(chunks[3]), put_request(chunks[0]))
    assert (reply.stored, reply.duplicates) == (3, 1)
    assert missing() == every - {c.chunk_id for c in chunks[:4]}


def piece(chunk: SealedChunk, **overrides: object) -> agent_pb2.ChunkPiece:
    fields: dict[str, object] = dict(
        id=chunk.chunk_id, data=chunk.blob, blake3=blake3.blake3(chunk.blob).digest()
    )
    fields.update(overrides)
    return agent_pb2.ChunkPiece(**fields)  # type: ignore[arg-type]


def test_small_chunks_share_a_message_and_each_is_checked(shared_server: ServerHandle) -> None:
    site = "off-packed"
    md = bearer(enroll_agent(shared_server, site))
    s = agent_stub(shared_server)
    up = site_upload(site, {f"scan-{i}.tif": os.urandom(2000 + i) for i in range(6)})
    chunks = up.chunks
    assert len(chunks) >= 6

    def put(*reqs: agent_pb2.PutChunkRequest) -> agent_pb2.PutChunksResponse:
        return s.PutChunks(iter(reqs), metadata=md, timeout=30)

    def missing(*cs: SealedChunk) -> set[str]:
        ids = [c.chunk_id for c in cs]
        reply = s.MissingChunks(agent_pb2.MissingChunksRequest(ids=ids), metadata=md, timeout=10)
        return set(reply.missing)

    # a piece whose digest does not match is refused, and is not stored
    bad = agent_pb2.PutChunkRequest(
        chunks=[piece(chunks[0]), piece(chunks[1], blake3=bytes(32)), piece(chunks[2])]
    )
    assert code_of(lambda: put(bad)) == grpc.StatusCode.INVALID_ARGUMENT
    assert chunks[1].chunk_id in missing(*chunks[:3])
    # both forms in one stream: several pieces a message, and one chunk in its own fields
    packed = agent_pb2.PutChunkRequest(chunks=[piece(c) for c in chunks[1:4]])
    again = agent_pb2.PutChunkRequest(chunks=[piece(chunks[0])])
    before = missing(*chunks[:5])
    reply = put(packed, put_request(chunks[4]), again)
    assert (reply.stored, reply.duplicates) == (len(before), 5 - len(before))
    assert missing(*chunks) == {c.chunk_id for c in chunks[5:]}
    for refused, code in (
        # one chunk in the message's own fields and more in `chunks`
        (put_request(chunks[5], chunks=[piece(chunks[5])]), grpc.StatusCode.INVALID_ARGUMENT),
        (
            agent_pb2.PutChunkRequest(chunks=[piece(chunks[5], id="ABC")]),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            agent_pb2.PutChunkRequest(chunks=[piece(chunks[5], blake3=b"short")]),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        # pieces are the sending agent's site's: claiming another is refused
        (
            agent_pb2.PutChunkRequest(site="off-other", chunks=[piece(chunks[5])]),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ):
        assert code_of(lambda refused=refused: put(refused)) == code
    assert missing(chunks[5]) == {chunks[5].chunk_id}
    with pytest.raises(grpc.RpcError) as both:
        put(put_request(chunks[5], chunks=[piece(chunks[5])]))
    assert "not both" in (both.value.details() or "")


def test_a_sixteen_mib_chunk_fits_and_a_bigger_one_is_refused(shared_server: ServerHandle) -> None:
    md = bearer(enroll_agent(shared_server, "off-big"))
    s = agent_stub(shared_server)
    data = bytes(range(256)) * (16 * 1024 * 4)  # exactly 16 MiB
    big = agent_pb2.PutChunkRequest(id="ab" * 32, data=data, sha256=hashlib.sha256(data).digest())
    assert s.PutChunks(iter([big]), metadata=md, timeout=60).stored == 1
    more = data + b"x"
    bigger = agent_pb2.PutChunkRequest(
        id="cd" * 32, data=more, sha256=hashlib.sha256(more).digest()
    )
    assert code_of(lambda: s.PutChunks(iter([bigger]), metadata=md, timeout=60)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    # other methods keep their small limit
    huge = agent_pb2.MissingChunksRequest(site="x" * (5 * 1024 * 1024))
    assert code_of(lambda: s.MissingChunks(huge, metadata=md, timeout=30)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )


def test_fetch_packs_chunks_into_messages_within_the_limit(shared_server: ServerHandle) -> None:
    site = "off-pack"
    md = bearer(enroll_agent(shared_server, site))
    s = agent_stub(shared_server)
    sizes = {"a1": 3000, "b2": 5000, "c3": 9 << 20, "d4": 9 << 20, "e5": 100, "f6": 17 << 20}
    blobs = {k * 32: hashlib.sha256(k.encode()).digest() * (n // 32) for k, n in sizes.items()}
    for chunk_id, data in blobs.items():
        if len(data) <= MAX_CHUNK_BYTES:
            put = agent_pb2.PutChunkRequest(
                id=chunk_id, data=data, sha256=hashlib.sha256(data).digest()
            )
            assert s.PutChunks(iter([put]), metadata=md, timeout=60).stored == 1
    creds = grpc.ssl_channel_credentials(shared_server.ca_path.read_bytes())
    channel = grpc.secure_channel(
        shared_server.address, creds, options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    admin, amd = admin_pb2_grpc.AdminServiceStub(channel), shared_server.admin_metadata
    ids = [k * 32 for k in ("a1", "b2", "e5", "c3", "d4", "a1", "e5")]

    def fetch(limit: int) -> list[list[tuple[str, int]]]:
        request = admin_pb2.FetchChunksRequest(site=site, ids=ids, max_message_bytes=limit)
        replies = admin.FetchChunks(request, metadata=amd, timeout=60)
        return [[(c.id, len(c.data)) for c in m.chunks if c.data == blobs[c.id]] for m in replies]

    whole = [(i, len(blobs[i])) for i in dict.fromkeys(ids)]  # each id once, in order
    # what fits goes together, in request order; a chunk larger than the limit goes alone
    assert fetch(9000) == [whole[0:3], whole[3:4], whole[4:5]]
    # no client gets more than MAX_FETCH_MESSAGE_BYTES in one message, whatever it asks
    assert fetch(2**32 - 1) == [whole[0:4], whole[4:5]]
    assert sum(n + 64 for _, n in whole[0:4]) <= MAX_FETCH_MESSAGE_BYTES
    # one id the store lacks is named before anything is sent
    missing = admin_pb2.FetchChunksRequest(
        site=site, ids=[*ids, "f6" * 32], max_message_bytes=1 << 20
    )
    with pytest.raises(grpc.RpcError) as err:
        list(admin.FetchChunks(missing, metadata=amd, timeout=60))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "f6" * 32 in (err.value.details() or "")


def test_sites_cannot_see_or_use_each_others_chunks(shared_server: ServerHandle) -> None:
    md_a = bearer(enroll_agent(shared_server, "off-a"))
    md_b = bearer(enroll_agent(shared_server, "off-b"))
    s = agent_stub(shared_server)
    up_a, up_b = site_upload("off-a"), site_upload("off-b")
    upload(s, md_b, up_b)
    b_ids = [c.chunk_id for c in up_b.chunks]
    reply = s.MissingChunks(agent_pb2.MissingChunksRequest(ids=b_ids), metadata=md_a, timeout=10)
    assert list(reply.missing) == b_ids
    # A's snapshot naming B's chunks (B's id as A's reference) is refused
    s.PutSiteKey(up_a.site_key_request(), metadata=md_a, timeout=10)
    s.PutChunks(iter([put_request(c) for c in up_a.chunks]), metadata=md_a, timeout=30)
    header = up_a.header(reference_count=len(up_a.snapshot.references) + 1)
    reqs = [
        *up_a.commit_requests(header=header),
        agent_pb2.CommitSnapshotRequest(references=b_ids[:1]),
    ]
    assert code_of(lambda: s.CommitSnapshot(iter(reqs), metadata=md_a, timeout=30)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )
    admin, amd = shared_server.admin_stub(), shared_server.admin_metadata
    fetch = admin_pb2.FetchChunksRequest(site="off-a", ids=[up_a.chunks[0].chunk_id, b_ids[0]])
    with pytest.raises(grpc.RpcError) as err:
        list(admin.FetchChunks(fetch, metadata=amd, timeout=30))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert b_ids[0] in (err.value.details() or "")
    listed = admin.ListSnapshots(
        admin_pb2.ListSnapshotsRequest(site="off-a"), metadata=amd, timeout=10
    ).snapshots
    assert list(listed) == []
    # B's snapshot under A's key-file listing shows only B's own
    listed = admin.ListSnapshots(
        admin_pb2.ListSnapshotsRequest(site="off-b"), metadata=amd, timeout=10
    ).snapshots
    assert [x.snapshot_id for x in listed] == [up_b.snapshot.snapshot_id]


def test_agent_and_admin_credentials_stay_apart(shared_server: ServerHandle) -> None:
    site = "off-creds"
    cred = enroll_agent(shared_server, site)
    s = agent_stub(shared_server)
    up = site_upload(site)
    admin_md = shared_server.admin_metadata
    for call in (
        lambda md: s.PutSiteKey(up.site_key_request(), metadata=md, timeout=10),
        lambda md: s.PutChunks(iter([put_request(up.chunks[0])]), metadata=md, timeout=10),
        lambda md: s.CommitSnapshot(iter(up.commit_requests()), metadata=md, timeout=10),
        lambda md: s.MissingChunks(agent_pb2.MissingChunksRequest(), metadata=md, timeout=10),
    ):
        assert code_of(lambda call=call: call(admin_md)) == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda call=call: call([])) == grpc.StatusCode.UNAUTHENTICATED
    admin = shared_server.admin_stub()
    for admin_call in (
        lambda: admin.ListSnapshots(
            admin_pb2.ListSnapshotsRequest(site=site), metadata=bearer(cred), timeout=10
        ),
        lambda: list(
            admin.FetchChunks(
                admin_pb2.FetchChunksRequest(site=site), metadata=bearer(cred), timeout=10
            )
        ),
        lambda: admin.ListSiteKeys(
            admin_pb2.ListSiteKeysRequest(site=site), metadata=bearer(cred), timeout=10
        ),
    ):
        assert code_of(admin_call) == grpc.StatusCode.UNAUTHENTICATED
    # a revoked agent is refused at once
    admin.RevokeAgents(admin_pb2.RevokeAgentsRequest(site=site), metadata=admin_md, timeout=10)
    assert (
        code_of(
            lambda: s.PutChunks(
                iter([put_request(up.chunks[0])]), metadata=bearer(cred), timeout=10
            )
        )
        == grpc.StatusCode.UNAUTHENTICATED
    )


def test_a_cut_upload_keeps_every_chunk_that_arrived_whole(shared_server: ServerHandle) -> None:
    site = "off-cut"
    md = bearer(enroll_agent(shared_server, site))
    s = agent_stub(shared_server)
    up = site_upload(site)
    ids = [c.chunk_id for c in up.content]
    arrived = threading.Event()

    def missing() -> list[str]:
        reply = s.MissingChunks(agent_pb2.MissingChunksRequest(ids=ids), metadata=md, timeout=10)
        return list(reply.missing)

    def requests() -> Iterator[agent_pb2.PutChunkRequest]:
        yield put_request(up.content[0])
        yield put_request(up.content[1])
        deadline = time.monotonic() + 30  # wait until the server stored both (not a timing test)
        while missing() != ids[2:] and time.monotonic() < deadline:
            time.sleep(0.05)
        arrived.set()
        raise ConnectionResetError("the shop's line dropped")

    assert code_of(lambda: s.PutChunks(requests(), metadata=md, timeout=60)) in (
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,  # grpcio's client side reports the iterator's exception
    )
    assert arrived.is_set()
    assert missing() == ids[2:]
    s.PutChunks(iter([put_request(c) for c in up.content[2:]]), metadata=md, timeout=30)
    assert missing() == []


def test_a_store_that_cannot_be_used_is_unavailable_and_unhealthy(tmp_path: Path) -> None:
    import json
    import subprocess

    from tests.support.server import BIN
    from tests.support.web import start_web_server

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store folder should be")
    web = start_web_server(tmp_path, extra_args=("--store", str(blocked)))
    server = web.handle
    try:
        assert f"off-site store: {blocked}" in server.log()
        md = bearer(enroll_agent(server, "off-down"))
        up = site_upload("off-down")
        s = agent_stub(server)
        assert (
            code_of(lambda: s.PutChunks(iter([put_request(up.chunks[0])]), metadata=md, timeout=10))
            == grpc.StatusCode.UNAVAILABLE
        )
        done = subprocess.run(
            [
                str(BIN / "storesafe-server"),
                "health",
                "--address",
                server.address,
                "--ca",
                str(server.ca_path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1
        assert done.stderr.strip() == "error: NOT_SERVING: the off-site store cannot be used now"
        answer = web.get("/healthz")
        assert answer.status == 503
        checks = json.loads(answer.body)["checks"]
        assert checks["grpc"] == checks["database"] == "ok"
        assert checks["store"].startswith("failed")
    finally:
        server.stop()


def test_image_sync_problems_show_once_images_dir_is_set(shared_server: ServerHandle) -> None:
    import datetime as dt
    import uuid

    from storesafe.v1 import types_pb2

    from tests.support.server import set_config
    from tests.support.web import backup_report, ts

    site = "off-status"
    md = bearer(enroll_agent(shared_server, site))
    s = agent_stub(shared_server)
    now = dt.datetime.now(dt.UTC)
    s.CheckIn(agent_pb2.CheckInRequest(agent_version="1.0.0"), metadata=md, timeout=10)
    s.ReportRun(agent_pb2.ReportRunRequest(report=backup_report(now)), metadata=md, timeout=10)
    failed = types_pb2.RunReport(
        id=str(uuid.uuid4()),
        kind=types_pb2.RUN_KIND_IMAGE_SYNC,
        started_at=ts(now - dt.timedelta(minutes=1)),
        finished_at=ts(now),
        outcome=types_pb2.RUN_OUTCOME_FAILED,
        error_class="images.folder_missing",
        error_message="the image folder D:\\Scans is missing",
        image_sync=types_pb2.ImageSyncDetails(files_scanned=0),
    )
    s.ReportRun(agent_pb2.ReportRunRequest(report=failed), metadata=md, timeout=10)
    admin, amd = shared_server.admin_stub(), shared_server.admin_metadata

    def site_state() -> tuple[int, list[str]]:
        got = admin.GetSite(admin_pb2.GetSiteRequest(site=site), metadata=amd, timeout=10)
        return got.summary.status, list(got.summary.problems)

    assert site_state() == (types_pb2.SITE_STATUS_OK, [])
    set_config(shared_server, admin_pb2.CONFIG_SCOPE_SITE, site, images__dir="D:\\Scans")
    assert site_state() == (
        types_pb2.SITE_STATUS_WARNING,
        ["image sync failing: the image folder D:\\Scans is missing"],
    )
    emptied = types_pb2.RunReport(
        id=str(uuid.uuid4()),
        kind=types_pb2.RUN_KIND_IMAGE_SYNC,
        started_at=ts(now),
        finished_at=ts(now + dt.timedelta(seconds=30)),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        image_sync=types_pb2.ImageSyncDetails(folder_empty=True, skipped={"locked": 1}),
    )
    s.ReportRun(agent_pb2.ReportRunRequest(report=emptied), metadata=md, timeout=10)
    assert site_state() == (
        types_pb2.SITE_STATUS_WARNING,
        ["the image folder is suddenly empty (the sync before saw files)"],
    )
    bad = types_pb2.RunReport(
        id=str(uuid.uuid4()),
        kind=types_pb2.RUN_KIND_IMAGE_SYNC,
        started_at=ts(now),
        finished_at=ts(now + dt.timedelta(seconds=40)),
        outcome=types_pb2.RUN_OUTCOME_SUCCEEDED,
        image_sync=types_pb2.ImageSyncDetails(snapshot_id="not-an-id"),
    )
    assert (
        code_of(
            lambda: s.ReportRun(agent_pb2.ReportRunRequest(report=bad), metadata=md, timeout=10)
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )


def test_upload_streams_are_authenticated_and_guarded(shared_server: ServerHandle) -> None:
    """The gate checks the credential of the client streams before a byte is decoded,
    and a later message that does not decode ends the stream INVALID_ARGUMENT, keeping
    what came before it."""
    site = "off-guard"
    md = bearer(enroll_agent(shared_server, site))
    up = site_upload(site)
    agent_stub(shared_server).PutSiteKey(up.site_key_request(), metadata=md, timeout=10)
    creds = grpc.ssl_channel_credentials(shared_server.ca_path.read_bytes())
    with grpc.secure_channel(shared_server.address, creds) as ch:
        raw = ch.stream_unary(
            "/storesafe.v1.AgentService/PutChunks",
            request_serializer=None,
            response_deserializer=None,
        )
        first = put_request(up.chunks[0]).SerializeToString()
        garbage = b"\xff\xff\xff\xff\x0f"
        assert code_of(lambda: raw(iter([first, garbage]), metadata=md, timeout=10)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        assert code_of(lambda: raw(iter([first]), timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
        commit = ch.stream_unary(
            "/storesafe.v1.AgentService/CommitSnapshot",
            request_serializer=None,
            response_deserializer=None,
        )
        header = up.commit_requests()[0].SerializeToString()
        assert code_of(lambda: commit(iter([header, garbage]), metadata=md, timeout=10)) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        assert code_of(lambda: commit(iter([header]), timeout=10)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
    s = agent_stub(shared_server)
    ids = [up.chunks[0].chunk_id, up.chunks[1].chunk_id]
    reply = s.MissingChunks(agent_pb2.MissingChunksRequest(ids=ids), metadata=md, timeout=10)
    assert list(reply.missing) == ids[1:]
