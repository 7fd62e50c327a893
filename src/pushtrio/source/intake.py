"""The intake: records read and not yet taken by a worker, highest priority first.

It replaces a FIFO memory channel between the source and the workers, with the same
bound (MAX_QUEUE_SIZE records) and the same role: a full intake is the only brake
on the source. Workers take a batch at a time (:meth:`Intake.take`); a batch is
the highest priorities first, in arrival order within a priority, except for its
**fair share**: the first quarter of a batch goes to the records that have waited
longest, whatever their priority. So under a steady flood of priority 3 the lower
priorities still progress (at least a quarter of the workers' capacity once the
intake holds more than a batch), and a record is never passed over for ever.

Priority changes the order of delivery only: the source commits each partition's
offsets in order, whatever order its records are settled in.
"""

from __future__ import annotations

import itertools
from collections import deque

import trio

from ..contract.lanes import DEFAULT_PRIORITY, PRIORITIES
from ..contract.records import Record

FAIR_SHARE = 0.25
"""The share of a batch taken in arrival order (the records waiting longest)."""


class Intake:
    """A bounded, priority-ordered queue with trio waits on both ends.

    Single trio thread: sources put (``put_nowait``, or ``put`` that waits while
    full), workers ``take``; :meth:`close` ends it once drained.
    """

    def __init__(self, capacity: int, *, fair_share: float = FAIR_SHARE) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._fair_share = fair_share
        self._queues: list[deque[tuple[int, Record]]] = [deque() for _ in range(PRIORITIES)]
        self._arrivals = itertools.count()
        self._count = 0
        self._closed = False
        self._takers = trio.lowlevel.ParkingLot()
        self._putters = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return self._count

    @property
    def closed(self) -> bool:
        return self._closed

    def queued(self) -> list[int]:
        """Records waiting, by priority (index 0 to 3)."""
        return [len(queue) for queue in self._queues]

    def put_nowait(self, record: Record) -> None:
        """Queue ``record``; trio.WouldBlock when full, trio.ClosedResourceError when closed."""
        if self._closed:
            raise trio.ClosedResourceError("the intake is closed")
        if self._count >= self.capacity:
            raise trio.WouldBlock
        priority = record.priority
        if not 0 <= priority < PRIORITIES:
            priority = DEFAULT_PRIORITY
        self._queues[priority].append((next(self._arrivals), record))
        self._count += 1
        if self._count == 1:
            self._takers.unpark()  # one taker takes all there is; it wakes the next

    async def put(self, record: Record) -> None:
        """Queue ``record``, waiting while the intake is full."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.put_nowait(record)
            except trio.WouldBlock:
                await self._putters.park()
            else:
                return

    def close(self) -> None:
        """No more records: takers drain what is queued, then get empty batches."""
        self._closed = True
        self._takers.unpark_all()
        self._putters.unpark_all()

    async def take(self, most: int) -> list[Record]:
        """Wait for a record, then take up to ``most``; empty once closed and drained."""
        while not self._count:
            if self._closed:
                await trio.lowlevel.checkpoint()
                return []
            await self._takers.park()
        batch = self._take_now(most)
        if self._count:
            self._takers.unpark()
        self._putters.unpark(count=len(batch))
        return batch

    def _take_now(self, most: int) -> list[Record]:
        queues = self._queues
        if self._count <= most:
            batch = [record for queue in reversed(queues) for _, record in queue]
            for queue in queues:
                queue.clear()
            self._count = 0
            return batch
        batch = []
        for _ in range(int(most * self._fair_share)):
            oldest = min((q for q in queues if q), key=lambda q: q[0][0])
            batch.append(oldest.popleft()[1])
        for queue in reversed(queues):
            while queue and len(batch) < most:
                batch.append(queue.popleft()[1])
        self._count -= len(batch)
        return batch
