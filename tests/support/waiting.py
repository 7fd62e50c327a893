"""Poll a condition until it holds, with a deadline: the only way tests wait for each other.

:func:`wait_for` blocks (sync tests, helper threads, the benchmarks); :func:`wait_until`
is its trio flavour, for async tests, and accepts async conditions too. Both raise
AssertionError naming ``what`` when the deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio


def wait_for(
    condition: Callable[[], object], timeout_s: float, what: str = "", every_s: float = 0.05
) -> float:
    """Poll ``condition()`` until it is true; return the seconds it took (monotonic)."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or condition}: not within {timeout_s:g}s")
        time.sleep(every_s)


async def wait_until(
    condition: Callable[[], object | Awaitable[object]],
    timeout_s: float = 20.0,
    what: str = "",
    every_s: float = 0.02,
) -> None:
    """Poll ``condition`` (sync or async) until it is true; fail after ``timeout_s``."""
    with trio.move_on_after(timeout_s):
        while True:
            result = condition()
            if isinstance(result, Awaitable):
                result = await result
            if result:
                return
            await trio.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what or condition}")
