"""What happens to a notification that cannot go out now: a delay topic, or its end.

The pipeline asks :class:`Scheduler` three questions; each answer is either a
:class:`~pushtrio.schedule.Step` (write the record to a delay topic, settle it, and
take it up again when due) or the notification's final :class:`~pushtrio.model.Outcome`:

* :meth:`Scheduler.after_failure`: a transient failure of attempt n goes to retry
  tier n while attempts remain, else it is ``failed``;
* :meth:`Scheduler.park`: its provider's breaker is open: park it (no attempt is
  used) until the breaker lets calls through, for at most BREAKER_MAX_PARK;
* :meth:`Scheduler.defer`: the user's window is full: with RATE_LIMIT_POLICY=defer
  it waits for the slot the limiter named, at most DEFER_MAX and never past its
  ``expires_at``; with ``drop`` it is ``rate_limited``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .model import Notification, Outcome, OutcomeKind, outcome_of
from .providers.breaker import CircuitBreaker
from .records import Message, Record
from .schedule import DelayTopics, Step, StepKind, delayed, now_ms, waiting

PARK_AGAIN_S = 1.0
"""A breaker that is half open (its probes in flight) is asked again this much later."""


@dataclass(frozen=True, slots=True)
class SchedulerOptions:
    topics: DelayTopics
    defer: bool
    """RATE_LIMIT_POLICY=defer: wait for a free slot instead of dropping."""
    defer_max_s: float
    max_park_s: float


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
    ) -> Step | Outcome:
        """Attempt ``attempt`` failed transiently: the next tier, or ``failed``."""
        if attempt > self.retry_attempts:
            return outcome_of(
                OutcomeKind.FAILED,
                notification,
                record,
                attempts=attempt,
                error=error,
                started=started,
            )
        topics = self.options.topics
        due = self._clock() + math.ceil(topics.retry_delay(attempt) * 1000)
        message = delayed(record, attempts=attempt, due=due, reason=error)
        return _step(
            StepKind.RETRY_SCHEDULED,
            topics.retry(attempt),
            message,
            notification,
            due=due,
            attempts=attempt,
            reason=error,
        )

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
        if attempts is not None:
            state = replace(state, attempts=attempts)
        now = self._clock()
        since = state.parked_since_ms or now
        reason = f"provider {notification.provider} unavailable (circuit breaker open)"
        if now - since > self.options.max_park_s * 1000:
            return outcome_of(
                OutcomeKind.FAILED,
                notification,
                record,
                attempts=state.attempts,
                error=f"{reason} for over {self.options.max_park_s:g}s",
                started=started,
            )
        due = now + math.ceil(max(breaker.retry_in_s(), PARK_AGAIN_S) * 1000)
        message = delayed(
            record, attempts=state.attempts, due=due, reason=reason, parked_since=since
        )
        return _step(
            StepKind.PARKED,
            self.options.topics.park,
            message,
            notification,
            due=due,
            attempts=state.attempts,
            reason=reason,
        )

    def defer(
        self,
        record: Record,
        notification: Notification,
        wait_s: float,
        started: float,
    ) -> Step | Outcome:
        """The user's window is full for ``wait_s`` more seconds."""
        limited = outcome_of(
            OutcomeKind.RATE_LIMITED,
            notification,
            record,
            attempts=waiting(record).attempts,
            started=started,
        )
        if not self.options.defer:
            return limited
        state = waiting(record)
        now = self._clock()
        since = state.deferred_since_ms or now
        due = now + math.ceil(wait_s * 1000)
        if due - since > self.options.defer_max_s * 1000:
            return limited
        expires = notification.expires_at
        if expires is not None and due >= expires.timestamp() * 1000:
            return outcome_of(
                OutcomeKind.EXPIRED,
                notification,
                record,
                attempts=state.attempts,
                error="would expire while deferred",
                started=started,
            )
        message = delayed(
            record,
            attempts=state.attempts,
            due=due,
            reason="rate limited",
            deferred_since=since,
        )
        return _step(
            StepKind.DEFERRED,
            self.options.topics.defer,
            message,
            notification,
            due=due,
            attempts=state.attempts,
            reason="rate limited",
        )


def _step(
    kind: StepKind,
    topic: str,
    message: Message,
    notification: Notification,
    *,
    due: int,
    attempts: int,
    reason: str,
) -> Step:
    return Step(
        kind=kind,
        topic=topic,
        message=message,
        id=notification.id,
        user_id=notification.user_id,
        provider=notification.provider,
        attempts=attempts,
        due_ms=due,
        reason=reason,
        ts=time.time(),
    )
