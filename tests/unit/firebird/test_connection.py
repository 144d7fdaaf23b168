"""Client library search (Windows on a fake filesystem), targets, ASCII rule, versions."""

from __future__ import annotations

import pytest

from common.firebird.connection import (
    FirebirdTarget,
    locate_client_library,
    parse_version,
    require_ascii,
)
from common.firebird.errors import ClientLibraryMissing, NonAsciiPath
from tests.support.agentfakes import fake_fs


def test_windows_prefers_3_0_root_dll() -> None:
    exists = fake_fs(
        r"C:\Program Files\Firebird\Firebird_3_0\fbclient.dll",
        r"C:\Program Files\Firebird\Firebird_2_5\bin\fbclient.dll",
    )
    found = locate_client_library(None, platform="win32", exists=exists)
    assert found == r"C:\Program Files\Firebird\Firebird_3_0\fbclient.dll"


def test_windows_2_5_keeps_dll_in_bin() -> None:
    exists = fake_fs(r"C:\Program Files\Firebird\Firebird_2_5\bin\fbclient.dll")
    found = locate_client_library(None, platform="win32", exists=exists)
    assert found == r"C:\Program Files\Firebird\Firebird_2_5\bin\fbclient.dll"


def test_windows_registry_root_comes_first() -> None:
    exists = fake_fs(r"D:\FB\fbclient.dll", r"C:\Program Files\Firebird\Firebird_3_0\fbclient.dll")
    found = locate_client_library(None, platform="win32", exists=exists, roots=[r"D:\FB"])
    assert found == r"D:\FB\fbclient.dll"


def test_windows_32_bit_python_uses_wow64() -> None:
    exists = fake_fs(r"C:\FB3\WOW64\fbclient.dll", r"C:\FB3\fbclient.dll")
    found = locate_client_library(r"C:\FB3", platform="win32", exists=exists, python_bits=32)
    assert found == r"C:\FB3\WOW64\fbclient.dll"
    found64 = locate_client_library(r"C:\FB3", platform="win32", exists=exists)
    assert found64 == r"C:\FB3\fbclient.dll"


def test_windows_setting_may_name_the_dll_or_a_2_5_root() -> None:
    exists = fake_fs(r"E:\x\fbclient.dll", r"E:\fb25\bin\fbclient.dll")
    assert (
        locate_client_library(r"E:\x\fbclient.dll", platform="win32", exists=exists)
        == r"E:\x\fbclient.dll"
    )
    assert (
        locate_client_library(r"E:\fb25", platform="win32", exists=exists)
        == r"E:\fb25\bin\fbclient.dll"
    )


def test_windows_nothing_found_is_a_typed_error() -> None:
    with pytest.raises(ClientLibraryMissing, match=r"fbclient\.dll"):
        locate_client_library(None, platform="win32", exists=fake_fs())
    assert ClientLibraryMissing.error_class == "firebird.client_library"


def test_linux_default_lets_fdb_search_and_checks_a_setting() -> None:
    assert locate_client_library(None, platform="linux", exists=fake_fs()) is None
    lib = "/opt/firebird/lib/libfbclient.so.2"
    assert locate_client_library(lib, platform="linux", exists=fake_fs(lib)) == lib
    with pytest.raises(ClientLibraryMissing):
        locate_client_library(lib, platform="linux", exists=fake_fs())


def test_target_never_shows_its_password() -> None:
    target = FirebirdTarget("localhost", "/db/shop.fdb", "SYSDBA", "s3cret-pw")
    assert "s3cret-pw" not in repr(target)
    assert "s3cret-pw" not in str(target)
    assert target.dsn == "localhost:/db/shop.fdb"


def test_empty_host_means_localhost_never_embedded() -> None:
    assert FirebirdTarget("", "/db/shop.fdb", "SYSDBA", "pw").host == "localhost"


def test_non_ascii_paths_are_refused_with_a_typed_error() -> None:
    assert require_ascii("/db/shop.fdb", what="database") == "/db/shop.fdb"
    with pytest.raises(NonAsciiPath) as info:
        require_ascii(r"C:\Läden\shop.fdb", what="database")
    assert info.value.error_class == "firebird.non_ascii_path"


def test_parse_version() -> None:
    assert parse_version("LI-V3.0.11.33637 Firebird 3.0") == (3, 0, 11, 33637)
    assert parse_version("WI-V2.5.9.27139 Firebird 2.5") == (2, 5, 9, 27139)
    assert parse_version("3.0.12.33787") == (3, 0, 12, 33787)
    assert parse_version("") == ()
