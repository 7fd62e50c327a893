"""``WS /ws/events`` clients that stop reading: cut off in time, never holding up shutdown.

The service runs as ``python -m pushtrio serve`` in a child process, the way users
run it. A stuck client is a raw socket with a small receive buffer that completes
the handshake and then never reads, so the service's writes to it block soon.
The cut-off relies on Linux's TCP_USER_TIMEOUT (see ``pushtrio.web.server``).
"""

from __future__ import annotations

import base64
import fcntl
import os
import signal
import socket
import sys
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed

import pushtrio.web.server  # noqa: F401 (binds the real FEED_SEND_TIMEOUT_S before any patch)
from pushtrio.web import feed
from pushtrio.web.feed import FEED_SEND_TIMEOUT_S, TOO_SLOW_CODE, TOO_SLOW_REASON

from ..support.process import ServeProcess
from ..support.waiting import wait_until
from .conftest import notification, open_feed, run_service

needs_user_timeout = pytest.mark.skipif(
    not hasattr(socket, "TCP_USER_TIMEOUT"), reason="the cut-off needs TCP_USER_TIMEOUT (Linux)"
)

SHUTDOWN_TIMEOUT_S = 3.0
CUT_OFF_MARGIN_S = 4.0
"""Slack over FEED_SEND_TIMEOUT_S: the kernel checks a shut window at its probe times
(it cuts ~5.3s after the window shuts here) and a loaded machine adds its own delays."""
STUCK_RECEIVE_BUFFER = 4096


@asynccontextmanager
async def serve_process(tmp_path: Path) -> AsyncIterator[ServeProcess]:
    """``python -m pushtrio serve`` on embedded backends, yielded once it answers /health.

    Killed on the way out if still running.
    """
    env = {
        "KAFKA_BROKERS": "memory://",
        "REDIS_ADDR": "memory://",
        "HOST": "127.0.0.1",
        "SHUTDOWN_TIMEOUT": f"{SHUTDOWN_TIMEOUT_S}s",
        "RATE_LIMIT_PER_USER": "1000000",
        "PROVIDER_LATENCY": "0s",
        "PROVIDER_SUCCESS_RATE": "1",
    }
    process = ServeProcess(env, tmp_path / "serve.log")
    try:
        await process.wait_ready_async(30.0)

        async def healthy() -> bool:
            assert process.returncode is None, f"serve exited:\n{process.log_tail()}"
            try:
                async with httpx.AsyncClient(base_url=process.url, timeout=2.0) as client:
                    return (await client.get("/health")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(healthy, timeout_s=30.0, what="serve to answer /health")
        yield process
    finally:
        process.kill()


async def open_stuck_feed(port: int) -> trio.socket.SocketType:
    """Complete a ``/ws/events`` handshake on a small-buffered socket, then read no more."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STUCK_RECEIVE_BUFFER)
    await sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await sock.send(request.encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # byte by byte: no frame is read
        byte = await sock.recv(1)
        assert byte, f"connection closed during the handshake: {head!r}"
        head += byte
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def queued_bytes(sock: trio.socket.SocketType) -> int:
    """Bytes the kernel holds for ``sock`` that it has not read."""
    raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(raw, sys.byteorder)


async def is_dropped(sock: trio.socket.SocketType) -> bool:
    """Whether the server side of ``sock`` is gone, asked with a ping (a masked empty frame).

    A live server takes the ping (and cannot answer it: the feed's write holds its
    connection); a dropped one answers with a reset, which fails the next send.
    """
    try:
        await sock.send(b"\x89\x80" + os.urandom(4))
    except OSError:
        return True
    return False


async def send_notifications(base: str, n: int, *, concurrency: int = 8) -> None:
    """POST ``n`` notifications to /send, ``concurrency`` at a time."""

    async def sender(client: httpx.AsyncClient, start: int) -> None:
        for i in range(start, n, concurrency):
            response = await client.post("/send", json=notification(f"user-{i % 50}"))
            assert response.status_code == 202, response.text

    async with (
        httpx.AsyncClient(base_url=base, timeout=10.0) as client,
        trio.open_nursery() as nursery,
    ):
        for start in range(concurrency):
            nursery.start_soon(sender, client, start)


async def processed(client: httpx.AsyncClient) -> int:
    count: int = (await client.get("/metrics")).json()["processed_messages"]
    return count


@needs_user_timeout
@pytest.mark.parametrize("n_stuck", [1, 20])
async def test_serve_exits_soon_after_sigterm_whatever_stuck_subscribers_do(
    tmp_path: Path, n_stuck: int
) -> None:
    # The service drains at once here (embedded backends); the feeds' writes may
    # have stalled just before the signal, so they may need FEED_SEND_TIMEOUT_S.
    exit_within_s = SHUTDOWN_TIMEOUT_S + FEED_SEND_TIMEOUT_S + CUT_OFF_MARGIN_S
    stuck: list[trio.socket.SocketType] = []
    with trio.fail_after(60 + exit_within_s):
        async with serve_process(tmp_path) as process:
            base = process.url
            try:
                for _ in range(n_stuck):
                    stuck.append(await open_stuck_feed(process.port))
                # ~200 bytes a frame: 300 are more than a stuck socket and Trio's 16 KiB
                # of unsent data take: every feed's write blocks, until it is cut off.
                await send_notifications(base, 300)
                async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:

                    async def all_processed() -> bool:
                        return await processed(client) >= 300

                    await wait_until(all_processed, what="300 outcomes")
                await wait_until(
                    lambda: all(queued_bytes(sock) > 0 for sock in stuck),
                    what="every stuck socket to hold frames",
                )
                process.signal(signal.SIGTERM)
                signalled = trio.current_time()
                status = await process.wait_async(exit_within_s)  # before the kill on the way out
                took_s = trio.current_time() - signalled
            finally:
                for sock in stuck:
                    sock.close()
    assert status is not None, f"serve still running {took_s:.1f}s after SIGTERM"
    assert status == 0, status
    print(f"{n_stuck} stuck subscribers: serve exited {took_s:.2f}s after SIGTERM")


async def keep_sending(base: str, sent: list[int], stop: trio.Event) -> None:
    """POST notifications, two at a time, until ``stop`` is set; ``sent[0]`` counts them.

    Stopping between requests, not by cancellation: a request cancelled mid-body leaves
    httpx's body generator to the garbage collector, whose ResourceWarning would then
    fail whichever test happens to be running.
    """

    async def sender(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            response = await client.post("/send", json=notification(f"user-{sent[0] % 50}"))
            assert response.status_code == 202, response.text
            sent[0] += 1

    async with (
        httpx.AsyncClient(base_url=base, timeout=10.0) as client,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(sender, client)
        nursery.start_soon(sender, client)


@needs_user_timeout
async def test_a_stuck_subscriber_is_cut_off_in_time_while_delivery_goes_on(
    tmp_path: Path,
) -> None:
    sent = [0]
    stop_sending = trio.Event()
    health_ms: list[float] = []
    with trio.fail_after(90):
        async with (
            serve_process(tmp_path) as process,
            httpx.AsyncClient(base_url=process.url, timeout=10.0) as client,
        ):
            base = process.url
            sock = await open_stuck_feed(process.port)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(keep_sending, base, sent, stop_sending)
                    # A few frames fill the small buffer: the window shuts at once.
                    await wait_until(lambda: queued_bytes(sock) > 0, what="frames to arrive")
                    stalled = trio.current_time()
                    await wait_until(
                        lambda: is_dropped(sock),
                        timeout_s=FEED_SEND_TIMEOUT_S + CUT_OFF_MARGIN_S,
                        what="the stuck subscriber to be cut off",
                    )
                    cut_after_s = trio.current_time() - stalled

                    # Delivery goes on, and the service answers promptly.
                    before = await processed(client)
                    for _ in range(20):
                        started = trio.current_time()
                        assert (await client.get("/health")).status_code == 200
                        health_ms.append((trio.current_time() - started) * 1000)

                    async def progressing() -> bool:
                        return await processed(client) >= before + 200

                    await wait_until(progressing, what="200 more outcomes")
                    stop_sending.set()
            finally:
                sock.close()
    print(
        f"stuck subscriber cut off {cut_after_s:.2f}s after its window shut; "
        f"{sent[0]} sent; /health max {max(health_ms):.1f}ms"
    )
    assert cut_after_s >= FEED_SEND_TIMEOUT_S - 1.0  # not before its time
    assert max(health_ms) < 2000


async def test_a_frame_slower_than_the_limit_ends_the_feed_with_1008(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every frame counts as too slow: the first one goes out, then the close. (The
    # server, imported above, keeps the real limit for its sockets.)
    monkeypatch.setattr(feed, "FEED_SEND_TIMEOUT_S", -1.0)
    with trio.fail_after(30):
        async with (
            run_service() as running,
            running.client() as client,
            open_feed(running.ws) as ws,
        ):
            assert (await client.post("/send", json=notification("alice"))).status_code == 202
            first: dict[str, Any] = orjson.loads(await ws.get_message())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert first["event"] == "delivered"
    assert closed.value.reason is not None
    assert (closed.value.reason.code, closed.value.reason.reason) == (
        TOO_SLOW_CODE,
        TOO_SLOW_REASON,
    )
