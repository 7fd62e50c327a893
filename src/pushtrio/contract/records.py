"""Records: what a source reads from a topic and what a publisher writes to one.

The contract shared by the sources, the pipeline and the web layer (``POST /send``
publishes); no I/O here and no imports but the lanes' default priority, so every
layer imports it downward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec
import orjson

from .lanes import DEFAULT_PRIORITY

Headers = list[tuple[str, bytes]]
Message = tuple[bytes | None, bytes | None, Headers]
"""What a publisher writes: key, value (None is a tombstone) and headers."""


class Record(msgspec.Struct, frozen=True, gc=False):
    """One record read from the topic; ``epoch`` ties it to one assignment of its partition."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int
    key: bytes | None = None
    epoch: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()
    priority: int = DEFAULT_PRIORITY
    """Read from the value before it is decoded (:func:`~.lanes.peek_priority`): the
    record's rank among those waiting for a worker."""


ORIGIN_HEADER = "pushtrio-origin"
"""``[topic, partition, offset]`` of the first record of a notification that was
written again (replayed from the dead-letter topic)."""


def origin(record: Record) -> tuple[str, int, int]:
    """Where the notification of ``record`` was first read: its ORIGIN_HEADER, if it
    carries a well-formed one, else the record's own coordinates."""
    for key, value in record.headers:
        if key == ORIGIN_HEADER:
            try:
                topic, partition, offset = orjson.loads(value)
            except (orjson.JSONDecodeError, TypeError, ValueError):
                break
            if isinstance(topic, str) and isinstance(partition, int) and isinstance(offset, int):
                return topic, partition, offset
            break
    return record.topic, record.partition, record.offset


Batch = list[Record]
"""Records a worker takes at once (one dedup look-up, one limiter round trip)."""


class Publisher(Protocol):
    """Writes records to a topic; used by ``POST /send`` and the dead-letter path."""

    async def publish_many(
        self, topic: str, items: Sequence[Message], partitions: Sequence[int] | None = None
    ) -> None:
        """Write ``(key, value, headers)`` items and return once the broker has all.

        ``partitions``, when given, names each item's partition (modulo the topic's
        partition count) instead of hashing its key: a delay-topic record goes to the
        partition number its source record had, and skips the partitioner's cost.
        Raises BrokerUnavailable when they could not all be written in time.
        """
        ...

    async def check(self) -> None:
        """Return if the broker answers; raise BackendError otherwise."""
        ...

    async def aclose(self) -> None: ...
