"""Sub-keys of a site's data key: distinct per purpose and per site; keyed chunk ids."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgument
from common.vault.errors import BadKeyText
from common.vault.sitekeys import SiteKeys
from tests.unit.common.vault.conftest import DATA_KEY_A


def test_sub_keys_differ_by_purpose(keys: SiteKeys) -> None:
    subs = {keys.chunk_id_key, keys.content_key, keys.manifest_key, keys.data_key}
    assert len(subs) == 4
    assert all(len(k) == 32 for k in subs)
    assert len(keys.key_id) == 8


def test_same_data_key_other_site_gives_other_keys(keys: SiteKeys) -> None:
    other = SiteKeys.derive("shop-b", DATA_KEY_A)
    assert other.content_key != keys.content_key
    assert other.chunk_id_key != keys.chunk_id_key
    assert other.key_id != keys.key_id
    assert other.chunker_seed != keys.chunker_seed


def test_derivation_is_deterministic(keys: SiteKeys) -> None:
    assert SiteKeys.derive("shop-a", DATA_KEY_A) == keys


def test_keyed_ids_differ_per_site_and_leak_no_plain_hash(keys: SiteKeys, keys_b: SiteKeys) -> None:
    import hashlib

    import blake3

    data = b"the same scanned contract in two shops" * 100
    id_a, id_b = keys.chunk_id(data), keys_b.chunk_id(data)
    assert id_a != id_b
    assert len(id_a) == 64 and int(id_a, 16) >= 0
    assert id_a not in (blake3.blake3(data).hexdigest(), hashlib.sha256(data).hexdigest())
    assert keys.chunk_id(data) == id_a
    assert keys.chunk_id(data + b"!") != id_a


def test_bad_inputs() -> None:
    with pytest.raises(BadKeyText, match="has 32 bytes, not 31"):
        SiteKeys.derive("shop-a", bytes(31))
    with pytest.raises(InvalidArgument, match="not a valid site name"):
        SiteKeys.derive("../etc", DATA_KEY_A)
