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
from collections.abc import Sequence
from typing import Any

import trio

from ..records import Headers, Message, Record
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

    async def publish_many(self, topic: str, items: Sequence[Message]) -> None:
        """Append items; never fails (the embedded queue is unbounded memory)."""
        self.append_nowait(topic, items)
        await trio.lowlevel.checkpoint()

    async def check(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class MemorySource:
    """Reads one topic of a :class:`MemoryBroker` in batches, with ordered commits."""

    mode = "embedded"

    def __init__(self, broker: MemoryBroker, topic: str, *, batch_size: int) -> None:
        self._broker = broker
        self._topic = topic
        self.batch_size = batch_size
        self.tracker = OffsetTracker()
        self._epoch = self.tracker.assign((topic, 0))
        broker.reading(topic)
        self._position = broker.start_offset(topic)
        self._stop = trio.Event()

    async def serve(
        self,
        record_send: trio.MemorySendChannel[Record],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Feed new records of the topic into ``record_send`` until :meth:`stop_intake`."""
        async with record_send:
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stop, nursery.cancel_scope)
                await self._run_feed(record_send)

    async def _watch_stop(self, scope: trio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()

    async def _run_feed(self, record_send: trio.MemorySendChannel[Record]) -> None:
        broker, topic = self._broker, self._topic
        while True:
            if self._position >= broker.end_offset(topic):
                await broker.wait_for_more()
                continue
            batch = [
                Record(topic, 0, offset, value, stamp, key, self._epoch, tuple(headers))
                for offset, (key, value, headers, stamp) in broker.read(
                    topic, self._position, self.batch_size
                )
            ]
            end = batch[-1].offset + 1
            # Handed out before sending: a worker may settle a record as soon as it has it.
            self.tracker.hand_out((topic, 0), self._epoch, range(self._position, end))
            for record in batch:
                try:
                    record_send.send_nowait(record)
                except trio.WouldBlock:
                    await record_send.send(record)  # waits while the channel is full
                self._position = record.offset + 1

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
        self.tracker.settle((self._topic, 0), self._epoch, [r.offset for r in records])
        committable = self.tracker.committable()
        self.tracker.mark_committed(committable)
        committed = committable.get((self._topic, 0))
        if committed is not None:
            self._broker.trim(self._topic, committed)

    def in_flight(self) -> int:
        return self.tracker.in_flight()

    def lag(self) -> int:
        committed = self.tracker.committed((self._topic, 0))
        if committed is None:
            committed = self._broker.start_offset(self._topic)
        return self._broker.end_offset(self._topic) - committed

    def health(self) -> dict[str, Any]:
        return {"healthy": True, "backend": "embedded queue", "topic": self._topic}
