"""Fixtures for the web tests: the whole service served on a free loopback port.

Tests talk to it with real clients over real sockets: httpx for HTTP,
trio-websocket for the feed.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from pushtrio.config import Settings
from pushtrio.pipeline.replay import ReplayFilter, ReplayReport
from pushtrio.providers import ProviderOptions, build_providers
from pushtrio.sinks.events import EventHub
from pushtrio.sinks.metrics import Metrics
from pushtrio.stores.limiter.memory import MemoryLimiter
from pushtrio.web import AppHandles

from ..fast import fast_settings

if TYPE_CHECKING:
    # Imported lazily below: it imports kafka-python, whose import-time
    # DeprecationWarning is only filtered once pytest is configured, after the
    # initial conftests are loaded.
    from pushtrio.service import Service

TOKEN = "s3cret-admin-token"


def web_settings(**changes: Any) -> Settings:
    """Settings for a fast, deterministic service on a free port, embedded by default."""
    base = fast_settings(
        host="127.0.0.1",
        provider_seed=7,
        rate_limit_per_user=10,
        rate_limit_window_s=3600.0,
        shutdown_timeout_s=5.0,
    )
    return base.replace(**changes)


@dataclass
class Running:
    """A service being served; ``http`` and ``ws`` are its base URLs."""

    service: Service
    http: str
    ws: str
    stop: trio.Event

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http, timeout=10.0, **kwargs)


@asynccontextmanager
async def run_service(**changes: Any) -> AsyncIterator[Running]:
    """Serve a Service with :func:`web_settings` (plus ``changes``) until the block ends."""
    from pushtrio.service import Service

    service = Service(web_settings(**changes))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(60):
            addresses: list[str] = await nursery.start(service.serve, stop)
        http = addresses[0]
        yield Running(service, http, "ws" + http.removeprefix("http"), stop)
        stop.set()


@pytest.fixture
async def served() -> AsyncIterator[Running]:
    """The service in embedded mode, no admin token, 10 notifications per user per hour."""
    async with run_service() as running:
        yield running


@pytest.fixture
async def secured() -> AsyncIterator[Running]:
    """Like ``served`` with ADMIN_TOKEN set to :data:`TOKEN`."""
    async with run_service(admin_token=TOKEN) as running:
        yield running


async def receive_json(ws: WebSocketConnection, timeout_s: float = 10.0) -> dict[str, Any]:
    with trio.fail_after(timeout_s):
        message = await ws.get_message()
    document: dict[str, Any] = orjson.loads(message)
    return document


def make_handles(
    settings: Settings | None = None,
    publisher: Any = None,
    replay: Callable[[ReplayFilter], Awaitable[ReplayReport]] | None = None,
) -> AppHandles:
    """Handles for the web app alone: embedded limiter and queue, nothing running.

    ``replay`` defaults to an empty dead-letter topic: nothing to replay.
    """
    from pushtrio.source.memory import MemoryBroker

    async def health() -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"status": "ok", "mode": "embedded", "components": {}}

    from pushtrio.service.lifecycle import web_options

    options = web_options(settings or web_settings())

    async def nothing_to_replay(chosen: ReplayFilter) -> ReplayReport:
        await trio.lowlevel.checkpoint()
        return ReplayReport("notifications.dlq", options.lanes.main, dry_run=chosen.dry_run)

    return AppHandles(
        options=options,
        metrics=Metrics(),
        hub=EventHub(),
        limiter=MemoryLimiter(10, 60.0),
        publisher=publisher or MemoryBroker(),
        health=health,
        replay=replay or nothing_to_replay,
        providers=build_providers(
            ProviderOptions(success_rates=(("fcm", 1.0), ("apns", 1.0)), latency_s=0.0, seed=7)
        ),
    )


@asynccontextmanager
async def open_feed(
    base_ws: str,
    query: str = "",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    receive_buffer: int | None = None,
) -> AsyncIterator[WebSocketConnection]:
    """Open ``WS /ws/events?query`` with trio-websocket over a socket this helper owns.

    ``receive_buffer`` shrinks the socket's receive buffer (before connecting), so
    a client that stops reading stalls the server's sends soon. Raises
    ConnectionRejected when the handshake is refused. Unlike open_websocket_url,
    this closes the socket after a rejected handshake too.
    """
    parts = urlsplit(f"{base_ws}/ws/events" + (f"?{query}" if query else ""))
    assert parts.hostname is not None
    assert parts.port is not None
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    stream = trio.SocketStream(sock)
    async with stream:
        await sock.connect((parts.hostname, parts.port))
        resource = f"{parts.path}?{parts.query}" if parts.query else parts.path
        try:
            async with trio.open_nursery() as nursery:
                ws = await wrap_client_stream(
                    nursery, stream, parts.netloc, resource, extra_headers=headers or []
                )
                try:
                    yield ws
                finally:
                    with trio.move_on_after(5) as cleanup:
                        cleanup.shield = True
                        await ws.aclose()
        except BaseExceptionGroup as group:
            # The handshake's outcome (or the test's own failure) comes out of the
            # reader task's nursery: surface a lone exception as itself.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


def notification(user_id: str, **fields: Any) -> dict[str, Any]:
    return {"user_id": user_id, "title": "Hello", "body": "from the tests", **fields}


def openapi_document(*, secured: bool = False) -> dict[str, Any]:
    """The document an app serves at /openapi.json (bearer security when ``secured``)."""
    from pushtrio.web.app import create_app
    from pushtrio.web.schema import openapi_document as served

    settings = web_settings(admin_token=TOKEN) if secured else web_settings()
    return served(create_app(make_handles(settings)))
