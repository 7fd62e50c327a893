"""The test kit itself (tests/support): ``serve`` on PORT=0, polling, ports, tailing files."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
import trio

from ..support.files import LineTail
from ..support.ports import closed_port
from ..support.process import ServeProcess
from ..support.waiting import wait_for, wait_until

EMBEDDED = {"HOST": "127.0.0.1", "KAFKA_BROKERS": "memory://", "REDIS_ADDR": "memory://"}


def test_serve_binds_port_0_and_reports_the_port_it_got(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with ServeProcess(EMBEDDED, log) as first:
        url = first.wait_ready(30)
        assert url == f"http://127.0.0.1:{first.port}"
        assert first.port > 0
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        assert first.stop() == 0
    # A second process on the same log is not fooled by the first one's ready line.
    with ServeProcess(EMBEDDED, log) as second:
        second.wait_ready(30)
        assert httpx.get(f"{second.url}/health", timeout=5).status_code == 200
    assert second.returncode == 0
    assert log.read_text().count(" ready on ") == 2


async def test_serve_in_trio_code(tmp_path: Path) -> None:
    with ServeProcess(EMBEDDED, tmp_path / "serve.log") as process:
        url = await process.wait_ready_async(30)
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            assert (await client.get("/health")).status_code == 200
        assert await process.wait_async(0.1) is None  # still running
        process.signal()
        assert await process.wait_async(20) == 0


def test_serve_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    with (
        ServeProcess({**EMBEDDED, "KAFKA_BROKERS": "nohost"}, tmp_path / "bad.log") as process,
        pytest.raises(AssertionError, match=r"exited with status 2 before it was ready"),
    ):
        process.wait_ready(30)
    with pytest.raises(RuntimeError, match="wait_ready"):
        _ = process.url


def test_serve_refuses_a_fixed_port_and_a_quiet_log(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PORT=0"):
        ServeProcess({**EMBEDDED, "PORT": "8080"}, tmp_path / "port.log")
    quiet = ServeProcess({**EMBEDDED, "LOG_LEVEL": "warning"}, tmp_path / "quiet.log")
    with quiet, pytest.raises(ValueError, match="info level"):
        quiet.wait_ready(30)


def test_wait_for_returns_the_time_or_names_what_it_waited_for() -> None:
    assert wait_for(lambda: True, 1) < 1
    with pytest.raises(AssertionError, match=r"the impossible: not within 0\.1s"):
        wait_for(lambda: False, 0.1, "the impossible")


async def test_wait_until_takes_sync_and_async_conditions() -> None:
    calls: list[int] = []

    async def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await wait_until(third_time, 5)
    assert len(calls) == 3
    with trio.fail_after(5), pytest.raises(AssertionError, match="never"):
        await wait_until(lambda: False, 0.1, "never")


def test_a_closed_port_refuses_connections() -> None:
    with closed_port() as port, pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


def test_line_tail_reads_whole_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "log"
    tail = LineTail(path)
    assert tail.read_new() == []  # not written yet
    path.write_bytes(b"one\ntw")
    assert tail.read_new() == [b"one"]
    with open(path, "ab") as stream:
        stream.write(b"o\nthree\n")
    assert tail.read_new() == [b"two", b"three"]
    assert tail.read_new() == []
    assert LineTail(path, offset=len(b"one\n")).read_new() == [b"two", b"three"]
