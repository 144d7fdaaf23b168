"""Snapshots: manifests sealed and opened whole, every entry checked both ways."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.vault import envelope
from common.vault.chunking import database_manifests
from common.vault.chunks import SealedChunk, seal_chunk
from common.vault.errors import (
    BadManifest,
    BadPath,
    SiteMismatch,
    Tampered,
    UnsupportedFormat,
    WrongKey,
)
from common.vault.manifest import Entry, SnapshotInfo, sorted_entries
from common.vault.sitekeys import SiteKeys
from common.vault.snapshot import SealedSnapshot, open_snapshot, seal_snapshot, seal_streamed
from tests.unit.common.vault.conftest import flip

WHEN = dt.datetime(2026, 12, 7, 2, 0, tzinfo=dt.UTC)
MTIME = 1_765_000_000_123_456_789


def _entry(keys: SiteKeys, path: str, content: bytes = b"x") -> Entry:
    chunks = ((keys.chunk_id(content), len(content)),) if content else ()
    return Entry(path, len(content), MTIME, chunks)


def _info(site: str = "shop-a") -> SnapshotInfo:
    return SnapshotInfo(site, WHEN, "Scans", {"kind": "images"})


def _open(keys: SiteKeys, sealed: SealedSnapshot, store: dict[str, bytes] | None = None):  # type: ignore[no-untyped-def]
    parts = store if store is not None else {p.chunk_id: p.blob for p in sealed.parts}
    return open_snapshot(keys, sealed.snapshot_id, sealed.record, parts.__getitem__)


def _many(keys: SiteKeys, count: int) -> list[Entry]:
    return sorted_entries(
        _entry(keys, f"scans/{i // 1000:03d}/img_{i:06d}.jpg", str(i).encode())
        for i in range(count)
    )


def test_round_trip_with_unicode_and_empty_files(keys: SiteKeys) -> None:
    nfc, nfd = (unicodedata.normalize(f, "Café.pdf") for f in ("NFC", "NFD"))
    entries = sorted_entries(
        [
            _entry(keys, "empty.txt", b""),
            _entry(keys, nfc, b"one"),
            _entry(keys, nfd, b"two"),
            _entry(keys, "日本/契約.png", b"three"),
            Entry("big.bin", 10, -5, ((keys.chunk_id(b"a" * 4), 4), (keys.chunk_id(b"b" * 6), 6))),
        ]
    )
    sealed = seal_snapshot(keys, _info(), entries)
    snapshot = _open(keys, sealed)
    assert snapshot.entries == entries
    assert snapshot.info == _info()
    assert snapshot.created == WHEN and snapshot.site == "shop-a"
    assert snapshot.size == sealed.size == 21
    content_ids = {c for e in entries for c, _ in e.chunks}
    assert sealed.references == content_ids | {p.chunk_id for p in sealed.parts}
    assert b"Caf" not in sealed.record and all(b"Caf" not in p.blob for p in sealed.parts)


def test_an_empty_snapshot(keys: SiteKeys) -> None:
    sealed = seal_snapshot(keys, _info(), [])
    assert sealed.parts == [] and sealed.entries == 0
    assert _open(keys, sealed).entries == []


def test_100k_entries_seal_and_open(keys: SiteKeys) -> None:
    entries = _many(keys, 100_000)
    sealed = seal_snapshot(keys, _info(), entries)
    assert sealed.entries == 100_000
    assert 50 < len(sealed.parts) < 1000
    assert _open(keys, sealed).entries == entries


def test_the_next_snapshot_reuses_most_manifest_chunks(keys: SiteKeys) -> None:
    entries = _many(keys, 20_000)
    first = seal_snapshot(keys, _info(), entries)
    entries[10_000] = _entry(keys, entries[10_000].path, b"changed")
    second = seal_snapshot(keys, _info(), entries)
    old = {p.chunk_id for p in first.parts}
    new = [p for p in second.parts if p.chunk_id not in old]
    assert len(first.parts) > 20
    assert 1 <= len(new) <= 3


@pytest.mark.parametrize(
    ("paths", "error", "words"),
    [
        (["a.jpg", "a.jpg"], BadPath, "'a.jpg' appears twice"),
        (["b.jpg", "a.jpg"], BadManifest, "'a.jpg' is out of order"),
        (["a", "a/b.jpg"], BadPath, "'a' is a file and also the folder of 'a/b.jpg'"),
        (["ok.jpg", "../evil"], BadPath, "'../evil' has a '..' part"),
        (["/etc/shadow"], BadPath, "is absolute"),
    ],
)
def test_bad_manifests_are_refused_when_built(
    keys: SiteKeys, paths: list[str], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        seal_snapshot(keys, _info(), [_entry(keys, p) for p in paths])


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (Entry("a", 2, MTIME, (("0" * 64, 1),)), "has size 2 but chunks of 1 bytes"),
        (Entry("a", 1, MTIME, (("zz", 1),)), "lists a bad chunk id"),
        (Entry("a", 0, MTIME, (("0" * 64, 0),)), "lists a chunk of bad length"),
        (Entry("a", -1, MTIME), "has a bad size"),
        (Entry("a", 0, 2**64), "has a bad mtime"),
        (Entry("a", True, MTIME), "has a bad size"),  # type: ignore[arg-type]
    ],
)
def test_bad_entries_are_named(keys: SiteKeys, entry: Entry, words: str) -> None:
    with pytest.raises(BadManifest, match=words):
        seal_snapshot(keys, _info(), [entry])


def _forged(
    keys: SiteKeys, lines: list[bytes], **record: object
) -> tuple[str, bytes, dict[str, bytes]]:
    """A snapshot sealed with the right keys around a manifest that breaks the rules
    (what a buggy or hostile agent could upload): opening must still refuse it."""
    part = seal_chunk(keys, b"".join(lines))
    raw = {
        "format": 1,
        "site": "shop-a",
        "created": "2026-12-07T02:00:00Z",
        "source": "Scans",
        "tags": {},
        "entries": len(lines),
        "bytes": 1,
        "parts": [part.chunk_id],
    }
    raw.update(record)
    text = orjson.dumps(raw)
    snapshot_id = keys.snapshot_id(text)
    _, blob = envelope.seal(
        envelope.Kind.SNAPSHOT, keys.manifest_key, keys.key_id, snapshot_id, text
    )
    return snapshot_id, blob, {part.chunk_id: part.blob}


def _line(keys: SiteKeys, path: str) -> bytes:
    return _entry(keys, path).line()


@pytest.mark.parametrize(
    ("paths", "error", "words"),
    [
        (["a.jpg", "a.jpg"], BadPath, "appears twice"),
        (["../../etc/cron.d/x"], BadPath, "has a '..' part"),
        (["C:/boot.ini"], BadPath, "holds ':'"),
        (["b", "a"], BadManifest, "out of order"),
        (["a", "a/b"], BadPath, "is a file and also the folder"),
    ],
)
def test_bad_manifests_are_refused_when_opened(
    keys: SiteKeys, paths: list[str], error: type[Exception], words: str
) -> None:
    snapshot_id, blob, store = _forged(keys, [_line(keys, p) for p in paths], bytes=len(paths))
    with pytest.raises(error, match=words):
        open_snapshot(keys, snapshot_id, blob, store.__getitem__)


def test_totals_that_lie_are_refused(keys: SiteKeys) -> None:
    snapshot_id, blob, store = _forged(keys, [_line(keys, "a")], entries=2)
    with pytest.raises(BadManifest, match="lists 1 entries of 1 bytes, its record says 2 of 1"):
        open_snapshot(keys, snapshot_id, blob, store.__getitem__)


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ([b"not json\n"], "manifest line 1 of snapshot .* is not a manifest entry"),
        ([b'{"p": "a", "s": 1}\n'], "is not a manifest entry"),
        ([b'{"p": "a", "s": 1, "m": 1, "c": [["x"]]}\n'], "is not a manifest entry"),
        ([b'{"p": "a", "s": 1, "m": 1, "c": []}'], "ends inside an entry"),
    ],
)
def test_malformed_lines(keys: SiteKeys, lines: list[bytes], words: str) -> None:
    snapshot_id, blob, store = _forged(keys, lines)
    with pytest.raises(BadManifest, match=words):
        open_snapshot(keys, snapshot_id, blob, store.__getitem__)


@pytest.mark.parametrize(
    ("record", "error", "words"),
    [
        ({"format": 2}, UnsupportedFormat, "format 2 is unknown"),
        ({"site": "shop-b"}, SiteMismatch, "is of site shop-b, not shop-a"),
        ({"parts": ["nope"]}, BadManifest, "record is malformed"),
        ({"created": "yesterday"}, BadManifest, "record is malformed"),
        ({"entries": -1}, BadManifest, "bad totals"),
        ({"tags": {"Bad Tag": "x"}}, BadManifest, "tag name 'Bad Tag'"),
    ],
)
def test_bad_records(
    keys: SiteKeys, record: dict[str, object], error: type[Exception], words: str
) -> None:
    snapshot_id, blob, store = _forged(keys, [_line(keys, "a")], **record)
    with pytest.raises(error, match=words):
        open_snapshot(keys, snapshot_id, blob, store.__getitem__)


def test_tampered_record_and_parts_are_named(keys: SiteKeys) -> None:
    sealed = seal_snapshot(keys, _info(), _many(keys, 3000))
    with pytest.raises(Tampered, match=f"snapshot {sealed.snapshot_id} failed"):
        open_snapshot(keys, sealed.snapshot_id, flip(sealed.record, -3), {}.__getitem__)
    store = {p.chunk_id: p.blob for p in sealed.parts}
    victim = sealed.parts[1].chunk_id
    store[victim] = flip(store[victim], 40)
    with pytest.raises(Tampered, match=f"chunk {victim} failed"):
        _open(keys, sealed, store)


def test_swapped_snapshot_ids_fail(keys: SiteKeys) -> None:
    one = seal_snapshot(keys, _info(), [_entry(keys, "a")])
    two = seal_snapshot(keys, _info(), [_entry(keys, "b")])
    with pytest.raises(Tampered, match=f"snapshot {two.snapshot_id} failed"):
        open_snapshot(keys, two.snapshot_id, one.record, {}.__getitem__)


def test_another_sites_snapshot(keys: SiteKeys, keys_b: SiteKeys) -> None:
    theirs = seal_snapshot(keys_b, _info("shop-b"), [_entry(keys_b, "a")])
    with pytest.raises(WrongKey, match=f"snapshot {theirs.snapshot_id} was sealed with"):
        _open(keys, theirs)
    with pytest.raises(SiteMismatch, match="cannot be sealed with shop-a's key"):
        seal_snapshot(keys, _info("shop-b"), [])


def test_bad_info(keys: SiteKeys) -> None:
    with pytest.raises(BadManifest, match="must carry a time zone"):
        seal_snapshot(keys, SnapshotInfo("shop-a", dt.datetime(2026, 1, 1), "S"), [])
    with pytest.raises(BadManifest, match="is not a printable name"):
        seal_snapshot(keys, SnapshotInfo("shop-a", WHEN, "a\nb"), [])


_NAME = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=["Cc", "Cs"], exclude_characters="/\\:"
    ),
    min_size=1,
    max_size=12,
).filter(lambda part: part not in (".", ".."))


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    files=st.dictionaries(
        st.lists(_NAME, min_size=1, max_size=3).map("/".join),
        st.tuples(st.binary(max_size=64), st.integers(-(2**63) + 1, 2**63 - 1)),
        max_size=20,
    )
)
def test_any_folder_round_trips(keys: SiteKeys, files: dict[str, tuple[bytes, int]]) -> None:
    entries = sorted_entries(
        Entry(path, len(data), mtime, ((keys.chunk_id(data), len(data)),) if data else ())
        for path, (data, mtime) in files.items()
    )
    folders = {
        "/".join(e.path.split("/")[:i]) for e in entries for i in range(1, e.path.count("/") + 1)
    }
    if any(e.path in folders for e in entries):
        with pytest.raises(BadPath, match="is a file and also the folder"):
            seal_snapshot(keys, _info(), entries)
        return
    sealed = seal_snapshot(keys, _info(), entries)
    assert _open(keys, sealed).entries == entries


def test_seal_streamed_seals_what_seal_snapshot_does_handing_pieces_on_as_cut(
    keys: SiteKeys,
) -> None:
    """The same snapshot and pieces as seal_snapshot; the first piece is handed on long before
    the last entry is read (memory holds a piece, not the manifest)."""
    entries = [_entry(keys, f"db/{n:06d}", n.to_bytes(4, "big")) for n in range(3000)]
    read = [0]
    first_piece_after: list[int] = []

    def counted() -> Iterator[Entry]:
        for entry in entries:
            read[0] += 1
            yield entry

    sent: list[SealedChunk] = []

    def send(part: SealedChunk) -> None:
        if not sent:
            first_piece_after.append(read[0])
        sent.append(part)

    profile = database_manifests(1 << 20)
    streamed = seal_streamed(keys, _info(), counted(), send, profile=profile)
    whole = seal_snapshot(keys, _info(), entries, profile=profile)
    assert streamed.snapshot_id == whole.snapshot_id  # the record's id (its blob: a new nonce)
    assert streamed.part_ids == [p.chunk_id for p in whole.parts] == [p.chunk_id for p in sent]
    assert (streamed.entries, streamed.size) == (whole.entries, whole.size)
    assert len(sent) > 3 and first_piece_after[0] < len(entries) // 2
    opened = open_snapshot(
        keys, streamed.snapshot_id, streamed.record, {p.chunk_id: p.blob for p in sent}.__getitem__
    )
    assert opened.entries == entries


def test_entries_that_break_their_own_rules_are_left_out_when_asked(keys: SiteKeys) -> None:
    """With `unlisted`, a bad path, size or chunk list is handed over and left out, even a
    whole block of them (the seal checks entries 256 at a time); what is sealed is what a
    list of the good entries alone seals to. Order and duplicates still stop the seal."""
    good = _many(keys, 600)
    bad = [Entry(f"scans/000/bad_{i:04d}/../x", 1, MTIME) for i in range(300)]
    bad.append(Entry("scans/000/img_000000.jpg/short", 2, MTIME, ((keys.chunk_id(b"x"), 1),)))
    mixed = [*sorted_entries([*good[:5], *bad[:300], *good[5:]]), bad[300]]
    left_out: list[str] = []
    sealed = seal_snapshot(keys, _info(), mixed, unlisted=lambda exc: left_out.append(exc.message))
    assert len(left_out) == 301 and "has a '..' part" in left_out[0]
    assert "has size 2 but chunks of 1 bytes" in left_out[-1]
    alone = seal_snapshot(keys, _info(), good)
    assert (sealed.snapshot_id, sealed.entries, sealed.references) == (
        alone.snapshot_id,
        600,
        alone.references,
    )
    assert _open(keys, sealed).entries == good
    with pytest.raises(BadPath, match="appears twice"):
        seal_snapshot(keys, _info(), [good[0], good[0]], unlisted=lambda exc: None)
    with pytest.raises(BadPath, match=r"'\.\./evil' has a '\.\.' part"):
        seal_snapshot(keys, _info(), [_entry(keys, "../evil")])  # without `unlisted`
