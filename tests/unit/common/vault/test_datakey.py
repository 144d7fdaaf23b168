"""Site data keys sealed to the fleet key: round trip, wrong key file, site mix-up, tampering."""

from __future__ import annotations

import pytest

from common.vault import textcode
from common.vault.datakey import SealedDataKey, open_data_key, seal_data_key
from common.vault.errors import (
    BadKeyText,
    SiteMismatch,
    Tampered,
    Truncated,
    UnsupportedFormat,
    VaultError,
    WrongKey,
)
from common.vault.keys import FleetPrivateKey
from common.vault.sitekeys import key_id_of, new_data_key
from tests.unit.common.vault.conftest import DATA_KEY_A, flip

SITE = "shop-a"


def _raw(sealed: str) -> bytes:
    body = textcode.decode("ssdk1", sealed, "x")
    assert body is not None
    return body


def _text(raw: bytes) -> str:
    return textcode.encode("ssdk1", raw)  # what an attacker can always recompute


def test_round_trip(fleet: FleetPrivateKey) -> None:
    data_key = new_data_key()
    sealed = seal_data_key(SITE, data_key, fleet.public)
    assert sealed.startswith("ssdk1:")
    assert open_data_key(sealed, SITE, fleet) == data_key
    parsed = SealedDataKey.parse(sealed)
    assert parsed.site == SITE
    assert parsed.fingerprint == fleet.fingerprint
    assert parsed.key_id == key_id_of(SITE, data_key)


def test_each_seal_is_fresh(fleet: FleetPrivateKey) -> None:
    one = seal_data_key(SITE, DATA_KEY_A, fleet.public)
    two = seal_data_key(SITE, DATA_KEY_A, fleet.public)
    assert one != two
    assert open_data_key(one, SITE, fleet) == open_data_key(two, SITE, fleet) == DATA_KEY_A


def test_wrong_key_file(fleet: FleetPrivateKey, other_fleet: FleetPrivateKey) -> None:
    sealed = seal_data_key(SITE, DATA_KEY_A, fleet.public)
    with pytest.raises(WrongKey, match=r"this key file \(fingerprint .*\) is not the fleet key"):
        open_data_key(sealed, SITE, other_fleet)


def test_key_sealed_for_another_site(fleet: FleetPrivateKey) -> None:
    sealed = seal_data_key("shop-b", DATA_KEY_A, fleet.public)
    with pytest.raises(SiteMismatch, match="sealed for site shop-b, not for shop-a"):
        open_data_key(sealed, SITE, fleet)


def _region(raw: bytes, name: str) -> int:
    site_end = 29 + raw[28]
    return {
        "magic": 0,
        "version": 3,
        "fingerprint": 4,
        "key id": 20,
        "site length": 28,
        "site": 29,
        "ephemeral key": site_end,
        "ciphertext": site_end + 32,
        "tag": len(raw) - 1,
    }[name]


@pytest.mark.parametrize(
    ("region", "error"),
    [
        ("magic", BadKeyText),
        ("version", UnsupportedFormat),
        ("fingerprint", WrongKey),
        ("key id", Tampered),
        ("site length", Truncated),
        ("site", SiteMismatch),
        ("ephemeral key", Tampered),
        ("ciphertext", Tampered),
        ("tag", Tampered),
    ],
)
def test_a_changed_byte_in_every_region_is_refused(
    fleet: FleetPrivateKey, region: str, error: type[VaultError]
) -> None:
    raw = _raw(seal_data_key(SITE, DATA_KEY_A, fleet.public))
    changed = _text(flip(raw, _region(raw, region)))
    with pytest.raises(error) as caught:
        open_data_key(changed, SITE, fleet)
    assert "\n" not in caught.value.message
    # without a recomputed checksum the text form itself refuses it
    untouched_check = _text(raw)[:-6] + _text(flip(raw, _region(raw, region)))[-6:]
    if untouched_check != _text(raw):
        with pytest.raises(VaultError):
            open_data_key(untouched_check, SITE, fleet)


def test_a_site_rewritten_to_match_still_fails(fleet: FleetPrivateKey) -> None:
    raw = _raw(seal_data_key(SITE, DATA_KEY_A, fleet.public))
    rewritten = raw.replace(b"shop-a", b"shop-z", 1)
    with pytest.raises(Tampered, match="sealed data key of site shop-z was altered"):
        open_data_key(_text(rewritten), "shop-z", fleet)


@pytest.mark.parametrize("cut", [1, 16, 48, 60])
def test_truncated(fleet: FleetPrivateKey, cut: int) -> None:
    raw = _raw(seal_data_key(SITE, DATA_KEY_A, fleet.public))
    with pytest.raises((Truncated, Tampered)):
        open_data_key(_text(raw[:-cut]), SITE, fleet)
    with pytest.raises(Tampered, match="bytes its format does not allow"):
        open_data_key(_text(raw + b"\x00"), SITE, fleet)


@pytest.mark.parametrize("text", ["", "ssrk1:AAAA", "ssdk1:!!", "ssdk1:AAAAAAAA"])
def test_garbage(fleet: FleetPrivateKey, text: str) -> None:
    with pytest.raises(BadKeyText):
        open_data_key(text, SITE, fleet)


def test_bad_data_key_length(fleet: FleetPrivateKey) -> None:
    with pytest.raises(BadKeyText, match="has 32 bytes, not 16"):
        seal_data_key(SITE, bytes(16), fleet.public)
