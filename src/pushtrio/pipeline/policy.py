"""What happens to a notification that cannot go out now: a delay topic, or its end.

The pipeline asks :class:`Scheduler` three questions; each answer is either a
:class:`~pushtrio.contract.delays.Step` (write the record to a delay topic, settle it, and
take it up again when due) or the notification's final :class:`~pushtrio.contract.outcome.Outcome`:

* :meth:`Scheduler.after_failure`: a transient failure of attempt n goes to retry
  tier n while attempts remain, else it is ``failed``;
* :meth:`Scheduler.park`: its provider's breaker is open: park it (no attempt is
  used) until the breaker lets calls through, for at most BREAKER_MAX_PARK;
* :meth:`Scheduler.defer`: the user's window is full: with RATE_LIMIT_POLICY=defer
  it waits for the slot the limiter named, at most DEFER_MAX and never past its
  ``expires_at``; with ``drop`` it is ``rate_limited``.

Each stage of the pipeline returns what it finished with as a :class:`StageResult`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..contract.delays import DelayTopics, Step, StepKind, delayed, now_ms, waiting
from ..contract.notification import Notification
from ..contract.outcome import DeviceCounts, Outcome, OutcomeKind
from ..contract.records import Record
from .breaker import CircuitBreaker

MAX_RETRY_AFTER_S = 300.0
"""Longest Retry-After of a provider that is honoured (a longer one is cut to this)."""
Settled = list[tuple[Record, Outcome]]
Moved = list[tuple[Record, Step]]

PARK_AGAIN_S = 1.0
"""A breaker that is half open (its probes in flight) is asked again this much later,
or after SchedulerOptions.probe_wait_s if that is longer."""


@dataclass(slots=True)
class StageResult:
    """What a pipeline stage finished with, in the order it finished them: outcomes
    to settle, and records moved to a delay topic (settled once written there).

    A stage makes one per batch; its caller merges them (:meth:`merge`).
    """

    settled: Settled = field(default_factory=list)
    moved: Moved = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.settled or self.moved)

    def place(self, record: Record, result: Step | Outcome) -> None:
        """Keep a :class:`Scheduler` answer for ``record`` with its kind."""
        if isinstance(result, Step):
            self.moved.append((record, result))
        else:
            self.settled.append((record, result))

    def merge(self, other: StageResult) -> None:
        """Add what ``other`` finished, after what this one holds."""
        if other.settled:
            self.settled += other.settled
        if other.moved:
            self.moved += other.moved


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    topics: DelayTopics
    defer: bool
    """RATE_LIMIT_POLICY=defer: wait for a free slot instead of dropping."""
    defer_max_s: float
    max_park_s: float
    probe_wait_s: float = PARK_AGAIN_S
    """How long probes may take (TimeBudgets.probe_wait_s: the provider timeout): a
    notification that finds the breaker half open, its probes out, waits this long
    rather than coming back every second."""


class Scheduler:
    """Turns "not now" into a delay-topic write, or into a final outcome."""

    def __init__(self, options: SchedulerOptions, *, clock: Callable[[], int] = now_ms) -> None:
        self.options = options
        self._clock = clock
        """Epoch milliseconds, as in the ``pushtrio-due`` header (injectable for tests)."""

    @property
    def retry_attempts(self) -> int:
        return self.options.topics.retry_attempts

    def after_failure(
        self,
        record: Record,
        notification: Notification,
        attempt: int,
        error: str,
        started: float,
        *,
        not_before_s: float | None = None,
        devices: DeviceCounts | None = None,
    ) -> Step | Outcome:
        """Attempt ``attempt`` failed transiently: the next tier, or ``failed``.

        ``not_before_s`` (a provider's Retry-After, capped at MAX_RETRY_AFTER_S) makes
        the record due no earlier than that; a later record of the tier may then wait
        behind it for the difference. ``devices``: what the last attempt did on the
        user's devices, for the ``failed`` outcome.
        """
        if attempt > self.retry_attempts:
            return outcome_of(
                OutcomeKind.FAILED,
                notification,
                record,
                attempts=attempt,
                error=error,
                started=started,
                devices=devices,
            )
        topics = self.options.topics
        delay_s = topics.retry_delay(attempt)
        if not_before_s is not None:
            delay_s = max(delay_s, min(not_before_s, MAX_RETRY_AFTER_S))
        due = self._clock() + math.ceil(delay_s * 1000)
        state = waiting(record)
        move = _Move(
            StepKind.RETRY_SCHEDULED,
            topics.retry(attempt),
            due,
            attempt,
            error,
            parked=state.parked_since_ms,
            deferred=state.deferred_since_ms,
        )
        return move.of(record, notification)

    def park(
        self,
        record: Record,
        notification: Notification,
        breaker: CircuitBreaker,
        started: float,
        attempts: int | None = None,
    ) -> Step | Outcome:
        """The provider's breaker refuses calls: park until it lets calls through.

        ``attempts`` counts the attempt that just failed and opened it, if any.
        """
        state = waiting(record)
        made = state.attempts if attempts is None else attempts
        now = self._clock()
        since = state.parked_since_ms or now
        reason = f"provider {notification.provider} unavailable (circuit breaker open)"
        if now - since > self.options.max_park_s * 1000:
            error = f"{reason} for over {self.options.max_park_s:g}s"
            return outcome_of(
                OutcomeKind.FAILED,
                notification,
                record,
                attempts=made,
                error=error,
                started=started,
            )
        wait_s = breaker.retry_in_s() or max(PARK_AGAIN_S, self.options.probe_wait_s)
        due = now + math.ceil(wait_s * 1000)
        move = _Move(
            StepKind.PARKED,
            self.options.topics.park,
            due,
            made,
            reason,
            parked=since,
            deferred=state.deferred_since_ms,
        )
        return move.of(record, notification)

    def defer(
        self,
        record: Record,
        notification: Notification,
        wait_s: float,
        started: float,
    ) -> Step | Outcome:
        """The user's window is full for ``wait_s`` more seconds."""
        state = waiting(record)
        now = self._clock()
        since = state.deferred_since_ms or now
        due = now + math.ceil(wait_s * 1000)
        kind = OutcomeKind.RATE_LIMITED
        expires = notification.expires_at
        if self.options.defer and expires is not None and due >= expires.timestamp() * 1000:
            kind = OutcomeKind.EXPIRED  # it would expire while it waits
        elif self.options.defer and due - since <= self.options.defer_max_s * 1000:
            topic = self.options.topics.defer
            move = _Move(
                StepKind.DEFERRED,
                topic,
                due,
                state.attempts,
                "rate limited",
                parked=state.parked_since_ms,
                deferred=since,
            )
            return move.of(record, notification)
        return outcome_of(kind, notification, record, attempts=state.attempts, started=started)


@dataclass(frozen=True, slots=True)
class _Move:
    """Where and until when a record waits, and what its headers say. Both clocks
    (parked since, deferred since) go with every move, so that bouncing between the
    breaker and the limiter escapes neither BREAKER_MAX_PARK nor DEFER_MAX."""

    kind: StepKind
    topic: str
    due: int
    attempts: int
    reason: str
    parked: int = 0
    deferred: int = 0

    def of(self, record: Record, notification: Notification) -> Step:
        message = delayed(
            record,
            attempts=self.attempts,
            due=self.due,
            reason=self.reason,
            parked_since=self.parked,
            deferred_since=self.deferred,
        )
        return Step(
            kind=self.kind,
            topic=self.topic,
            message=message,
            id=notification.id,
            user_id=notification.user_id,
            provider=notification.provider,
            attempts=self.attempts,
            due_ms=self.due,
            reason=self.reason,
            ts=time.time(),
            partition=record.partition,
        )


def outcome_of(
    kind: OutcomeKind,
    notification: Notification,
    record: Record,
    *,
    attempts: int = 0,
    error: str = "",
    started: float | None = None,
    devices: DeviceCounts | None = None,
) -> Outcome:
    """The outcome of ``notification`` read in ``record``; latency since ``started``
    (``time.monotonic()``), when given."""
    return Outcome(
        kind,
        notification.id,
        user_id=notification.user_id,
        provider=notification.provider,
        priority=notification.priority,
        attempts=attempts,
        latency_ms=0.0 if started is None else (time.monotonic() - started) * 1000,
        error=error,
        ts=time.time(),
        partition=record.partition,
        offset=record.offset,
        devices=devices,
    )
