"""Records: what a source reads from a topic and what a publisher writes to one.

The contract shared by the sources, the pipeline and the web layer (``POST /send``
publishes); no I/O here and no pushtrio imports, so every layer imports it downward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

Headers = list[tuple[str, bytes]]
Message = tuple[bytes | None, bytes | None, Headers]
"""What a publisher writes: key, value (None is a tombstone) and headers."""


@dataclass(slots=True, frozen=True)
class Record:
    """One record read from the topic; ``epoch`` ties it to one assignment of its partition."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int
    key: bytes | None = None
    epoch: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


Batch = list[Record]
"""Records a worker takes at once (one dedup look-up, one limiter round trip)."""


class Publisher(Protocol):
    """Writes records to a topic; used by ``POST /send`` and the dead-letter path."""

    async def publish_many(self, topic: str, items: Sequence[Message]) -> None:
        """Write ``(key, value, headers)`` items and return once the broker has all.

        Raises BrokerUnavailable when they could not all be written in time.
        """
        ...

    async def check(self) -> None:
        """Return if the broker answers; raise BackendError otherwise."""
        ...

    async def aclose(self) -> None: ...
