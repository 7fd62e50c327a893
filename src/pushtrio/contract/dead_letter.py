"""Dead letters: the original record, replayable as it was, with the reason in headers.

:func:`dead_letter` writes one; :class:`Letter` is one read back from the topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

from .api import DeadLetterView
from .outcome import Outcome
from .records import ORIGIN_HEADER, Headers, Message, Record, origin

REPLAYED_FROM: Final = "pushtrio-replayed-from"
"""``[dlq_topic, partition, offset]`` of the letter a replayed record came from."""
VALUE_DROPPED: Final = "pushtrio-value-dropped"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
HEADER_PREFIX = "pushtrio-"
"""Headers of this prefix are pushtrio's own; a replayed letter's old ones are replaced."""
DEAD_LETTER_MAX_VALUE_BYTES = 512 * 1024
"""Beyond this the original value is left out of a dead letter (a broker's default
message limit is 1 MiB; a letter it refuses for size would stall the pipeline)."""


def dead_letter(record: Record, outcome: Outcome) -> Message:
    """The original record, replayable as it was: key, value (a tombstone stays None)
    and headers, plus ``pushtrio-*`` headers with the reason.

    ``pushtrio-*`` headers the record already had (a replayed dead letter that failed
    again) are replaced, not repeated. A value over DEAD_LETTER_MAX_VALUE_BYTES is
    dropped and ``pushtrio-value-dropped`` gives its size; ``pushtrio-source`` still
    points at it. ``pushtrio-origin`` names the notification's first record (the
    record itself, unless it was replayed): replaying it again keeps its id.
    """
    value = record.value
    headers: Headers = [(k, v) for k, v in record.headers if not k.startswith(HEADER_PREFIX)]
    headers += [
        ("pushtrio-outcome", outcome.event.value.encode()),
        ("pushtrio-reason", outcome.error.encode()),
        ("pushtrio-attempts", str(outcome.attempts).encode()),
        ("pushtrio-id", outcome.id.encode()),
        ("pushtrio-source", orjson.dumps([record.topic, record.partition, record.offset])),
        (ORIGIN_HEADER, orjson.dumps(origin(record))),
    ]
    if value is not None and len(value) > DEAD_LETTER_MAX_VALUE_BYTES:
        headers.append((VALUE_DROPPED, str(len(value)).encode()))
        value = b""
    return record.key, value, headers


def format_ms(timestamp_ms: int) -> str:
    """Unix milliseconds as RFC 3339 in UTC, to the millisecond."""
    moment = _EPOCH + timedelta(milliseconds=timestamp_ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Letter:
    """One record of the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> str:
        """The last value of header ``name``, decoded; empty when absent."""
        for key, value in reversed(self.headers):
            if key == name:
                return (value or b"").decode(errors="replace")
        return ""

    @property
    def id(self) -> str:
        return self.header("pushtrio-id")

    @property
    def outcome(self) -> str:
        return self.header("pushtrio-outcome")

    @property
    def reason(self) -> str:
        return self.header("pushtrio-reason")

    @property
    def dropped(self) -> bool:
        """Whether the value was left out of the letter (it cannot be replayed)."""
        return any(key == VALUE_DROPPED for key, _ in self.headers)

    def replayed(self) -> Message:
        """What replaying writes to the main topic: the original record, and where from."""
        headers: Headers = [(k, v) for k, v in self.headers if not k.startswith(HEADER_PREFIX)]
        headers.append((REPLAYED_FROM, orjson.dumps([self.topic, self.partition, self.offset])))
        # The first record's coordinates, so that a notification without an id keeps
        # the id it had (dedup knows it): older letters have only pushtrio-source.
        first = self.header(ORIGIN_HEADER) or self.header("pushtrio-source")
        if first:
            headers.append((ORIGIN_HEADER, first.encode()))
        return self.key, self.value, headers

    def summary(self) -> DeadLetterView:
        """The letter as a report lists it."""
        attempts = self.header("pushtrio-attempts")
        view = DeadLetterView(
            partition=self.partition,
            offset=self.offset,
            time=format_ms(self.timestamp_ms),
            outcome=self.outcome,
            id=self.id,
            reason=self.reason,
            attempts=int(attempts) if attempts.isdigit() else None,
        )
        if self.dropped:
            size = self.header(VALUE_DROPPED)
            view.dropped_bytes = int(size) if size.isdigit() else None
        return view
