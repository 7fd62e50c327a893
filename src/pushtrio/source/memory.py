"""The embedded queue: an in-process stand-in for a Kafka topic, for running with no servers.

:class:`MemoryBroker` keeps each topic as one append-only partition; it is both
the publisher (``POST /send``, the dead-letter topic) and what :class:`MemorySource`
reads. Offsets, commits and settling behave as with Kafka, except that nothing
survives the process.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import trio

from . import Batch, Headers, Record, batch_size_for
from .tracker import OffsetTracker


class MemoryBroker:
    """Topics as in-memory logs; all calls come from the trio thread."""

    def __init__(self) -> None:
        self._logs: dict[str, list[tuple[bytes | None, bytes, Headers, int]]] = {}
        self._changed = trio.Event()

    def log(self, topic: str) -> list[tuple[bytes | None, bytes, Headers, int]]:
        return self._logs.setdefault(topic, [])

    def append_nowait(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes, Headers]]
    ) -> None:
        stamp = int(time.time() * 1000)
        self.log(topic).extend((key, value, headers, stamp) for key, value, headers in items)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_more(self) -> None:
        await self._changed.wait()

    async def publish_many(
        self, topic: str, items: Sequence[tuple[bytes | None, bytes, Headers]]
    ) -> None:
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

    def __init__(self, broker: MemoryBroker, topic: str, *, max_queue_size: int) -> None:
        self._broker = broker
        self._topic = topic
        self.batch_size = batch_size_for(max_queue_size)
        self._max_queued = max_queue_size
        self.tracker = OffsetTracker()
        self._epoch = self.tracker.assign((topic, 0))
        self._position = 0
        self._queued = 0
        self._stop = trio.Event()
        self._room = trio.Event()

    async def serve(
        self,
        batch_send: trio.MemorySendChannel[Batch],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Feed new records of the topic into ``batch_send`` until :meth:`stop_intake`."""
        async with batch_send:
            task_status.started()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stop, nursery.cancel_scope)
                await self._run_feed(batch_send)

    async def _watch_stop(self, scope: trio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()

    async def _run_feed(self, batch_send: trio.MemorySendChannel[Batch]) -> None:
        log = self._broker.log(self._topic)
        while True:
            if self._position >= len(log):
                await self._broker.wait_for_more()
                continue
            end = min(len(log), self._position + self.batch_size)
            batch = [
                Record(self._topic, 0, offset, value, stamp, key, self._epoch)
                for offset, (key, value, _, stamp) in enumerate(
                    log[self._position : end], self._position
                )
            ]
            while self._queued and self._queued + len(batch) > self._max_queued:
                self._room = trio.Event()
                await self._room.wait()
            self.tracker.hand_out((self._topic, 0), self._epoch, range(self._position, end))
            await batch_send.send(batch)
            self._queued += len(batch)
            self._position = end

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
        self.tracker.mark_committed(self.tracker.committable())

    def taken(self, n: int) -> None:
        self._queued -= n
        self._room.set()

    def queued(self) -> int:
        return self._queued

    def in_flight(self) -> int:
        return self.tracker.in_flight()

    def lag(self) -> int:
        committed = self.tracker.committed((self._topic, 0)) or 0
        return len(self._broker.log(self._topic)) - committed

    def health(self) -> dict[str, Any]:
        return {"healthy": True, "backend": "embedded queue", "topic": self._topic}
