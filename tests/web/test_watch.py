"""``pushtrio watch``: URL building, line format, and the client against a served feed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from pushtrio.cli.watch import Tally, WatchError, WatchOptions, feed_url, format_event, run_watch

from ..support.ports import closed_port
from ..support.waiting import wait_until
from .conftest import TOKEN, Running, notification


def test_feed_url() -> None:
    # batch=1 always: frames carry every event waiting, so watch keeps up with a burst.
    assert feed_url("ws://127.0.0.1:8080") == "ws://127.0.0.1:8080/ws/events?batch=1"
    assert feed_url("ws://h:1/") == "ws://h:1/ws/events?batch=1"
    assert feed_url("http://h:1") == "ws://h:1/ws/events?batch=1"
    assert feed_url("https://h") == "wss://h/ws/events?batch=1"
    assert (
        feed_url("ws://h:1", user_id="u1", events="delivered,failed")
        == "ws://h:1/ws/events?user_id=u1&event=delivered%2Cfailed&batch=1"
    )
    assert feed_url("ws://h:1/feed?x=1", user_id="a@b") == "ws://h:1/feed?x=1&user_id=a%40b&batch=1"
    for bad in ("ftp://h", "h:8080", ""):
        with pytest.raises(WatchError):
            feed_url(bad)


def test_format_event() -> None:
    delivered = {
        "event": "delivered",
        "id": "n-1",
        "user_id": "u1",
        "provider": "fcm",
        "priority": 2,
        "attempts": 1,
        "latency_ms": 4.2,
        "error": None,
        "ts": 1_700_000_000.25,
    }
    line = format_event(delivered)
    assert "delivered" in line
    assert "n-1" in line
    assert "user=u1" in line
    assert "fcm" in line
    assert "p2" in line
    assert "4.2ms" in line
    assert "error" not in line
    assert ".250  " in line  # milliseconds of the outcome's own time
    failed = format_event(delivered | {"event": "failed", "error": "fcm: unregistered"})
    assert failed.endswith("error=fcm: unregistered")
    assert "37 older events lost" in format_event({"event": "dropped", "count": 37})
    breaker = format_event({"event": "breaker", "provider": "fcm", "state": "open", "ts": 1.0})
    assert breaker.endswith("provider fcm: open")
    step = {
        "event": "retry_scheduled",
        "id": "n-1",
        "user_id": "u1",
        "provider": "fcm",
        "attempts": 1,
        "due": 1_700_000_002.0,
        "reason": "503 unavailable",
        "ts": 1_700_000_000.0,
    }
    line = format_event(step)
    assert "retry_scheduled" in line
    assert "attempts=1" in line
    assert "due " in line
    assert line.endswith("reason=503 unavailable")


def test_tally_summary() -> None:
    tally = Tally()
    for kind in ("delivered", "delivered", "failed"):
        tally.add({"event": kind})
    tally.add({"event": "dropped", "count": 5})
    assert tally.total == 3
    summary = tally.summary()
    assert summary.startswith("3 outcomes in ")
    assert "delivered 2, failed 1" in summary
    assert "5 dropped" in summary
    assert tally.exit_status == 0


def test_tally_records_the_first_stop_signal() -> None:
    tally = Tally()
    tally.stopped_by(signal.SIGINT)
    tally.stopped_by(signal.SIGTERM)  # a second signal changes nothing
    assert tally.exit_status == 130
    assert tally.summary().endswith("; interrupted")
    terminated = Tally()
    terminated.stopped_by(signal.SIGTERM)
    assert terminated.exit_status == 143
    assert terminated.summary().endswith("; terminated")


async def test_watch_prints_the_filtered_outcomes_and_stops_at_count(secured: Running) -> None:
    lines: list[str] = []
    notices: list[str] = []
    tally = Tally()
    options = WatchOptions(url=secured.http, user_id="gina", token=TOKEN, count=3)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery, secured.client() as client:
            nursery.start_soon(run_watch, options, tally, lines.append, notices.append)
            await wait_until(lambda: bool(notices), what="the feed to open")
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for i in range(5):
                for user in ("gina", "hank"):
                    document = notification(user, id=f"{user}-{i}")
                    response = await client.post("/send", json=document, headers=headers)
                    assert response.status_code == 202
        # run_watch returned by itself after 3 outcomes
    assert notices == [f"watching {secured.ws}/ws/events?user_id=gina&batch=1 (Ctrl-C to stop)"]
    assert len(lines) == 3
    assert all("user=gina" in line and "delivered" in line for line in lines)
    assert tally.counts == {"delivered": 3}


async def test_watch_reports_a_closed_feed(served: Running) -> None:
    tally = Tally()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            notices: list[str] = []
            nursery.start_soon(run_watch, WatchOptions(url=served.ws), tally, print, notices.append)
            await wait_until(lambda: bool(notices), what="the feed to open")
            served.stop.set()  # shutting down closes the feed with 1001
    assert tally.close_reason.startswith("feed closed by the server: 1001")


PROCESS_TIMEOUT_S = 45.0
"""Deadline for a child process to start, connect or exit: generous, for loaded machines."""


class WatchProcess:
    """``python -m pushtrio watch`` as a child process with its output collected."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stdout = b""
        self.stderr = b""

    async def read(self, nursery: trio.Nursery) -> None:
        async def pump(stream: trio.abc.ReceiveStream, name: str) -> None:
            async for chunk in stream:
                setattr(self, name, getattr(self, name) + chunk)

        assert self.process.stdout is not None
        assert self.process.stderr is not None
        nursery.start_soon(pump, self.process.stdout, "stdout")
        nursery.start_soon(pump, self.process.stderr, "stderr")

    async def wait_connected(self) -> None:
        await wait_until(
            lambda: b"watching" in self.stderr or self.process.poll() is not None,
            timeout_s=PROCESS_TIMEOUT_S,
            what="watch to connect",
        )
        assert self.process.returncode is None, self.stderr.decode()

    async def wait_lines(self, n: int) -> None:
        await wait_until(
            lambda: self.stdout.count(b"\n") >= n, timeout_s=PROCESS_TIMEOUT_S, what=f"{n} lines"
        )

    async def wait(self) -> int:
        """The exit status; fails if the process has not exited by the deadline."""
        with trio.fail_after(PROCESS_TIMEOUT_S):
            return await self.process.wait()


@asynccontextmanager
async def open_watch(*args: str, token: str = "") -> AsyncIterator[WatchProcess]:
    """Run ``pushtrio watch args`` for the block; killed at the end if still running.

    The block ends when the process has exited and its output is read to the end.
    """
    env = {**os.environ, "ADMIN_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pushtrio", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        async with trio.open_nursery() as nursery:
            watcher = WatchProcess(process)
            await watcher.read(nursery)
            try:
                yield watcher
            finally:
                if process.returncode is None:
                    process.kill()  # which ends its output, and so the readers
    finally:
        with trio.move_on_after(10) as cleanup:
            cleanup.shield = True
            await process.wait()


async def test_the_command_prints_a_summary_on_ctrl_c_and_exits_130(secured: Running) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with open_watch("--url", secured.ws, token=TOKEN) as watcher, secured.client() as client:
        await watcher.wait_connected()
        response = await client.post("/send", json=notification("ivy"), headers=headers)
        assert response.status_code == 202
        expired = notification("ivy", expires_at="2001-01-01T00:00:00Z")
        response = await client.post("/send", json=expired, headers=headers)
        assert response.status_code == 202
        await watcher.wait_lines(2)
        watcher.process.send_signal(signal.SIGINT)
        status = await watcher.wait()
    assert status == 130, watcher.stderr.decode()
    assert watcher.stdout.count(b"\n") == 2
    summary = watcher.stderr.decode().strip().splitlines()[-1]
    assert summary.startswith("2 outcomes in ")
    assert "delivered 1, expired 1" in summary
    assert summary.endswith("; interrupted")


async def test_ctrl_c_before_any_outcome_still_prints_the_summary(served: Running) -> None:
    async with open_watch("--url", served.ws) as watcher:
        await watcher.wait_connected()
        watcher.process.send_signal(signal.SIGINT)
        status = await watcher.wait()
    assert status == 130, watcher.stderr.decode()
    assert watcher.stdout == b""
    summary = watcher.stderr.decode().strip().splitlines()[-1]
    assert summary.startswith("0 outcomes in ")
    assert summary.endswith("none; interrupted")
    assert "Traceback" not in watcher.stderr.decode()


async def test_the_command_fails_clearly_on_a_wrong_token(secured: Running) -> None:
    async with open_watch("--url", secured.ws, "--token", "wrong") as watcher:
        status = await watcher.wait()
    async with open_watch("--url", secured.ws, "--event", "sent") as bad_filter:
        filter_status = await bad_filter.wait()
    assert status == 1
    assert b"refused the feed: 401 missing or invalid admin token" in watcher.stderr
    assert filter_status == 2
    assert b"unknown event 'sent'" in bad_filter.stderr


async def test_watch_raises_watch_error_when_the_feed_cannot_open(secured: Running) -> None:
    with closed_port() as port, trio.fail_after(30):
        cases = [
            (WatchOptions(url=f"ws://127.0.0.1:{port}"), "cannot connect to"),
            (WatchOptions(url=secured.ws, token="wrong"), "refused the feed: 401"),
            (WatchOptions(url=secured.ws, token=TOKEN, events="bogus"), "refused the feed: 400"),
        ]
        for options, message in cases:
            with pytest.raises(WatchError, match=message):
                await run_watch(options, Tally())


async def test_the_command_prints_a_summary_on_sigterm_and_exits_143(served: Running) -> None:
    async with open_watch("--url", served.ws) as watcher, served.client() as client:
        await watcher.wait_connected()
        response = await client.post("/send", json=notification("jo"))
        assert response.status_code == 202
        await watcher.wait_lines(1)
        watcher.process.send_signal(signal.SIGTERM)
        status = await watcher.wait()
    assert status == 143, watcher.stderr.decode()
    summary = watcher.stderr.decode().strip().splitlines()[-1]
    assert summary.startswith("1 outcome in ")
    assert summary.endswith("; terminated")
