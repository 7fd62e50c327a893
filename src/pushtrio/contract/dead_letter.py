"""Dead letters: the original record, replayable as it was, with the reason in headers."""

from __future__ import annotations

import orjson

from .outcome import Outcome
from .records import ORIGIN_HEADER, Headers, Message, Record, origin

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
        headers.append(("pushtrio-value-dropped", str(len(value)).encode()))
        value = b""
    return record.key, value, headers
