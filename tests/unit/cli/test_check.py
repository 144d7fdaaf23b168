"""`storesafe check`: monitoring-plugin exit codes and the one summary line."""

from __future__ import annotations

import json

import pytest

from cli.check import evaluate, unknown
from common.errors import Unauthenticated, Unavailable
from tests.support.cli import FakeAdminClient, invoke, site


def test_no_sites_is_unknown_not_ok() -> None:
    result = evaluate([])
    assert (result.exit_code, result.state) == (3, "UNKNOWN")
    assert result.summary == "STORESAFE UNKNOWN - no sites enrolled"


def test_a_group_that_matches_nothing_is_unknown_and_says_so() -> None:
    result = evaluate([], group="nrth")
    assert (result.exit_code, result.state) == (3, "UNKNOWN")
    assert result.summary == "STORESAFE UNKNOWN - no site in group 'nrth'"


def test_all_ok_is_ok() -> None:
    result = evaluate([site("a"), site("b")])
    assert result.exit_code == 0
    assert result.summary.startswith("STORESAFE OK - all 2 sites ok |")
    assert result.attention == ()


def test_one_site_reads_as_one_site() -> None:
    assert evaluate([site("a")]).summary.startswith("STORESAFE OK - 1 site ok |")
    critical = evaluate([site("a", "never")]).summary
    assert critical.startswith("STORESAFE CRITICAL - 1 of 1 site needs attention: a never |")


def test_any_warning_is_warning() -> None:
    result = evaluate([site("a"), site("b", "warning")])
    assert (result.exit_code, result.state) == (1, "WARNING")
    assert "1 of 2 sites needs attention: b warning" in result.summary


@pytest.mark.parametrize("status", ["stale", "failing", "never", "offline"])
def test_stale_failing_never_offline_are_critical(status: str) -> None:
    result = evaluate([site("a"), site("b", "warning"), site("c", status)])
    assert (result.exit_code, result.state) == (2, "CRITICAL")
    assert f"2 of 3 sites need attention: c {status}, b warning" in result.summary


def test_a_status_this_cli_does_not_know_is_critical_not_ok() -> None:
    assert evaluate([site("a", "unknown")]).exit_code == 2


def test_worst_sites_are_named_first_then_by_name() -> None:
    sites = [
        site("z", "stale"),
        site("y", "warning"),
        site("x", "offline"),
        site("w", "never"),
        site("v", "failing"),
        site("u", "offline"),
    ]
    result = evaluate(sites)
    names = [s.site for s in result.attention]
    assert names == ["u", "x", "w", "v", "z", "y"]
    assert "u offline, x offline, w never, v failing, z stale, y warning |" in result.summary


def test_long_lists_are_cut_to_one_line() -> None:
    result = evaluate([site(f"shop-{i:02d}", "never") for i in range(25)])
    assert "25 of 25 sites need attention" in result.summary
    assert "shop-09 never, and 15 more |" in result.summary
    assert "shop-10" not in result.summary
    assert "\n" not in result.summary


def test_perfdata_counts_every_status() -> None:
    result = evaluate([site("a"), site("b", "never"), site("c", "never")])
    assert result.summary.endswith("| sites=3 ok=1 warning=0 stale=0 failing=0 never=2 offline=0")
    assert result.counts["never"] == 2


def test_unknown_is_exit_3() -> None:
    result = unknown("cannot reach the StoreSafe server at h:1: is it running?")
    assert (result.exit_code, result.state) == (3, "UNKNOWN")
    assert (
        result.summary
        == "STORESAFE UNKNOWN - cannot reach the StoreSafe server at h:1: is it running?"
    )


def test_check_command_exits_with_the_plugin_code(fake: FakeAdminClient) -> None:
    result = invoke(fake, "check")
    assert result.exit_code == 2
    assert result.stdout.startswith(
        "STORESAFE CRITICAL - 2 of 3 sites need attention: shop-c offline, shop-b warning |"
    )
    assert result.stdout.count("\n") == 1


def test_check_json(fake: FakeAdminClient) -> None:
    result = invoke(fake, "check", "--json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["state"] == "critical"
    assert data["exit_code"] == 2
    assert data["counts"]["offline"] == 1
    assert [s["site"] for s in data["sites"]] == ["shop-c", "shop-b"]
    assert data["sites"][1]["problems"] == ["disk nearly full"]


@pytest.mark.parametrize(
    "error",
    [
        Unavailable("cannot reach the StoreSafe server at h:1: is it running?"),
        Unauthenticated("the admin token was refused by the StoreSafe server at h:1"),
    ],
)
def test_check_is_unknown_when_the_server_cannot_be_asked(error: Exception) -> None:
    result = invoke(FakeAdminClient(error=error), "check")
    assert result.exit_code == 3
    assert result.stdout == f"STORESAFE UNKNOWN - {error}\n"
    data = json.loads(invoke(FakeAdminClient(error=error), "check", "--json").stdout)
    assert data["state"] == "unknown"
    assert data["exit_code"] == 3


def test_check_one_group(fake: FakeAdminClient) -> None:
    result = invoke(fake, "check", "--group", "default")
    assert result.exit_code == 2
    assert fake.calls == [("list_sites", (None, "default"))]


def test_check_with_a_bad_group_is_unknown(fake: FakeAdminClient) -> None:
    result = invoke(fake, "check", "--group", "no such")
    assert result.exit_code == 3
    assert result.stdout.startswith("STORESAFE UNKNOWN - 'no such' is not a valid group name")
    assert fake.calls == []


def test_bad_check_arguments_are_unknown_not_critical(fake: FakeAdminClient) -> None:
    result = invoke(fake, "check", "--bogus")
    assert result.exit_code == 3
    assert result.stdout == "STORESAFE UNKNOWN - No such option: --bogus\n"
    assert fake.calls == []
