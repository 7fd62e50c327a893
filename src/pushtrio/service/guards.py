"""Guards around the consumer group: join only when the backends answer, leave while
one of them refuses us.

An instance that cannot work must not hold partitions that healthy members could
take. Both guards return once ``stop`` is set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import trio

from ..contract.errors import BackendError, BackendMisconfigured
from ..source import Source

log = logging.getLogger("pushtrio.service")

RETRY_MAX_S = 10.0
PROBE_TIMEOUT_S = 15.0
"""Limit on one start-up probe of a backend (the broker's bootstrap takes up to 10 s)."""


class RefusalReport(Protocol):
    """What the pipeline's backend calls say about refusals (see BackendCalls)."""

    @property
    def misconfigured_since(self) -> float | None: ...

    @property
    def last_backend_error(self) -> str: ...


async def await_backends(
    probes: Mapping[str, Callable[[], Awaitable[None]]], stop: trio.Event
) -> bool:
    """Wait until every probe passes; returns False if ``stop`` is set first.

    Probes are retried with back-off (0.5 s doubling up to RETRY_MAX_S), each
    bounded by PROBE_TIMEOUT_S. Raises BackendMisconfigured at once when a backend
    refuses us (a wrong password...): retrying cannot help.
    """
    delay, attempt = 0.5, 0
    while True:
        failures = {}
        for name, probe in probes.items():
            try:
                with trio.fail_after(PROBE_TIMEOUT_S):
                    await probe()
            except trio.TooSlowError:
                failures[name] = f"no answer within {PROBE_TIMEOUT_S:.0f}s"
            except BackendMisconfigured:
                raise
            except BackendError as exc:
                failures[name] = str(exc)
        if not failures:
            return True
        attempt += 1
        for name, error in failures.items():
            log.warning(
                "%s not answering at start-up (attempt %d; not joining the group yet), "
                "retrying in %.1fs: %s",
                name,
                attempt,
                delay,
                error,
            )
        with trio.move_on_after(delay):
            await stop.wait()
        if stop.is_set():
            return False
        delay = min(RETRY_MAX_S, delay * 2)


async def release_while_refused(
    source: Source, report: RefusalReport, release_after_s: float, stop: trio.Event
) -> None:
    """Leave the group while a backend keeps refusing us; join again once it accepts.

    The workers' own retries are the probe: the refusal is over when one of their
    calls succeeds. Checks once a second; returns once ``stop`` is set.
    """
    released = False
    while not stop.is_set():
        with trio.move_on_after(1.0):
            await stop.wait()
        since = report.misconfigured_since
        refused_for = 0.0 if since is None else time.monotonic() - since
        if not released and refused_for >= release_after_s:
            log.error(
                "a backend has refused us for %.0fs (%s): leaving the consumer group",
                refused_for,
                report.last_backend_error,
            )
            source.release()
            released = True
        elif released and since is None:
            source.rejoin()
            released = False
