"""Ordered offset tracking: commit a partition only up to its first unsettled record.

Records are handed out in offset order per partition and settle in any order. For
each partition the tracker keeps the offsets handed out and not yet passed by the
commit point (the low watermark); the offset to commit is the first of them that
is not settled, or one past the last handed out when all are. Settled offsets above
the watermark wait in memory.

Each assignment of a partition gets a new *epoch*. Records carry the epoch they
were read in; settling a record of an older epoch (its partition was revoked
meanwhile) is ignored, so late results never move a new owner's commits.

Thread-safe: the Kafka reader thread, rebalance callbacks on kafka-python's I/O
thread and the trio workers all call in.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class _Partition:
    epoch: int
    handed: deque[int] = field(default_factory=deque)
    settled: set[int] = field(default_factory=set)
    next_offset: int | None = None
    committed: int | None = None


class OffsetTracker:
    """Low-watermark commit points per partition, safe to share across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._epochs: dict[TopicPartition, int] = {}

    def assign(self, tp: TopicPartition) -> int:
        """Start a new epoch for ``tp`` (forgetting any previous state); return it."""
        with self._lock:
            epoch = self._epochs.get(tp, 0) + 1
            self._epochs[tp] = epoch
            self._partitions[tp] = _Partition(epoch)
            return epoch

    def epoch(self, tp: TopicPartition) -> int | None:
        """The current epoch of ``tp``, or None when it is not assigned."""
        with self._lock:
            state = self._partitions.get(tp)
            return None if state is None else state.epoch

    def is_current(self, tp: TopicPartition, epoch: int) -> bool:
        with self._lock:
            state = self._partitions.get(tp)
            return state is not None and state.epoch == epoch

    def hand_out(self, tp: TopicPartition, epoch: int, offsets: Iterable[int]) -> bool:
        """Record offsets (ascending) as handed to the workers; False if the epoch is stale."""
        with self._lock:
            state = self._partitions.get(tp)
            if state is None or state.epoch != epoch:
                return False
            for offset in offsets:
                state.handed.append(offset)
                state.next_offset = offset + 1
            return True

    def settle(self, tp: TopicPartition, epoch: int, offsets: Iterable[int]) -> None:
        """Mark offsets as finished; ignored when ``epoch`` is not the current one."""
        with self._lock:
            state = self._partitions.get(tp)
            if state is None or state.epoch != epoch:
                return
            handed, settled = state.handed, state.settled
            if not handed:
                return
            # Only offsets still waiting count: one settled twice, or never handed
            # out, must not linger in ``settled`` and skew ``in_flight``.
            low, high = handed[0], handed[-1]
            settled.update(o for o in offsets if low <= o <= high)
            while handed and handed[0] in settled:
                settled.discard(handed.popleft())

    def _commit_point(self, state: _Partition) -> int | None:
        if state.handed:
            return state.handed[0]
        return state.next_offset

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition, the next offset to commit, where it moved since the last commit."""
        with self._lock:
            ready = {}
            for tp, state in self._partitions.items():
                point = self._commit_point(state)
                if point is not None and point != state.committed:
                    ready[tp] = point
            return ready

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        with self._lock:
            for tp, offset in offsets.items():
                state = self._partitions.get(tp)
                if state is not None:
                    state.committed = offset

    def committed(self, tp: TopicPartition) -> int | None:
        with self._lock:
            state = self._partitions.get(tp)
            return None if state is None else state.committed

    def revoke(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Forget ``tps``; return their commit points that were not yet committed."""
        with self._lock:
            final = {}
            for tp in tps:
                state = self._partitions.pop(tp, None)
                if state is None:
                    continue
                point = self._commit_point(state)
                if point is not None and point != state.committed:
                    final[tp] = point
            return final

    def assigned(self) -> list[TopicPartition]:
        with self._lock:
            return list(self._partitions)

    def in_flight(self) -> int:
        """Records handed out and not yet passed by a commit point."""
        with self._lock:
            return sum(len(s.handed) - len(s.settled) for s in self._partitions.values())
