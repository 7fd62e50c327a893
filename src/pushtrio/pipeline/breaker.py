"""A circuit breaker per provider, with resilience4j's count-based semantics.

    closed ──(failure rate >= FAILURE_RATE over the last WINDOW calls,
              at least MIN_CALLS of them)──> open
    open ──(OPEN_FOR has passed)──> half_open: PROBE_CALLS calls let through
    half_open ──(every probe succeeded)──> closed (the window starts afresh)
    half_open ──(a probe failed)──> open again

Timeouts count as failures; a permanent error of one notification (a bad token, a
bad payload) says nothing about the provider and is not recorded at all. Everything
runs in the trio thread; the clock is injectable for tests.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


DEFAULT_WINDOW = 100
"""Calls in the sliding window, unless MIN_CALLS asks for more."""


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerOptions:
    failure_rate: float = 0.5
    """Share of failed calls in the window that opens the breaker (0 < rate <= 1)."""
    min_calls: int = 20
    """Calls the window must hold before the rate is judged."""
    window: int = DEFAULT_WINDOW
    """The last this-many calls make the sliding window."""
    open_for_s: float = 30.0
    probe_calls: int = 3
    """Calls let through while half open; all must succeed to close."""

    def __post_init__(self) -> None:
        if not 0 < self.failure_rate <= 1:
            raise ValueError(f"failure_rate must be in (0, 1], not {self.failure_rate}")
        if not 1 <= self.min_calls <= self.window:
            raise ValueError("min_calls must be from 1 to window")
        if self.open_for_s < 0 or self.probe_calls < 1:
            raise ValueError("open_for_s must be >= 0 and probe_calls >= 1")


class CircuitBreaker:
    """Decides whether a provider may be called, from the results of its last calls."""

    def __init__(
        self,
        name: str,
        options: BreakerOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        self.name = name
        self.options = options or BreakerOptions()
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._results: deque[bool] = deque(maxlen=self.options.window)
        self._failures = 0
        self._opened_at = 0.0
        self._probes_left = 0
        self._probes_ok = 0
        self._probed_at = 0.0
        self.transitions = 0
        """How many times the state changed (for metrics)."""

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker turns half open once OPEN_FOR has passed."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.options.open_for_s
        ):
            self._probes_left, self._probes_ok = self.options.probe_calls, 0
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets probe calls through; 0 when not open."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.options.open_for_s - self._clock())

    def failure_rate(self) -> float:
        """Failed share of the calls in the window (0 when it is empty)."""
        return self._failures / len(self._results) if self._results else 0.0

    def allow(self) -> bool:
        """Whether a call may go out now; while half open this takes one probe slot."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN:
            if (
                self._probes_left == 0
                and self._clock() - self._probed_at >= self.options.open_for_s
            ):
                # Probes whose results never came (refused later, cancelled): new ones.
                self._probes_left, self._probes_ok = self.options.probe_calls, 0
            if self._probes_left > 0:
                self._probes_left -= 1
                self._probed_at = self._clock()
                return True
        return False

    def give_back(self) -> None:
        """A call :meth:`allow` let through did not go out after all (refused by the
        rate limit): while half open, its probe slot is free again."""
        if self._state is BreakerState.HALF_OPEN and self._probes_left < self.options.probe_calls:
            self._probes_left += 1

    def answered(self) -> None:
        """A call got a permanent error of its own notification: the provider is up.

        Counts as a successful probe while half open; otherwise not recorded at all
        (a bad token says nothing of the provider's health).
        """
        if self.state is BreakerState.HALF_OPEN:
            self.record(True)

    def record(self, ok: bool) -> None:
        """The result of one call that :meth:`allow` let through."""
        state = self.state
        if state is BreakerState.HALF_OPEN:
            if not ok:
                self._open()
                return
            self._probes_ok += 1
            if self._probes_ok >= self.options.probe_calls:
                self._results.clear()
                self._failures = 0
                self._move(BreakerState.CLOSED)
            return
        if state is BreakerState.OPEN:
            return  # a late answer of a call made before it opened
        if len(self._results) == self._results.maxlen and not self._results[0]:
            self._failures -= 1
        self._results.append(ok)
        if not ok:
            self._failures += 1
        options = self.options
        if len(self._results) >= options.min_calls and self.failure_rate() >= options.failure_rate:
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._move(BreakerState.OPEN)

    def _move(self, state: BreakerState) -> None:
        if state is self._state:
            return
        log.warning(
            "provider %s: circuit breaker %s -> %s (failure rate %.0f%%)",
            self.name,
            self._state.value,
            state.value,
            100 * self.failure_rate(),
        )
        self._state = state
        self.transitions += 1
        if self._on_change is not None:
            self._on_change(self.name, state)


def breaker_document(breaker: CircuitBreaker) -> dict[str, Any]:
    """The breaker as ``GET /providers`` and ``/health`` show it."""
    return {
        "state": breaker.state.value,
        "failure_rate": round(breaker.failure_rate(), 4),
        "retry_in_s": round(breaker.retry_in_s(), 3),
        "transitions": breaker.transitions,
    }


def build_breakers(
    names: Iterable[str],
    options: BreakerOptions,
    on_change: Callable[[str, BreakerState], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, CircuitBreaker]:
    """One breaker per provider name."""
    return {name: CircuitBreaker(name, options, clock=clock, on_change=on_change) for name in names}
