"""Index keys order like the walk, Windows long paths, and what counts as a link."""

from __future__ import annotations

import os
import stat
import types

from hypothesis import given
from hypothesis import strategies as st

from agent.images.paths import (
    IO_REPARSE_TAG_MOUNT_POINT,
    IO_REPARSE_TAG_SYMLINK,
    key_of,
    link_kind,
    relpath_of,
    windows_long_path,
)
from agent.images.walk import changed_ns

names = st.text(
    st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=6
)


@given(st.lists(st.lists(names, min_size=1, max_size=4), min_size=2, max_size=8))
def test_key_order_is_component_tuple_order(paths):
    by_tuple = sorted(paths, key=lambda p: tuple(os.fsencode(c) for c in p))
    by_key = sorted(paths, key=key_of)
    assert [key_of(p) for p in by_tuple] == [key_of(p) for p in by_key]


raw_names = st.binary(min_size=1, max_size=8).filter(lambda b: b"/" not in b and b"\0" not in b)


@given(st.lists(raw_names, min_size=1, max_size=4))
def test_the_reported_path_is_the_components_decoded_and_joined(parts):
    """Whatever bytes the names hold (undecodable ones too), decoding the key whole gives
    each component as the file system decodes it, joined with '/'."""
    names = [os.fsdecode(p) for p in parts]
    assert relpath_of(key_of(names)) == "/".join(names)


def test_a_subtree_sorts_right_after_its_folder():
    keys = sorted(
        key_of(p) for p in [("a",), ("a", "z"), ("a!",), ("a.b",), ("a", "b", "c"), ("b",)]
    )
    assert [relpath_of(k) for k in keys] == ["a", "a/b/c", "a/z", "a!", "a.b", "b"]


def test_windows_long_paths():
    assert windows_long_path("C:\\RTOwin\\Images") == "\\\\?\\C:\\RTOwin\\Images"
    assert windows_long_path("C:/RTOwin/Images/../Scans/.") == "\\\\?\\C:\\RTOwin\\Scans"
    assert windows_long_path("\\\\server\\share\\Images") == "\\\\?\\UNC\\server\\share\\Images"
    assert windows_long_path("\\\\?\\D:\\x") == "\\\\?\\D:\\x"


def fake_stat(mode: int, attributes: int = 0, tag: int = 0) -> types.SimpleNamespace:
    return types.SimpleNamespace(st_mode=mode, st_file_attributes=attributes, st_reparse_tag=tag)


def test_links_and_reparse_points():
    assert link_kind(fake_stat(stat.S_IFLNK | 0o777)) == "symbolic link"
    assert link_kind(fake_stat(stat.S_IFREG)) is None
    assert (
        link_kind(fake_stat(stat.S_IFDIR, 0x400, IO_REPARSE_TAG_MOUNT_POINT))
        == "junction or mount point"
    )
    assert link_kind(fake_stat(stat.S_IFDIR, 0x400, IO_REPARSE_TAG_SYMLINK)) == "symbolic link"
    assert "tag 0xa000001d" in link_kind(
        fake_stat(stat.S_IFREG, 0x400, 0xA000001D)
    )  # name surrogate
    assert link_kind(fake_stat(stat.S_IFREG, 0x400, 0x80000013)) is None  # deduplicated file: data
    assert link_kind(fake_stat(stat.S_IFREG, 0x400, 0x9000001A)) is None  # cloud file: data


def test_a_file_changed_when_its_mtime_or_posix_ctime_says_windows_ctime_is_creation():
    found = os.stat_result(
        (0o100644, 1, 1, 1, 0, 0, 5, 0, 0, 0),
        {"st_mtime_ns": 100, "st_ctime_ns": 900, "st_atime_ns": 0},
    )
    assert changed_ns(found, windows=False) == 900
    assert changed_ns(found, windows=True) == 100
