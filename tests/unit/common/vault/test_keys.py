"""The fleet public key's text form: round trip, checksum, garbage and weak points refused."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.vault import textcode
from common.vault.errors import BadKeyText
from common.vault.keys import FleetPrivateKey, FleetPublicKey, fingerprint_of

PROPS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def test_public_key_text_round_trips(fleet: FleetPrivateKey) -> None:
    text = fleet.public.text
    assert text.startswith("ssrk1:")
    assert FleetPublicKey.parse(text) == fleet.public
    assert FleetPublicKey.parse(f"  {text}\n") == fleet.public
    assert FleetPublicKey.parse(text).fingerprint == fleet.fingerprint


def test_fingerprint_is_stable_grouped_hex() -> None:
    fp = fingerprint_of(bytes(32))
    assert fp == fingerprint_of(bytes(32))
    assert len(fp.split("-")) == 8
    assert all(len(group) == 4 for group in fp.split("-"))
    assert fp != fingerprint_of(bytes(31) + b"\x01")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "is not a fleet public key"),
        ("hello", "is not a fleet public key"),
        ("ssdk1:AAAA", "is not a fleet public key"),
        ("ssrk1:", "characters that base64url never uses"),
        ("ssrk1:abc$def", "characters that base64url never uses"),
        ("ssrk1:A", "cut short"),
        ("ssrk1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "fails its checksum"),
    ],
)
def test_garbage_is_refused_with_one_sentence(text: str, words: str) -> None:
    with pytest.raises(BadKeyText, match=words) as caught:
        FleetPublicKey.parse(text)
    assert "\n" not in str(caught.value)
    assert caught.value.code == "vault.bad_key_text"


def test_wrong_length_with_a_good_checksum_is_refused() -> None:
    with pytest.raises(BadKeyText, match="has 32 bytes, not 31"):
        FleetPublicKey.parse(textcode.encode("ssrk1", bytes(range(31))))


def test_a_weak_point_is_refused() -> None:
    # the all-zero point has order 1: every exchange with it gives zero
    with pytest.raises(BadKeyText, match="weak X25519 point"):
        FleetPublicKey.parse(textcode.encode("ssrk1", bytes(32)))


@PROPS
@given(at=st.integers(min_value=6, max_value=53), char=st.sampled_from("AQgw_-9z"))
def test_any_changed_character_is_caught(fleet: FleetPrivateKey, at: int, char: str) -> None:
    text = fleet.public.text
    changed = text[:at] + char + text[at + 1 :]
    if changed == text:
        return
    with pytest.raises(BadKeyText):
        FleetPublicKey.parse(changed)


def test_a_lost_character_is_caught(fleet: FleetPrivateKey) -> None:
    text = fleet.public.text
    for at in range(6, len(text)):
        with pytest.raises(BadKeyText):
            FleetPublicKey.parse(text[:at] + text[at + 1 :])
