"""The dashboard in a real headless Chromium (Debian's package, driven by playwright).

The service runs as ``python -m pushtrio serve`` in a child process, as users run
it; playwright's sync API drives the browser from a plain (non-trio) test.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.process import ServeProcess
from ..support.requirements import unavailable
from ..support.waiting import wait_for
from .conftest import TOKEN

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
NO_VALUE = "\N{EN DASH}"
"""What a counter shows before the first /metrics answer."""


def _require_browser() -> Any:
    sync_playwright: Any = None
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package")
    if not shutil.which(CHROMIUM):
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if missing:
        unavailable("dashboard test needs " + " and ".join(missing))
    return sync_playwright


EMBEDDED = {
    "HOST": "127.0.0.1",
    "KAFKA_BROKERS": "memory://",
    "REDIS_ADDR": "memory://",
    "PROVIDER_LATENCY": "0",
    "PROVIDER_SUCCESS_RATE": "1",
    "ADMIN_TOKEN": "",
}
"""``serve`` on embedded backends, fast and always successful providers, no token."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def healthy(server: ServeProcess) -> bool:
    try:
        return httpx.get(f"{server.url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def serve(tmp_path: Path, **env: str) -> ServeProcess:
    """``serve`` (:data:`EMBEDDED` plus ``env``), ready and answering /health with 200."""
    server = ServeProcess({**EMBEDDED, **env}, tmp_path / "serve.log")
    try:
        server.wait_ready(30)
        try:
            wait_for(lambda: healthy(server), 30, "serve to answer /health with 200")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; end of its log:\n{server.log_tail()}") from None
    except BaseException:
        server.stop()
        raise
    return server


def test_a_notification_sent_appears_in_the_feed_and_the_counters_move(
    browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    server = serve(tmp_path)
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(server.url + "/")
        expect(page).to_have_title("pushtrio dashboard")
        expect(page.locator("#health")).to_have_text("health: ok")
        expect(page.locator("#feed-status")).to_have_text("live")
        expect(page.locator("#m-processed_messages")).to_have_text("0")

        response = httpx.post(
            f"{server.url}/send",
            json={"id": "browser-1", "user_id": "web-user", "title": "Hi", "priority": 2},
            timeout=10,
        )
        assert response.status_code == 202

        item = page.locator('#feed li[data-id="browser-1"]')
        expect(item).to_have_count(1)
        expect(item).to_have_attribute("data-event", "delivered")
        expect(item).to_contain_text("user=web-user")
        expect(page.locator("#m-processed_messages")).to_have_text("1")
        expect(page.locator("#m-delivered_messages")).to_have_text("1")
        expect(page.locator("#feed-count")).to_have_text("1")

        # The user filter keeps other users' outcomes out of the feed.
        page.fill("#filter-user", "someone-else")
        page.click("#feed-apply")
        page.click("#feed-clear")
        expect(page.locator("#feed-status")).to_have_text("live")
        httpx.post(f"{server.url}/send", json={"user_id": "web-user", "title": "x"}, timeout=10)
        httpx.post(
            f"{server.url}/send",
            json={"id": "browser-2", "user_id": "someone-else", "title": "y"},
            timeout=10,
        )
        expect(page.locator('#feed li[data-id="browser-2"]')).to_have_count(1)
        expect(page.locator("#feed li")).to_have_count(1)
        expect(page.locator("#m-processed_messages")).to_have_text("3")
        assert page.locator("#rate-chart").bounding_box()["height"] > 50
        assert errors == []
    finally:
        page.close()
        server.stop()


def test_with_an_admin_token_the_page_asks_for_it_and_keeps_it(
    browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    server = serve(tmp_path, ADMIN_TOKEN=TOKEN)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(server.url + "/")  # the page itself needs no token
        expect(page.locator("#auth-status")).to_have_text("token required or wrong")
        expect(page.locator("#feed-status")).to_contain_text("refused")

        page.fill("#token", TOKEN)
        page.click("#save-token")
        expect(page.locator("#auth-status")).to_have_text("token accepted")
        expect(page.locator("#feed-status")).to_have_text("live")

        # The page's own form posts to /send with the token.
        page.fill("#send-user", "form-user")
        page.fill("#send-title", "from the form")
        page.click("#send-button")
        expect(page.locator("#send-result")).to_contain_text("202 queued ")
        message_id = page.locator("#send-result").inner_text().split()[-1]
        expect(page.locator(f'#feed li[data-id="{message_id}"]')).to_have_count(1)
        expect(page.locator("#m-delivered_messages")).to_have_text("1")

        page.reload()  # the token is kept in localStorage
        expect(page.locator("#token")).to_have_value(TOKEN)
        expect(page.locator("#feed-status")).to_have_text("live")
    finally:
        context.close()
        server.stop()


@dataclass
class Dashboard:
    """The page open on a served dashboard, with what went wrong in it."""

    server: ServeProcess
    page: Any
    errors: list[str] = field(default_factory=list)
    """Uncaught exceptions, console errors and HTTP responses >= 400, in order."""

    def send(self, user_id: str, **fields: Any) -> None:
        document = {"user_id": user_id, "title": "from the dashboard tests", **fields}
        response = httpx.post(f"{self.server.url}/send", json=document, timeout=10)
        assert response.status_code == 202, response.text

    def processed(self, n: int) -> None:
        from playwright.sync_api import expect

        expect(self.page.locator("#m-processed_messages")).to_have_text(f"{n:,}")


@pytest.fixture
def dashboard(browser: Any, tmp_path: Path) -> Iterator[Dashboard]:
    """A fresh service (no token) and the dashboard loaded, its feed live."""
    from playwright.sync_api import expect

    server = serve(tmp_path)
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    opened = Dashboard(server, page)
    page.on("pageerror", lambda error: opened.errors.append(f"page error: {error}"))

    def on_console(message: Any) -> None:
        if message.type == "error":
            opened.errors.append(f"console: {message.text} at {message.location.get('url')}")

    def on_response(response: Any) -> None:
        if response.status >= 400:
            opened.errors.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    try:
        page.goto(server.url + "/")
        expect(page.locator("#feed-status")).to_have_text("live")
        yield opened
    finally:
        page.close()
        server.stop()


def test_applying_a_filter_clears_the_rows_of_the_old_one(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = dashboard.page
    dashboard.send("ann", id="before-ann")
    dashboard.send("bob", id="before-bob")
    expect(page.locator("#feed li")).to_have_count(2)

    # Applying another filter empties the list at once, before anything new arrives.
    page.fill("#filter-user", "bob")
    page.click("#feed-apply")
    expect(page.locator("#feed li")).to_have_count(0)
    expect(page.locator("#feed-count")).to_have_text("0")
    expect(page.locator("#feed-status")).to_have_text("live")

    dashboard.send("ann", id="after-ann")
    dashboard.processed(3)  # ann's outcome is out before bob's is sent
    dashboard.send("bob", id="after-bob")
    expect(page.locator('#feed li[data-id="after-bob"]')).to_have_count(1)
    dashboard.processed(4)
    expect(page.locator("#feed li")).to_have_count(1)

    # Applying the same filter again (a reconnect) keeps what matches it.
    page.click("#feed-apply")
    expect(page.locator("#feed-status")).to_have_text("live")
    expect(page.locator('#feed li[data-id="after-bob"]')).to_have_count(1)

    # So does an event filter: the list restarts with the new filter.
    page.fill("#filter-user", "")
    page.fill("#filter-event", "expired")
    page.click("#feed-apply")
    expect(page.locator("#feed li")).to_have_count(0)
    expect(page.locator("#feed-status")).to_have_text("live")
    dashboard.send("cy", id="fresh-cy")
    dashboard.send("cy", id="stale-cy", expires_at="2001-01-01T00:00:00Z")
    expect(page.locator('#feed li[data-id="stale-cy"]')).to_have_count(1)
    dashboard.processed(6)
    expect(page.locator("#feed li")).to_have_count(1)
    assert dashboard.errors == []


def test_a_long_id_is_shown_whole_and_one_click_selects_it(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = dashboard.page
    long_id = "order-" + "0123456789abcdef" * 7 + "-end"  # 122 characters, no spaces
    dashboard.send("dana", id=long_id)
    row = page.locator(f'#feed li[data-id="{long_id}"]')
    expect(row).to_have_count(1)
    shown = row.locator(".id")
    expect(shown).to_have_text(long_id)
    expect(shown).to_have_attribute("title", long_id)

    # Nothing of the row is cut: it wraps inside the list instead.
    geometry = row.evaluate(
        """(row) => {
            const id = row.querySelector(".id");
            const box = row.getBoundingClientRect();
            const lines = [...id.getClientRects()];
            return {
                overflow: row.scrollWidth - row.clientWidth,
                inside: lines.every((r) => r.left >= box.left - 0.5 && r.right <= box.right + 0.5),
                lines: lines.length,
            };
        }"""
    )
    assert geometry["overflow"] <= 0, geometry
    assert geometry["inside"], geometry
    assert geometry["lines"] >= 2, geometry  # too long for one line of the feed

    shown.click()
    assert page.evaluate("() => window.getSelection().toString()") == long_id
    assert dashboard.errors == []


def test_the_rate_axis_reads_distinct_integers_empty_or_busy(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = dashboard.page
    chart = page.locator("#rate-chart")
    uptime = page.locator("#m-uptime_seconds")
    expect(uptime).not_to_have_text(NO_VALUE)
    first = uptime.inner_text()
    expect(uptime).not_to_have_text(first)  # two samples: the rates are drawn, all zero
    expect(chart).to_have_attribute("data-ticks", "0,1,2,3,4")

    for i in range(40):
        dashboard.send(f"busy-{i % 10}", id=f"busy-{i}")
    dashboard.processed(40)
    expect(chart).not_to_have_attribute("data-ticks", "0,1,2,3,4")  # the scale grew
    ticks = [int(tick) for tick in chart.get_attribute("data-ticks").split(",")]
    assert ticks[0] == 0
    assert ticks == sorted(set(ticks)), ticks
    assert ticks[-1] >= 10, ticks
    assert dashboard.errors == []


def test_the_page_loads_without_errors_and_has_an_icon(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = dashboard.page
    expect(page.locator("#health")).to_have_text("health: ok")
    uptime = page.locator("#m-uptime_seconds")
    expect(uptime).not_to_have_text(NO_VALUE)
    first = uptime.inner_text()
    # A second poll of /metrics is a second after the load, when the browser has
    # long asked for /favicon.ico if it was going to.
    expect(uptime).not_to_have_text(first)
    assert dashboard.errors == []
    size = page.evaluate(
        """async () => {
            const link = document.querySelector('link[rel="icon"]');
            const image = new Image();
            image.src = link.href;
            await image.decode();
            return [link.href.slice(0, 19), image.naturalWidth, image.naturalHeight];
        }"""
    )
    assert size == ["data:image/svg+xml,", 32, 32]


def test_the_lanes_panel_shows_each_lane_backlog_and_latency(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = dashboard.page
    columns = ("backlog", "queued", "unread", "p50", "p99", "delivered")
    expect(page.locator("#lanes tr[id^=lane-]")).to_have_count(2)
    for lane in ("urgent", "main"):
        for column in columns:
            expect(page.locator(f"#lane-{lane}-{column}")).to_have_count(1)
        expect(page.locator(f"#lane-{lane}-backlog")).to_have_text("0")
        expect(page.locator(f"#lane-{lane}-delivered")).to_have_text("0")

    dashboard.send("lane-user", id="urgent-1", priority=3)
    dashboard.send("lane-user", id="urgent-2", priority=3)
    dashboard.send("lane-user", id="main-1", priority=0)
    dashboard.processed(3)
    expect(page.locator("#lane-urgent-delivered")).to_have_text("2")
    expect(page.locator("#lane-main-delivered")).to_have_text("1")
    for lane in ("urgent", "main"):
        expect(page.locator(f"#lane-{lane}-p99")).to_have_text(
            re.compile(r"^[0-9][0-9,]*(\.[0-9])?$")
        )
        expect(page.locator(f"#lane-{lane}-backlog")).to_have_text("0")
    assert dashboard.errors == []
