"""Records of the delay topics that are read but not yet due, per partition.

Owned by the Kafka reader thread. A delay topic's partition is in due order (each
topic has one delay, or the times of one cause), so only its head needs watching:
while the head is not due the partition stays paused (see ``KafkaSource._set_pauses``)
and what was read behind the head waits here, a poll's worth at most.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from ...contract.delays import due_ms, now_ms
from ...contract.records import Record


class HeldRecords:
    """Delay-topic records waiting for their due time, in offset order per partition."""

    def __init__(self, topics: Iterable[str]) -> None:
        self.topics = frozenset(topics)
        self._held: dict[tuple[str, int], deque[Record]] = {}
        self._count = 0

    def add_topics(self, topics: Iterable[str]) -> None:
        """Hold the records of ``topics`` too (before the reader subscribes to them)."""
        self.topics = self.topics | frozenset(topics)

    def __len__(self) -> int:
        """Records held (read from any thread: a plain int)."""
        return self._count

    def hold(self, records: Iterable[Record]) -> list[Record]:
        """Keep the delay topics' records; return the others, in their order."""
        passed = []
        for record in records:
            if record.topic in self.topics:
                key = (record.topic, record.partition)
                self._held.setdefault(key, deque()).append(record)
                self._count += 1
            else:
                passed.append(record)
        return passed

    def release_due(self, now: int | None = None) -> list[Record]:
        """Take each partition's due records from the head on (epoch ms ``now``)."""
        now = now_ms() if now is None else now
        released = []
        for key, queue in list(self._held.items()):
            while queue and due_ms(queue[0]) <= now:
                released.append(queue.popleft())
            if not queue:
                del self._held[key]
        self._count -= len(released)
        return released

    def waiting(self, topic: str, partition: int) -> bool:
        """Whether the partition has a head record that is not due yet."""
        return (topic, partition) in self._held

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Drop what is held of ``partitions`` (re-assigned: they are read again)."""
        for key in partitions:
            queue = self._held.pop(key, None)
            if queue is not None:
                self._count -= len(queue)

    def clear(self) -> None:
        self._held.clear()
        self._count = 0
