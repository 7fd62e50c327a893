"""The dashboard in a real headless Chromium (Debian's package, driven by playwright).

The service runs as ``python -m pushtrio serve`` in a child process, as users run
it; playwright's sync API drives the browser from a plain (non-trio) test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import TOKEN, free_port

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
        message = "dashboard test needs " + " and ".join(missing)
        if os.environ.get("PUSHTRIO_REQUIRE_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


class ServeProcess:
    """``python -m pushtrio serve`` on a free port, embedded backends."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pushtrio", "serve"],
            env={
                **os.environ,
                "PORT": str(self.port),
                "HOST": "127.0.0.1",
                "KAFKA_BROKERS": "memory://",
                "REDIS_ADDR": "memory://",
                "PROVIDER_LATENCY": "0",
                "PROVIDER_SUCCESS_RATE": "1",
                "LOG_LEVEL": "warning",
                "ADMIN_TOKEN": "",
                **env,
            },
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"serve did not become healthy:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def serve(tmp_path: Path, **env: str) -> ServeProcess:
    server = ServeProcess(tmp_path / "serve.log", **env)
    try:
        server.wait_healthy()
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
