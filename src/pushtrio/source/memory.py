"""The embedded queue: an in-process stand-in for a Kafka topic, for running with no servers.

:class:`MemoryBroker` keeps each topic as one append-only partition; it is both
the publisher (``POST /send``, the dead-letter topic) and what :class:`MemorySource`
reads. Offsets, commits and settling behave as with Kafka, except that nothing
survives the process.

Memory stays bounded: a topic that is read keeps only the records its reader has
not committed yet (unsettled ones are still there to be read again); a topic that
nobody reads (the dead-letter topic) keeps its newest UNREAD_TOPIC_KEEP records.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import trio

from ..contract.dead_letter import Letter
from ..contract.delays import due_ms, now_ms
from ..contract.lanes import MAIN, URGENT, peek_priority
from ..contract.records import Headers, Message, Record
from . import LETTER_CHUNK_SIZE
from .intake import Intake
from .tracker import OffsetTracker

Item = tuple[bytes | None, bytes | None, Headers, int]
"""A stored record: key, value, headers, timestamp (ms)."""

UNREAD_TOPIC_KEEP = 10_000
"""Records kept of a topic nobody reads (the embedded dead-letter topic): the newest."""


class _Log:
    """One partition: the records from offset ``start`` on."""

    def __init__(self) -> None:
        self.records: deque[Item] = deque()
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + len(self.records)

    def trim(self, upto: int) -> None:
        """Forget the records below offset ``upto``."""
        records = self.records
        while self.start < upto and records:
            records.popleft()
            self.start += 1


class MemoryBroker:
    """Topics as in-memory logs; all calls come from the trio thread."""

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._read: set[str] = set()
        self._changed = trio.Event()

    def _log(self, topic: str) -> _Log:
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = _Log()
        return log

    def log(self, topic: str) -> list[Item]:
        """The records ``topic`` still holds (a copy, for inspection)."""
        return list(self._log(topic).records)

    def start_offset(self, topic: str) -> int:
        return self._log(topic).start

    def end_offset(self, topic: str) -> int:
        return self._log(topic).end

    def read(self, topic: str, offset: int, limit: int) -> list[tuple[int, Item]]:
        """Up to ``limit`` records from ``offset`` on (which must not be trimmed yet)."""
        log = self._log(topic)
        first = offset - log.start
        assert first >= 0, f"offset {offset} of {topic} was already trimmed"
        end = min(len(log.records), first + limit)
        return [(log.start + i, log.records[i]) for i in range(first, end)]

    def reading(self, topic: str) -> None:
        """A reader takes ``topic``: keep its records until :meth:`trim`, not a fixed count."""
        self._read.add(topic)

    def trim(self, topic: str, upto: int) -> None:
        """The reader of ``topic`` has committed everything below ``upto``: free it."""
        self._log(topic).trim(upto)

    def append_nowait(self, topic: str, items: Sequence[Message]) -> None:
        stamp = int(time.time() * 1000)
        log = self._log(topic)
        log.records.extend((key, value, headers, stamp) for key, value, headers in items)
        if topic not in self._read and len(log.records) > UNREAD_TOPIC_KEEP:
            log.trim(log.end - UNREAD_TOPIC_KEEP)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_more(self) -> None:
        await self._changed.wait()

    async def publish_many(
        self, topic: str, items: Sequence[Message], partitions: Sequence[int] | None = None
    ) -> None:
        """Append items (each topic is one partition: ``partitions`` changes nothing);
        never fails (the embedded queue is unbounded memory)."""
        self.append_nowait(topic, items)
        await trio.lowlevel.checkpoint()

    async def check(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class MemorySource:
    """Reads a topic of a :class:`MemoryBroker` and its delay topics, with ordered commits.

    A delay topic's head record is held back until it is due (its ``pushtrio-due``
    header), as the Kafka source pauses such a partition.
    """

    mode = "embedded"

    def __init__(
        self,
        broker: MemoryBroker,
        topic: str,
        *,
        batch_size: int,
        delay_topics: Sequence[str] = (),
        urgent_topic: str = "",
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._broker = broker
        self._clock = clock
        self._topic = topic
        self._delay_topics = tuple(delay_topics)
        self._urgent_topic = urgent_topic
        self.batch_size = batch_size
        self.tracker = OffsetTracker()
        self._epochs: dict[str, int] = {}
        self._positions: dict[str, int] = {}
        self._urgent_read = trio.Event()
        self._urgent_read.set()
        for name in (topic, *self._delay_topics, *([urgent_topic] if urgent_topic else [])):
            self._epochs[name] = self.tracker.assign((name, 0))
            broker.reading(name)
            self._positions[name] = broker.start_offset(name)
        self._stop = trio.Event()

    async def serve(
        self,
        intake: Intake,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Feed new records of the topics into ``intake`` until :meth:`stop_intake`.

        The urgent topic, when there is one, is read first: the main topic's feed
        waits while the urgent one has records it has not handed out.
        """
        try:
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stop, nursery.cancel_scope)
                for name in self._delay_topics:
                    nursery.start_soon(self._run_feed, name, intake, True)
                if self._urgent_topic:
                    nursery.start_soon(self._run_feed, self._urgent_topic, intake, False)
                await self._run_feed(self._topic, intake, False)
        finally:
            intake.close()

    async def _watch_stop(self, scope: trio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()

    async def _run_feed(self, topic: str, intake: Intake, delayed: bool) -> None:
        broker, epoch = self._broker, self._epochs[topic]
        urgent = topic == self._urgent_topic
        while True:
            position = self._positions[topic]
            if urgent and position >= broker.end_offset(topic):
                self._urgent_read.set()  # all handed out: the main lane goes on
            elif topic == self._topic and self._urgent_unread():
                if self._urgent_read.is_set():
                    self._urgent_read = trio.Event()
                await self._urgent_read.wait()  # the urgent lane first
                continue
            if position >= broker.end_offset(topic):
                await broker.wait_for_more()
                continue
            batch = read = [
                Record(
                    topic,
                    0,
                    offset,
                    value,
                    stamp,
                    key,
                    epoch,
                    tuple(headers),
                    peek_priority(value),
                )
                for offset, (key, value, headers, stamp) in broker.read(
                    topic, position, self.batch_size
                )
            ]
            if delayed:
                now = self._clock()
                batch = _due_prefix(read, now)
                if not batch:  # nothing is due: wait for the head (new records come after it)
                    await trio.sleep((due_ms(read[0]) - now) / 1000)
                    continue
            end = batch[-1].offset + 1
            # Handed out before sending: a worker may settle a record as soon as it has it.
            self.tracker.hand_out((topic, 0), epoch, range(position, end))
            for record in batch:
                try:
                    intake.put_nowait(record)
                except trio.WouldBlock:
                    await intake.put(record)  # waits while the intake is full
                self._positions[topic] = record.offset + 1

    def release(self) -> None:
        """Nothing to give up: the embedded queue has no other consumers."""

    def rejoin(self) -> None:
        """See :meth:`release`."""

    def stop_intake(self) -> None:
        self._stop.set()

    async def aclose(self) -> None:
        self._stop.set()
        self.tracker.mark_committed(self.tracker.committable())
        await trio.lowlevel.checkpoint()

    def settle(self, records: Sequence[Record]) -> None:
        by_topic: dict[str, list[int]] = {}
        for record in records:
            by_topic.setdefault(record.topic, []).append(record.offset)
        for topic, offsets in by_topic.items():
            epoch = self._epochs.get(topic)
            if epoch is None:
                continue
            self.tracker.settle((topic, 0), epoch, offsets)
        committable = self.tracker.committable()
        self.tracker.mark_committed(committable)
        for (topic, _), committed in committable.items():
            self._broker.trim(topic, committed)

    def in_flight(self) -> int:
        return self.tracker.in_flight()

    def lag(self) -> int:
        committed = self.tracker.committed((self._topic, 0))
        if committed is None:
            committed = self._broker.start_offset(self._topic)
        return self._broker.end_offset(self._topic) - committed

    def _urgent_unread(self) -> bool:
        urgent = self._urgent_topic
        return bool(urgent) and self._positions[urgent] < self._broker.end_offset(urgent)

    def unread(self) -> dict[str, int]:
        """Records of each lane not handed out yet."""
        unread = {MAIN: self._broker.end_offset(self._topic) - self._positions[self._topic]}
        if self._urgent_topic:
            urgent = self._urgent_topic
            unread[URGENT] = self._broker.end_offset(urgent) - self._positions[urgent]
        return unread

    def waiting(self) -> int:
        """Records in the delay topics not yet committed (waiting or in flight)."""
        total = 0
        for topic in self._delay_topics:
            committed = self.tracker.committed((topic, 0))
            start = self._broker.start_offset(topic) if committed is None else committed
            total += self._broker.end_offset(topic) - start
        return total

    def health(self) -> dict[str, Any]:
        return {
            "healthy": True,
            "backend": "embedded queue",
            "topic": self._topic,
            "delayed": self.waiting(),
        }


def _due_prefix(batch: list[Record], now: int) -> list[Record]:
    """The records before the first that is not due yet (order is kept)."""
    for i, record in enumerate(batch):
        if due_ms(record) > now:
            return batch[:i]
    return batch


class MemoryLetters:
    """A :class:`~pushtrio.source.LetterSource` over a copy of the embedded queue's
    dead-letter topic."""

    def __init__(
        self,
        topic: str,
        start_offset: int,
        items: Sequence[tuple[bytes | None, bytes | None, Headers, int]],
        *,
        chunk_size: int = LETTER_CHUNK_SIZE,
    ) -> None:
        self.topic = topic
        self._letters = [
            Letter(topic, 0, start_offset + i, stamp, key, value, tuple(headers))
            for i, (key, value, headers, stamp) in enumerate(items)
        ]
        self.total = len(self._letters)
        self._chunk_size = chunk_size
        self._position = 0

    async def next_chunk(self) -> list[Letter] | None:
        await trio.lowlevel.checkpoint()
        if self._position >= len(self._letters):
            return None
        chunk = self._letters[self._position : self._position + self._chunk_size]
        self._position += len(chunk)
        return chunk
