"""Run a fake server in a background thread, for tests that drive ``pushtrio serve``
as a process (their own code is synchronous)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import trio


class Fake(Protocol):
    async def serve(self, *, task_status: trio.TaskStatus[int] = ...) -> None:
        """Listen on 127.0.0.1 (a free port), report the port, serve until cancelled."""
        ...


@contextmanager
def in_thread(fake: Fake, timeout_s: float = 10.0) -> Iterator[int]:
    """Serve ``fake`` in a thread of its own; yield its port; stop it on exit."""
    started = threading.Event()
    port: list[int] = []
    stop: list[trio.CancelScope] = []
    token: list[trio.lowlevel.TrioToken] = []
    failure: list[BaseException] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            stop.append(scope)
            token.append(trio.lowlevel.current_trio_token())
            async with trio.open_nursery() as nursery:
                port.append(await nursery.start(fake.serve))
                started.set()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the test thread below
            failure.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=run, name=f"fake-{type(fake).__name__}", daemon=True)
    thread.start()
    if not started.wait(timeout_s) or not port:
        raise RuntimeError(f"fake {type(fake).__name__} did not start: {failure}")
    try:
        yield port[0]
    finally:
        trio.from_thread.run_sync(stop[0].cancel, trio_token=token[0])
        thread.join(timeout_s)
        if failure:
            raise failure[0]
