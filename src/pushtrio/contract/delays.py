"""Delay topics: where a notification waits, and the headers that say until when.

A notification that cannot go out now is written again, unchanged (key, value and
the user's headers), to a delay topic, and its record is then settled:

    <topic>.retry.<n>   after a transient failure of attempt n (n = 1..RETRY_ATTEMPTS),
                        due RETRY_DELAY x 2^(n-1) later (jittered as today, capped)
    <topic>.park        while its provider's circuit breaker is open: due when the
                        breaker lets calls through again; burns no attempt
    <topic>.defer       rate-limited with RATE_LIMIT_POLICY=defer: due when the
                        user's window frees a slot

The source reads the delay topics with the main topic, in the same consumer group,
and holds each partition's head record back (the partition paused) until it is
due; a record coming back is screened and admitted like a new one. ``pushtrio-*``
headers carry the state: attempts so far, due time, the last reason, when parking
or deferring began, and where the notification was first read.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .records import ORIGIN_HEADER, Headers, Message, Record, origin

ATTEMPTS_HEADER = "pushtrio-attempts"
DUE_HEADER = "pushtrio-due"
"""Epoch milliseconds at which the record may be taken."""
REASON_HEADER = "pushtrio-reason"
PARKED_HEADER = "pushtrio-parked-since"
DEFERRED_HEADER = "pushtrio-deferred-since"
_OWN_HEADERS = (ATTEMPTS_HEADER, DUE_HEADER, REASON_HEADER, ORIGIN_HEADER)


MAX_BACKOFF_S = 30.0
"""Upper bound of one backoff delay before jitter, however many retries came before."""

_unseeded = random.Random()


def backoff_delay_s(retry: int, retry_delay_s: float, rng: random.Random | None = None) -> float:
    """The wait before retry number ``retry`` (1 for the first retry).

    Exponential with "equal jitter": the base ``retry_delay_s * 2**(retry - 1)``,
    capped at :data:`MAX_BACKOFF_S`, is scaled by a uniform factor in [0.5, 1.0].
    Half the base is kept so that a retry never comes right back at a provider
    that just failed; the random half spreads the retries of many workers that
    failed together (for instance on a 503 burst) so they do not return in lockstep.
    """
    if retry < 1:
        raise ValueError(f"retry counts from 1, not {retry}")
    # Clamp the exponent so that hundreds of retries cannot overflow the float.
    base_s = min(retry_delay_s * 2.0 ** min(retry - 1, 64), MAX_BACKOFF_S)
    return base_s * (rng if rng is not None else _unseeded).uniform(0.5, 1.0)


class StepKind(enum.StrEnum):
    """An intermediate event: the notification waits; its final outcome comes later."""

    RETRY_SCHEDULED = "retry_scheduled"
    PARKED = "parked"
    DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class DelayTopics:
    """The delay topics of one main topic, and their delays."""

    topic: str
    retry_attempts: int
    retry_delay_s: float

    def retry(self, n: int) -> str:
        return f"{self.topic}.retry.{n}"

    @property
    def park(self) -> str:
        return f"{self.topic}.park"

    @property
    def defer(self) -> str:
        return f"{self.topic}.defer"

    def all(self) -> list[str]:
        """Every delay topic, the retry tiers first."""
        tiers = [self.retry(n) for n in range(1, self.retry_attempts + 1)]
        return [*tiers, self.park, self.defer]

    def retry_delay(self, n: int) -> float:
        """The wait of tier ``n``: RETRY_DELAY x 2^(n-1), jittered and capped."""
        return backoff_delay_s(n, self.retry_delay_s)


@dataclass(frozen=True, slots=True)
class Waiting:
    """What a record read from a delay topic says about its notification."""

    attempts: int = 0
    """Provider attempts made so far (parking and deferral do not count)."""
    due_ms: int = 0
    parked_since_ms: int = 0
    deferred_since_ms: int = 0


def waiting(record: Record) -> Waiting:
    """The state in ``record``'s headers; zeros for a record of the main topic."""
    values: dict[str, int] = {}
    for key, value in record.headers:
        if key in (ATTEMPTS_HEADER, DUE_HEADER, PARKED_HEADER, DEFERRED_HEADER):
            try:
                values[key] = int(value)
            except (TypeError, ValueError):  # a null or malformed value: not ours
                continue
    if not values:
        return Waiting()
    return Waiting(
        attempts=max(0, values.get(ATTEMPTS_HEADER, 0)),
        due_ms=values.get(DUE_HEADER, 0),
        parked_since_ms=values.get(PARKED_HEADER, 0),
        deferred_since_ms=values.get(DEFERRED_HEADER, 0),
    )


def due_ms(record: Record) -> int:
    """When ``record`` may be taken (epoch ms); 0 (at once) without a due header."""
    for key, value in record.headers:
        if key == DUE_HEADER:
            try:
                return int(value)
            except (TypeError, ValueError):
                return 0
    return 0


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Step:
    """A notification written to a delay topic: the write to make and the event to show."""

    kind: StepKind
    topic: str
    message: Message
    id: str
    user_id: str
    provider: str
    attempts: int
    due_ms: int
    reason: str
    ts: float
    partition: int = 0
    """The source record's partition: the write goes to the same number (modulo)."""

    @property
    def event(self) -> StepKind:
        return self.kind

    def to_event(self) -> dict[str, Any]:
        return {
            "event": self.kind.value,
            "id": self.id,
            "user_id": self.user_id,
            "provider": self.provider,
            "attempts": self.attempts,
            "due": self.due_ms / 1000,
            "reason": self.reason or None,
            "ts": self.ts,
        }


def delayed(
    record: Record,
    *,
    attempts: int,
    due: int,
    reason: str,
    parked_since: int = 0,
    deferred_since: int = 0,
) -> Message:
    """``record`` as written to a delay topic: key, value and the user's headers as
    they came, the ``pushtrio-*`` state replaced."""
    headers: Headers = [
        (k, v)
        for k, v in record.headers
        if k not in _OWN_HEADERS and k not in (PARKED_HEADER, DEFERRED_HEADER)
    ]
    headers += [
        (ATTEMPTS_HEADER, str(attempts).encode()),
        (DUE_HEADER, str(due).encode()),
        (REASON_HEADER, reason.encode()),
        (ORIGIN_HEADER, orjson.dumps(origin(record))),
    ]
    if parked_since:
        headers.append((PARKED_HEADER, str(parked_since).encode()))
    if deferred_since:
        headers.append((DEFERRED_HEADER, str(deferred_since).encode()))
    return record.key, record.value, headers


def steps_by_topic(steps: list[Step]) -> Iterator[tuple[str, list[Message], list[int]]]:
    """The writes of ``steps`` per topic, in the steps' order: the messages, and the
    partition number of each one's source record (where it is written)."""
    by_topic: dict[str, tuple[list[Message], list[int]]] = {}
    for step in steps:
        messages, partitions = by_topic.setdefault(step.topic, ([], []))
        messages.append(step.message)
        partitions.append(step.partition)
    for topic, (messages, partitions) in by_topic.items():
        yield topic, messages, partitions
