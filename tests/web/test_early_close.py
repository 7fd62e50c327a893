"""An early error answer to a request with a slow body must not wedge its connection.

Hypercorn 0.18 leaves such a connection half-open (CLOSE-WAIT, one fd each) once the
client goes; pushtrio answers ``Connection: close`` so it is torn down.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import psutil
import trio

from ..support.waiting import wait_until
from .conftest import TOKEN, Running


def _request_head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: pushtrio\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def _read_head(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some()
            assert chunk, "closed before answering"
            data += chunk
    return data.partition(b"\r\n\r\n")[0].lower()


def _close_wait(port: int) -> int:
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_CLOSE_WAIT
    )


async def test_an_early_401_to_a_slow_body_closes_the_connection(secured: Running) -> None:
    port = urlsplit(secured.http).port
    assert port is not None
    for _ in range(3):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(_request_head("/send", 100) + b"{" + b" " * 9)
        head = await _read_head(stream)
        assert head.startswith(b"http/1.1 401")
        assert b"connection: close" in head
        await stream.send_all(b" " * 89 + b"}")
        await stream.aclose()
    await wait_until(lambda: _close_wait(port) == 0, 10, "no connection left in CLOSE-WAIT")


async def test_an_error_without_a_body_keeps_the_connection(secured: Running) -> None:
    async with secured.client() as client:
        response = await client.get("/metrics")
        assert response.status_code == 401
        assert "close" not in response.headers.get("connection", "")
        ok = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
