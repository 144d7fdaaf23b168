"""Snapshot path rules: every way out of the restore folder is refused, Unicode kept as is."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.vault.errors import BadPath
from common.vault.paths import check_path, collision_key, path_key

PROPS = settings(max_examples=500, deadline=None, derandomize=True, database=None)


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("", "has no path"),
        ("/etc/passwd", "is absolute"),
        ("../x", "a '..' part"),
        ("a/../../x", "a '..' part"),
        ("a/./b", "a '.' part"),
        ("a//b", "an empty part"),
        ("a/b/", "an empty part"),
        ("C:/Windows/x", "holds ':'"),
        ("c:x", "holds ':'"),
        ("file.txt:stream", "holds ':'"),
        ("a\\b", "uses a backslash"),
        ("..\\..\\x", "uses a backslash"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("a\x1b[31mb", "control character"),
        ("a\x85b", "control character"),
        ("a\udcffb", "not valid Unicode"),
        ("x" * 256, "longer than 255"),
        ("a/" * 2100 + "b", "longer than 4096"),
    ],
)
def test_bad_paths_are_named(path: str, words: str) -> None:
    with pytest.raises(BadPath, match=words) as caught:
        check_path(path)
    assert caught.value.subject == path
    assert "\n" not in caught.value.message and "\x1b" not in caught.value.message


@pytest.mark.parametrize(
    "path",
    [
        "scan.jpg",
        "2026/12/Vertrag Müller.pdf",
        "ID cards/Ünal, Şule (copy 2).png",
        "日本語/契約書.tiff",
        "emoji 📄.pdf",
        ".hidden",
        "..foo/bar..",
        "a b/ c ",
        "x" * 255,
    ],
)
def test_good_paths_pass(path: str) -> None:
    assert check_path(path) == path


def test_nfc_and_nfd_are_two_names_but_collide_when_folded() -> None:
    nfc = unicodedata.normalize("NFC", "Café.jpg")
    nfd = unicodedata.normalize("NFD", "Café.jpg")
    assert nfc != nfd
    assert check_path(nfc) == nfc and check_path(nfd) == nfd  # kept exactly as given
    assert collision_key(nfc) == collision_key(nfd) == collision_key("CAFÉ.JPG")


def test_path_key_keeps_folder_contents_together() -> None:
    paths = ["a-x", "a/b", "a", "a/b/c", "a.txt", "b"]
    assert sorted(paths, key=path_key) == ["a", "a/b", "a/b/c", "a-x", "a.txt", "b"]


@PROPS
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
    | st.sampled_from(["..", "../a", "a/..", "/a", "a\\..\\b", "C:a", "a/./b", "\\\\server\\share"])
)
def test_an_accepted_path_never_leaves_the_restore_folder(path: str) -> None:
    try:
        check_path(path)
    except BadPath:
        return
    root = Path("/restore/here")
    target = Path(os.path.normpath(root / path))
    assert target.is_relative_to(root) and target != root
    assert not Path(path).is_absolute()
    assert all(part not in ("", ".", "..") for part in path.split("/"))
