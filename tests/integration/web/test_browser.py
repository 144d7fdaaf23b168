"""The status page in headless Debian chromium (Playwright): sign in, read, filter, sort,
open a site, screenshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.integration.web.fleet import SCRIPT, SITES, build_fleet
from tests.support.web import WebServer, chromium, png_size

SEVERITY = ["offline", "never", "failing", "stale", "warning", "ok"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from chromium()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    expected = "the server responded with a status of 401"  # the sign-in page's own status
    page.on(
        "console",
        lambda m: problems.append(m.text) if m.type == "error" and expected not in m.text else None,
    )
    page.on("dialog", lambda d: problems.append(f"a script ran: {d.message}"))
    page.on("pageerror", lambda e: problems.append(str(e)))
    yield page
    context.close()
    assert problems == []  # no CSP violation, no script from the data ran


def sites_shown(page: Page) -> list[tuple[str, str]]:
    rows = page.locator("#sites tbody tr")
    return [
        (
            rows.nth(i).get_attribute("data-site") or "",
            rows.nth(i).get_attribute("data-status") or "",
        )
        for i in range(rows.count())
    ]


def sign_in(page: Page, web: WebServer) -> None:
    first = page.goto(web.base_url + "/")
    assert first is not None and first.status == 401
    page.fill("#token", web.handle.admin_token)
    page.click("form.login button[type=submit]")
    page.wait_for_selector("#sites")


def test_the_fleet_page_signs_in_lists_filters_and_sorts(
    web: WebServer, page: Page, tmp_path: Path
) -> None:
    build_fleet(web)
    sign_in(page, web)
    assert sites_shown(page) == sorted((n, s) for n, (_, s) in SITES.items())
    assert page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor") == (
        "rgb(31, 41, 51)"  # the stylesheet loaded under default-src 'self'
    )
    shot = tmp_path / "fleet.png"
    page.screenshot(path=str(shot), full_page=True)
    size = png_size(shot)
    assert size.width == 1280 and 300 <= size.height <= 4000
    assert shot.stat().st_size > 10_000
    assert page.locator("a.count[data-status=ok] b").inner_text() == "2"

    page.click("a.count[data-status=failing]")
    page.wait_for_url("**/?status=failing")
    assert sites_shown(page) == [("shop-failing", "failing")]
    problems = page.locator("#sites tbody tr td.problems").inner_text()
    assert SCRIPT in problems  # shown as text, never run (the page fixture checks)

    page.select_option("select[name=status]", "")
    page.select_option("select[name=group]", "south")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/?status=&group=south")
    assert sites_shown(page) == [("shop-ok-2", "ok"), ("shop-stale", "stale")]
    assert "2 of 5 sites" in page.locator("#summary").inner_text()

    page.goto(web.base_url + "/")
    page.click("th >> text=Status")
    page.wait_for_url("**/?sort=status")
    order = [s for _, s in sites_shown(page)]
    assert order == sorted(order, key=SEVERITY.index)
    page.click("th >> text=Status")  # again: the other way round
    page.wait_for_url("**/?sort=status&order=desc")
    assert [s for _, s in sites_shown(page)] == list(reversed(order))

    page.goto(web.base_url + "/?status=warning")
    assert page.locator("#no-match").inner_text() == "No site matches this filter."


def test_a_site_page_shows_runs_and_charts_and_sign_out_ends_the_session(
    web: WebServer, page: Page, tmp_path: Path
) -> None:
    build_fleet(web)
    sign_in(page, web)
    page.click("a[href='/sites/shop-failing']")
    page.wait_for_selector("#runs")
    assert page.locator("#site-status").inner_text() == "failing"
    assert page.locator("#runs tbody tr").count() == 6
    assert page.locator("#runs tbody tr.outcome-failed").count() == 1
    assert SCRIPT in page.locator("#problems").inner_text()
    charts = page.locator("figure.chart svg")
    assert charts.count() == 2  # size and duration
    assert charts.nth(0).locator("circle").count() == 5  # the five good backups
    assert charts.nth(1).locator("circle").count() == 5
    page.screenshot(path=str(tmp_path / "site.png"), full_page=True)
    assert png_size(tmp_path / "site.png").width == 1280

    page.click("form.signout button")
    page.wait_for_selector("#token")
    again = page.goto(web.base_url + "/")
    assert again is not None and again.status == 401
