"""The one suite every blob store backend passes: filesystem, moto's S3 and SeaweedFS."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from common.errors import InvalidArgument, NotFound
from server.storage import BlobConflict, BlobInfo, BlobStore, Digest, DigestMismatch

T = TypeVar("T")
KEY = "sites/shop-1/chunks/0a1b2c"


def run(call: Awaitable[T]) -> T:
    async def main() -> T:
        return await call

    return asyncio.run(main())


async def save(store: BlobStore, key: str, data: bytes) -> bool:
    return (await store.save(key, data, Digest.of(data, "blake3"))).created


async def listed(store: BlobStore, prefix: str = "") -> dict[str, int]:
    return {info.key: info.size async for info in store.list(prefix)}


def test_round_trip(store: BlobStore) -> None:
    data = os.urandom(1000)
    saved = run(store.save(KEY, data, Digest.of(data, "blake3")))
    assert (saved.key, saved.size, saved.created) == (KEY, 1000, True)
    assert run(store.load(KEY)) == data
    assert run(store.stat([KEY])) == {KEY: BlobInfo(KEY, 1000)}


def test_empty_blob_round_trip(store: BlobStore) -> None:
    assert run(save(store, KEY, b""))
    assert run(store.load(KEY)) == b""
    assert run(store.stat([KEY])) == {KEY: BlobInfo(KEY, 0)}


def test_saving_the_same_bytes_again_succeeds_without_creating(store: BlobStore) -> None:
    data = os.urandom(500)
    assert run(save(store, KEY, data)) is True
    assert run(save(store, KEY, data)) is False
    assert run(store.load(KEY)) == data


def test_other_bytes_under_a_stored_name_are_refused(store: BlobStore) -> None:
    first, second = os.urandom(500), os.urandom(500)
    run(save(store, KEY, first))
    with pytest.raises(BlobConflict, match="never overwritten") as caught:
        run(save(store, KEY, second))
    assert caught.value.code == "blob_conflict"
    assert run(store.load(KEY)) == first


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_a_digest_mismatch_is_refused_and_leaves_nothing(store: BlobStore, algorithm: str) -> None:
    data = os.urandom(300)
    with pytest.raises(DigestMismatch, match="nothing was stored"):
        run(store.save(KEY, data, Digest.of(data + b"x", algorithm)))
    other = "sha256" if algorithm == "blake3" else "blake3"
    with pytest.raises(DigestMismatch, match="nothing was stored"):  # the right hex, other name
        run(store.save(KEY, data, Digest(other, Digest.of(data, algorithm).hex)))
    assert run(store.stat([KEY])) == {KEY: None}
    assert run(listed(store)) == {}
    assert run(save(store, KEY, data)) is True  # the name is still free


def test_stat_and_missing_answer_for_a_batch(store: BlobStore) -> None:
    keys = [f"sites/s1/chunks/{n:04d}" for n in range(6)]
    for key in keys[::2]:
        run(save(store, key, key.encode()))
    found = run(store.stat(keys))
    assert {key: info.size if info else None for key, info in found.items()} == {
        key: (len(key) if n % 2 == 0 else None) for n, key in enumerate(keys)
    }
    assert run(store.missing(list(reversed(keys)))) == [keys[5], keys[3], keys[1]]


def test_list_by_prefix_pages_past_a_thousand(store: BlobStore) -> None:
    inside = [f"sites/s1/chunks/{n:05d}" for n in range(1005)]
    outside = ["sites/s10/chunks/00000", "sites/s2/chunks/00001", "sites/s1x"]

    async def fill() -> None:
        await asyncio.gather(*(save(store, key, b"x" * (n % 7)) for n, key in enumerate(inside)))
        await asyncio.gather(*(save(store, key, b"y") for key in outside))

    run(fill())
    got = run(listed(store, "sites/s1/"))
    assert got == {key: n % 7 for n, key in enumerate(inside)}
    assert set(run(listed(store, "sites/s1/chunks/0100"))) == {
        f"sites/s1/chunks/0100{d}" for d in range(5)
    }
    assert set(run(listed(store, "sites/s1"))) == {*inside, outside[0], outside[2]}
    assert len(run(listed(store))) == len(inside) + len(outside)
    assert run(listed(store, "sites/nobody/")) == {}


def test_remove_deletes_and_is_idempotent(store: BlobStore) -> None:
    run(save(store, KEY, b"old"))
    run(store.remove(KEY))
    with pytest.raises(NotFound):
        run(store.load(KEY))
    assert run(store.stat([KEY])) == {KEY: None}
    run(store.remove(KEY))  # garbage collection may retry
    assert run(save(store, KEY, b"new")) is True  # removed by GC: the name may be used again
    assert run(store.load(KEY)) == b"new"


def test_listing_tells_when_each_blob_was_written(store: BlobStore) -> None:
    """Garbage collection deletes orphan blobs only once they are older than its margin."""
    before = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    run(save(store, KEY, b"dated"))
    after = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)

    async def infos() -> list[BlobInfo]:
        return [info async for info in store.list("sites/shop-1/")]

    (info,) = run(infos())
    assert info.key == KEY and info.modified is not None
    assert before <= info.modified <= after


def test_loading_a_missing_blob_is_not_found(store: BlobStore) -> None:
    with pytest.raises(NotFound, match="sites/shop-1/chunks/0a1b2c is not in the store"):
        run(store.load(KEY))


@pytest.mark.parametrize("algorithm", ["blake3", "sha256"])
def test_digest_reads_the_size_and_digest_of_what_is_stored(
    store: BlobStore, algorithm: str
) -> None:
    data = os.urandom(3000)
    assert run(save(store, KEY, data))
    assert run(store.digest(KEY, algorithm)) == (3000, Digest.of(data, algorithm))
    with pytest.raises(NotFound):
        run(store.digest(KEY + "ff", algorithm))


def test_load_many_reads_in_order_and_names_a_missing_blob(store: BlobStore) -> None:
    blobs = {f"{KEY}{i}": os.urandom(100 + i) for i in range(5)}
    for key, data in blobs.items():
        run(save(store, key, data))
    order = [f"{KEY}3", f"{KEY}0", f"{KEY}4", f"{KEY}0"]
    assert run(store.load_many(order)) == [blobs[k] for k in order]
    assert run(store.load_many([])) == []
    with pytest.raises(NotFound, match=f"{KEY}9 is not in the store"):
        run(store.load_many([f"{KEY}1", f"{KEY}9"]))
    # an empty blob, one of several MiB, and a name that is only a folder of other names
    sized = {f"{KEY}e": b"", f"{KEY}big": os.urandom(3 * 1024 * 1024 + 7)}
    for key, data in sized.items():
        run(save(store, key, data))
    assert run(store.load_many([*sized, f"{KEY}1"])) == [*sized.values(), blobs[f"{KEY}1"]]
    run(save(store, f"{KEY}dir/inside", b"x"))
    with pytest.raises(NotFound, match=f"{KEY}dir is not in the store"):
        run(store.load_many([f"{KEY}0", f"{KEY}dir"]))


BAD_NAMES = ["", "/abs/x", "a/../b", "..", "a//b", "a/", "a/.hidden", "a b", "a\\b", "ä", "x" * 600]


def test_bad_names_are_refused_before_the_backend(store: BlobStore) -> None:
    for bad in BAD_NAMES:
        with pytest.raises(InvalidArgument, match="blob name"):
            run(save(store, bad, b"x"))
        with pytest.raises(InvalidArgument, match="blob name"):
            run(store.load(bad))
        with pytest.raises(InvalidArgument, match="blob name"):
            run(store.stat(["ok/1", bad]))
        with pytest.raises(InvalidArgument, match="blob name"):
            run(store.remove(bad))
    with pytest.raises(InvalidArgument, match="blob name"):
        run(listed(store, "../"))
    assert run(listed(store)) == {}


def test_concurrent_writers_of_one_name_one_wins_untorn(store: BlobStore) -> None:
    contents = [bytes([n]) * 200_000 for n in range(8)]

    async def race() -> list[bool | BaseException]:
        return await asyncio.gather(
            *(save(store, KEY, data) for data in contents), return_exceptions=True
        )

    outcomes = run(race())
    winners = [n for n, outcome in enumerate(outcomes) if outcome is True]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, BlobConflict) for n, o in enumerate(outcomes) if n != winners[0])
    assert run(store.load(KEY)) == contents[winners[0]]


def test_concurrent_writers_into_new_folders_all_succeed(store: BlobStore) -> None:
    keys = [f"sites/s{n % 4}/chunks/{n % 16:02x}/{n:04d}" for n in range(256)]

    async def fill() -> list[bool]:
        return await asyncio.gather(*(save(store, key, key.encode()) for key in keys))

    assert run(fill()) == [True] * len(keys)
    assert run(listed(store)) == {key: len(key) for key in keys}


def test_concurrent_retries_of_the_same_blob_all_succeed(store: BlobStore) -> None:
    data = os.urandom(100_000)

    async def race() -> list[bool]:
        return await asyncio.gather(*(save(store, KEY, data) for _ in range(6)))

    assert sorted(run(race())) == [False] * 5 + [True]
    assert run(store.load(KEY)) == data


def test_a_blob_of_a_few_mib_round_trips(store: BlobStore) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    assert run(save(store, KEY, data)) is True
    assert run(store.load(KEY)) == data
    assert run(store.stat([KEY]))[KEY] == BlobInfo(KEY, len(data))


def test_usage_is_known_or_plainly_unknown(store: BlobStore) -> None:
    usage = run(store.usage())
    if store.describe().startswith("s3://"):
        assert (usage.free_bytes, usage.total_bytes) == (None, None)
    else:
        assert usage.total_bytes is not None and usage.free_bytes is not None
        assert 0 < usage.free_bytes <= usage.total_bytes


def many(blobs: dict[str, bytes]) -> list[tuple[str, bytes, Digest]]:
    return [(key, data, Digest.of(data, "blake3")) for key, data in blobs.items()]


def test_a_batch_is_saved_in_order_and_a_stored_name_is_not_created_again(
    store: BlobStore,
) -> None:
    blobs = {f"sites/s1/chunks/{n % 3:02x}/{n:04d}": os.urandom(100 + n) for n in range(12)}
    first = next(iter(blobs))
    run(save(store, first, blobs[first]))
    saved, error = run(store.save_many(many(blobs)))
    assert error is None
    assert [(s.key, s.size, s.created) for s in saved] == [
        (key, len(data), key != first) for key, data in blobs.items()
    ]
    assert run(listed(store)) == {key: len(data) for key, data in blobs.items()}
    assert run(store.load_many(list(blobs))) == list(blobs.values())
    assert run(store.save_many([])) == ([], None)


def test_a_digest_mismatch_in_a_batch_stops_it_there(store: BlobStore) -> None:
    keys = [f"sites/s1/chunks/{n:04d}" for n in range(3)]
    blobs = many({key: os.urandom(200) for key in keys})
    blobs[1] = (keys[1], blobs[1][1], Digest.of(b"other bytes", "blake3"))
    saved, error = run(store.save_many(blobs))
    assert [s.key for s in saved] == keys[:1]
    assert isinstance(error, DigestMismatch) and keys[1] in error.message
    assert run(listed(store)) == {keys[0]: 200}  # neither it nor what follows is written


def test_other_bytes_under_a_name_in_a_batch_stop_it_there(store: BlobStore) -> None:
    keys = [f"sites/s1/chunks/{n:04d}" for n in range(3)]
    run(save(store, keys[1], b"first bytes"))
    saved, error = run(store.save_many(many({key: os.urandom(50) for key in keys})))
    assert [s.key for s in saved] == keys[:1]
    assert isinstance(error, BlobConflict) and "never overwritten" in error.message
    assert run(store.load(keys[1])) == b"first bytes"


def test_a_batch_names_each_blob_once(store: BlobStore) -> None:
    with pytest.raises(InvalidArgument, match="names each blob once"):
        run(store.save_many(many({KEY: b"a"}) * 2))
    assert run(listed(store)) == {}
