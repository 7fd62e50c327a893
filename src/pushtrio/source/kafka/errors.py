"""kafka-python's errors, made readable and survivable.

Two things the reader thread needs and kafka-python does not give:

- :func:`describe`: a sentence for an operator. Several kafka-python errors carry
  no message (``KafkaTimeoutError: None``), which tells nobody anything.
- :func:`release_undecodable`: kafka-python 3.0 raises a decoding error
  (``UnsupportedCodecError`` for a codec it lacks, ``CorruptRecordError``) once
  from ``poll`` and then leaves the broken batch in its fetcher, where the next
  ``poll`` spins on it forever without returning. This drops that batch from the
  fetcher and says which partition and offset it was at, so the caller can stop
  the partition visibly instead of hanging.

Both lean on the fetcher's private state (kafka-python 3.0.x, pinned in
pyproject.toml); if that changes, :func:`release_undecodable` returns None and the
caller still reports the error.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.errors import CorruptRecordError, KafkaError, KafkaTimeoutError, UnsupportedCodecError

log = logging.getLogger(__name__)

STUCK_RETRY_S = 30.0
"""A partition stopped at a batch the client cannot decode is tried again this often."""

DECODE_ERRORS: tuple[type[Exception], ...] = (UnsupportedCodecError, CorruptRecordError)
"""Errors that mean a record batch cannot be read by this client (not a broker fault)."""


def describe(exc: BaseException) -> str:
    """``exc`` as one readable line: its type and message, or what it means when empty."""
    name = type(exc).__name__
    message = str(exc).strip()
    if message in ("", "None", name, f"{name}: None"):
        if isinstance(exc, KafkaTimeoutError):
            return f"{name}: the brokers did not answer in time"
        if isinstance(exc, KafkaError):
            return f"{name}: {getattr(exc, 'description', '') or 'no details given'}"
        return name
    if message.startswith(f"{name}: "):
        return message
    return f"{name}: {message}"


def release_undecodable(consumer: Any) -> tuple[TopicPartition, int] | None:
    """After a decoding error from ``poll``: drop the broken batch from the fetcher.

    Returns the partition and the offset of the first record that could not be
    read, or None when the fetcher's state does not show it. The partition's
    position is left at that offset, so resuming it reads the same batch again.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is None:
        return None
    found: tuple[TopicPartition, int] | None = None
    part = getattr(fetcher, "_next_partition_records", None)
    if part is not None:
        found = (part.topic_partition, int(part.next_fetch_offset))
        part.drain()
        fetcher._next_partition_records = None
    pending = getattr(fetcher, "_next_in_line_exception_metadata", None)
    if pending is not None:
        fetcher._next_in_line_exception_metadata = None
        if found is None and pending.partition is not None:
            found = (pending.partition, int(pending.fetched_offset))
    if found is not None:
        try:
            consumer.seek(found[0], found[1])
        except (KafkaError, AssertionError, ValueError) as exc:  # not assigned any more
            log.debug("could not seek %s to %d: %s", found[0], found[1], exc)
    return found


@dataclass(slots=True)
class _Stuck:
    offset: int
    error: str
    retry_at: float


class StuckPartitions:
    """Partitions stopped at a record batch this client cannot decode.

    Owned by the reader thread (the only caller of the consumer); :meth:`report`
    may be read from any thread. The other partitions keep flowing. A stuck
    partition is tried again every STUCK_RETRY_S (a codec installed meanwhile, or
    a batch that was corrupt in transit only, lets it pass); nothing behind the
    batch is committed until it can be read, so nothing is lost.
    """

    def __init__(self) -> None:
        self._stuck: dict[tuple[str, int], _Stuck] = {}

    def __contains__(self, tp: tuple[str, int]) -> bool:
        """Whether (topic, partition) is stopped."""
        return tp in self._stuck

    def stop(self, consumer: Any, exc: Exception) -> bool:
        """Pause the partition whose batch raised ``exc``; False when it cannot be found."""
        found = release_undecodable(consumer)
        error = describe(exc)
        if found is None:
            log.error("cannot decode a record batch (partition unknown): %s", error)
            return False
        tp, offset = found
        consumer.pause(tp)
        key = (tp.topic, tp.partition)
        first = key not in self._stuck
        self._stuck[key] = _Stuck(offset, error, time.monotonic() + STUCK_RETRY_S)
        if first:
            log.error(
                "topic %s partition %d stopped at offset %d: cannot decode its records (%s); "
                "retrying every %.0fs",
                tp.topic,
                tp.partition,
                offset,
                error,
                STUCK_RETRY_S,
            )
        return True

    def retry(self, consumer: Any, records: dict[Any, list[Any]], *, resume: bool) -> None:
        """Forget partitions read past their stuck offset (or revoked); resume those due."""
        if not self._stuck:
            return
        assigned = {(tp.topic, tp.partition): tp for tp in consumer.assignment()}
        now = time.monotonic()
        for key, stuck in list(self._stuck.items()):
            tp = assigned.get(key)
            if tp is None:
                del self._stuck[key]
            elif any(r.offset >= stuck.offset for r in records.get(tp, ())):
                log.info("%s partition %d reads again past offset %d", *key, stuck.offset)
                del self._stuck[key]
            elif now >= stuck.retry_at:
                stuck.retry_at = now + STUCK_RETRY_S
                if resume:
                    consumer.resume(tp)

    def problems(self) -> list[str]:
        """One line per stuck partition, for /health."""
        return [
            f"topic {t} partition {p} stopped at offset {s.offset}: {s.error}"
            for (t, p), s in sorted(self._stuck.items())
        ]

    def report(self) -> dict[str, dict[str, Any]]:
        """Stuck partitions (``topic/partition``): the offset they stopped at and the error."""
        return {
            f"{t}/{p}": {"offset": s.offset, "error": s.error}
            for (t, p), s in list(self._stuck.items())
        }
