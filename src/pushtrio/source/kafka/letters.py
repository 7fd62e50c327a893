"""Where replays read and write: the dead-letter topic on Kafka, or in the embedded queue.

:class:`KafkaLetters` reads the dead-letter topic without a consumer group (no
offsets committed, no other reader disturbed): each partition from its start (or
from the first letter at ``since``) up to the end offset it had when the replay
began, so a replay is bounded and terminates even while new letters arrive
(replayed notifications that fail again among them).

The service's replay (``POST /dlq/replay``) is wired in
:mod:`pushtrio.service.replay`, ``pushtrio replay`` in :mod:`pushtrio.cli.replay`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import trio
from kafka import TopicPartition
from kafka.errors import KafkaError

from ...contract.dead_letter import Letter
from ...contract.errors import BrokerUnavailable
from .. import LETTER_CHUNK_SIZE
from .clients import CALL_TIMEOUT_MS, new_reader

STALL_TIMEOUT_S: Final = 30.0
"""A partition that yields nothing for this long, short of its end, fails the replay."""
POLL_MS: Final = 500
CLOSE_TIMEOUT_S: Final = 5.0
"""Limit on waiting for the consumer's close (it finishes in its thread anyway)."""


def _letter(record: Any) -> Letter:
    return Letter(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
        record.key,
        record.value,
        tuple(record.headers or ()),
    )


class KafkaLetters:
    """A :class:`~pushtrio.pipeline.replay.LetterSource` on Kafka.

    Open it with :func:`open_kafka_letters`.

    The ``*_blocking`` methods call kafka-python in a worker thread, one at a time
    (a lock makes a close wait for a read abandoned on cancellation). Partitions are
    read one after another, in order, so a replay with a limit takes the same
    letters as its dry run.
    """

    def __init__(
        self,
        brokers: Sequence[str],
        topic: str,
        *,
        chunk_size: int = LETTER_CHUNK_SIZE,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        self.topic = topic
        self.total = 0
        self._brokers = list(brokers)
        self._chunk_size = chunk_size
        self._stall_timeout_s = stall_timeout_s
        self._consumer: Any = None
        self._ranges: list[tuple[TopicPartition, int, int]] = []
        self._current: TopicPartition | None = None
        self._lock = threading.Lock()

    def open_blocking(self, since_ms: int | None) -> None:
        """Connect, and take each partition's start and end; BrokerUnavailable on failure."""
        with self._lock:
            self._open(since_ms)

    def _open(self, since_ms: int | None) -> None:
        try:
            self._consumer = new_reader(
                self._brokers, "pushtrio-replay", max_poll_records=self._chunk_size
            )
            self._ranges = self._take_ranges(since_ms)
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {exc}") from exc
        self.total = sum(end - start for _, start, end in self._ranges)

    def _take_ranges(self, since_ms: int | None) -> list[tuple[TopicPartition, int, int]]:
        consumer = self._consumer
        partitions = [
            TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic))
        ]
        if not partitions:
            return []
        starts = consumer.beginning_offsets(partitions, timeout_ms=CALL_TIMEOUT_MS)
        ends = consumer.end_offsets(partitions, timeout_ms=CALL_TIMEOUT_MS)
        if since_ms is not None and since_ms > 0:
            found = consumer.offsets_for_times(
                dict.fromkeys(partitions, since_ms), timeout_ms=CALL_TIMEOUT_MS
            )
            # None: no letter of the partition is that recent.
            starts = {tp: ends[tp] if at is None else at.offset for tp, at in found.items()}
        return [(tp, starts[tp], ends[tp]) for tp in partitions if ends[tp] > starts[tp]]

    def read_blocking(self) -> list[Letter] | None:
        """Up to a chunk of letters of one partition; None once every range is read."""
        try:
            with self._lock:
                return self._read()
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {exc}") from exc

    def _read(self) -> list[Letter] | None:
        consumer = self._consumer
        deadline = time.monotonic() + self._stall_timeout_s
        while self._ranges:
            tp, start, end = self._ranges[0]
            if self._current != tp:
                consumer.assign([tp])
                consumer.seek(tp, start)
                self._current = tp
            records = consumer.poll(timeout_ms=POLL_MS, max_records=self._chunk_size).get(tp, [])
            letters = [_letter(r) for r in records if r.offset < end]
            if records:
                deadline = time.monotonic() + self._stall_timeout_s
            # Transaction markers and compaction leave gaps: the position says where we are.
            position = consumer.position(tp, timeout_ms=CALL_TIMEOUT_MS)
            if position is not None and position >= end:
                self._ranges.pop(0)
            if letters:
                return letters
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"{self.topic} partition {tp.partition}: nothing read for "
                    f"{self._stall_timeout_s:g}s at offset {position}, short of {end}"
                )
        return None

    def close_blocking(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

    async def next_chunk(self) -> list[Letter] | None:
        return await trio.to_thread.run_sync(self.read_blocking, abandon_on_cancel=True)


@asynccontextmanager
async def open_kafka_letters(
    brokers: Sequence[str], topic: str, since_ms: int | None
) -> AsyncIterator[KafkaLetters]:
    """Open :class:`KafkaLetters` on ``topic``; close its consumer on exit.

    Raises BrokerUnavailable when Kafka cannot be reached. On cancellation the
    blocking call under way is abandoned (it ends within its own timeouts) and the
    close waits for it, in its thread: cancelled, this returns within
    CLOSE_TIMEOUT_S.
    """
    letters = KafkaLetters(brokers, topic)
    try:
        await trio.to_thread.run_sync(letters.open_blocking, since_ms, abandon_on_cancel=True)
        yield letters
    finally:
        with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            await trio.to_thread.run_sync(letters.close_blocking, abandon_on_cancel=True)
