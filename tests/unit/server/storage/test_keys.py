"""Blob names and digests: the strict alphabet, and digests as senders state them."""

from __future__ import annotations

import hashlib

import blake3
import pytest

from common.errors import InvalidArgument
from server.storage import Digest
from server.storage.keys import check_key, check_prefix


@pytest.mark.parametrize(
    "key",
    ["a", "sites/shop-1/chunks/0a1b", "sites/s_1/snapshots/2026-12-07T01.json", "A9/b.c-d_e"],
)
def test_good_names_pass(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "non-empty"),
        ("/etc/passwd", "empty part"),
        ("a/../b", "starting with a letter or digit"),
        ("..", "starting with a letter or digit"),
        (".", "starting with a letter or digit"),
        ("a//b", "empty part"),
        ("a/", "empty part"),
        ("a/.incoming/x", "starting with a letter or digit"),
        ("a b", "only letters"),
        ("a\\b", "only letters"),
        ("ä", "only letters"),
        ("a\x00b", "only letters"),
        ("a/b\n", "only letters"),
        ("x" * 129, "part longer than 128"),
        ("a/" * 300 + "a", "longer than 512"),
    ],
)
def test_bad_names_are_refused_with_the_reason(key: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        check_key(key)


def test_prefixes_may_end_in_a_slash_or_be_empty() -> None:
    assert check_prefix("") == ""
    assert check_prefix("sites/") == "sites/"
    assert check_prefix("sites/s1/chunks/ab") == "sites/s1/chunks/ab"
    for bad in ["/", "../", "a//", "/a"]:
        with pytest.raises(InvalidArgument):
            check_prefix(bad)


def test_a_long_bad_name_is_cut_in_the_message() -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_key("../" + "x" * 1000)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(
    ("algorithm", "hexed"),
    [
        ("sha256", hashlib.sha256(b"chunk").hexdigest()),
        ("blake3", blake3.blake3(b"chunk").hexdigest()),
    ],
)
def test_digests_parse_print_and_match(algorithm: str, hexed: str) -> None:
    digest = Digest.parse(f"{algorithm}:{hexed}")
    assert digest == Digest.of(b"chunk", algorithm)
    assert str(digest) == f"{algorithm}:{hexed}"
    assert digest.matches(b"chunk") and not digest.matches(b"other")


def test_a_digest_matches_only_with_its_own_algorithm() -> None:
    """The same hex under the other algorithm is another digest: bytes are always hashed
    with the algorithm the digest names."""
    hexed = hashlib.sha256(b"chunk").hexdigest()
    assert Digest("sha256", hexed).matches(b"chunk")
    assert not Digest("blake3", hexed).matches(b"chunk")
    with pytest.raises(InvalidArgument, match="not supported"):
        Digest.of(b"chunk", "md5")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("abc", "must look like sha256:<hex>"),
        ("md5:" + "0" * 32, "not supported"),
        ("sha256:" + "0" * 63, "64 lowercase"),
        ("sha256:" + "A" * 64, "64 lowercase"),
    ],
)
def test_bad_digests_are_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        Digest.parse(text)
