"""Backend calls that must not fail: retried with back-off until they pass.

Stalling is deliberate: losing a message or skipping the rate limit are worse. A
backend that refuses us (a wrong password, a WRONGTYPE key) is retried the same way,
and the time since it first refused is kept so that the service can leave the
consumer group while it lasts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from ..contract.errors import BackendError, BackendMisconfigured

log = logging.getLogger("pushtrio.pipeline.workers")

T = TypeVar("T")
BACKOFF_MAX_S = 5.0


class BackendCalls:
    """Runs backend calls with capped exponential back-off and keeps their state."""

    def __init__(self) -> None:
        self.last_backend_error = ""
        """The last failure (``"what: error"``); empty once a call succeeds."""
        self.misconfigured_since: float | None = None
        """Monotonic time since when a backend has refused us without a call
        succeeding since; None when all is well."""

    async def call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Retry ``call`` on BackendError (0.1 s doubling up to BACKOFF_MAX_S), forever.

        Cancellation (the shutdown deadline) ends the wait; the records it was for
        stay uncommitted.
        """
        delay = 0.1
        while True:
            try:
                result = await call()
            except BackendError as exc:
                self.last_backend_error = f"{what}: {exc}"
                if isinstance(exc, BackendMisconfigured):
                    if self.misconfigured_since is None:
                        self.misconfigured_since = time.monotonic()
                        log.error("%s refused (retrying, check the settings): %s", what, exc)
                else:
                    log.warning("%s failed, retrying in %.1fs: %s", what, delay, exc)
                await trio.sleep(delay)
                delay = min(BACKOFF_MAX_S, delay * 2)
            else:
                self.last_backend_error = ""
                self.misconfigured_since = None
                return result
