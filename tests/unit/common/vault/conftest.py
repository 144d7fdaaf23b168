"""Keys and helpers shared by the sealed-format tests (real cryptography, no fakes)."""

from __future__ import annotations

import pytest

from common.vault.keys import FleetPrivateKey
from common.vault.sitekeys import SiteKeys

DATA_KEY_A = bytes(range(32))
DATA_KEY_B = bytes(range(1, 33))


@pytest.fixture(scope="session")
def fleet() -> FleetPrivateKey:
    return FleetPrivateKey.generate()


@pytest.fixture(scope="session")
def other_fleet() -> FleetPrivateKey:
    return FleetPrivateKey.generate()


@pytest.fixture(scope="session")
def keys() -> SiteKeys:
    return SiteKeys.derive("shop-a", DATA_KEY_A)


@pytest.fixture(scope="session")
def keys_b() -> SiteKeys:
    return SiteKeys.derive("shop-b", DATA_KEY_B)


def flip(blob: bytes, at: int, mask: int = 0x01) -> bytes:
    """`blob` with one bit of byte `at` flipped."""
    changed = bytearray(blob)
    changed[at] ^= mask
    return bytes(changed)
