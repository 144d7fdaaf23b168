"""The shared client-side error table (common/wire_errors.py) against gRPC's codes and the
server's table; the round trip over real gRPC is tests/integration/test_error_codes.py."""

from __future__ import annotations

import grpc
import pytest

from common import errors
from common.wire_errors import (
    BY_CODE,
    BY_STATUS,
    ERROR_CODE_KEY,
    code_in,
    error_class,
    names_unresolved_host,
    tells_of_tls,
)
from server.rpc.errors import STATUS


def test_every_status_but_ok_is_in_the_table() -> None:
    assert set(BY_STATUS) == {code.name for code in grpc.StatusCode} - {"OK"}
    assert BY_STATUS[grpc.StatusCode.DEADLINE_EXCEEDED.name] is errors.Unavailable


def test_every_class_the_server_maps_has_its_code_in_the_table() -> None:
    assert set(BY_CODE.values()) == set(STATUS)
    for cls, status in STATUS.items():
        assert BY_CODE[cls.code] is cls
        # without a code (an older server) the status alone still gives the class
        assert BY_STATUS[status.name] is cls


def test_the_code_wins_over_the_status_and_an_unknown_code_falls_back() -> None:
    assert error_class("not_found", "FAILED_PRECONDITION") is errors.NotFound
    assert error_class("site_on_fire", "FAILED_PRECONDITION") is errors.FailedPrecondition
    assert error_class(None, "UNAVAILABLE") is errors.Unavailable
    assert error_class(None, "NO_SUCH_STATUS") is errors.Internal


@pytest.mark.parametrize(
    ("metadata", "code"),
    [
        (((ERROR_CODE_KEY, "not_found"),), "not_found"),
        ((("other", "x"), (ERROR_CODE_KEY, b"unavailable")), "unavailable"),
        ((("other", "x"),), None),
        ((), None),
        (None, None),
    ],
)
def test_the_code_is_read_from_trailing_metadata(
    metadata: tuple[tuple[str, str | bytes], ...] | None, code: str | None
) -> None:
    assert code_in(metadata) == code


def test_signs_of_a_failure_on_the_way() -> None:
    assert names_unresolved_host("DNS resolution failed for h:1: C-ares status", "h:1")
    assert names_unresolved_host("errors resolving dns:///h:1: [lookup failed]", "h:1")
    assert not names_unresolved_host("DNS resolution failed for db:5432: nope", "h:1")
    assert tells_of_tls("Tls handshake failed (TSI_PROTOCOL_FAILURE)")
    assert tells_of_tls("CERTIFICATE_VERIFY_FAILED")
    assert not tells_of_tls("failed to connect to all addresses; Connection refused")
