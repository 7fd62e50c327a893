"""Where notifications come from: Kafka (:mod:`.kafka`) or the embedded queue (:mod:`.memory`).

A source hands *batches* of :class:`~pushtrio.records.Record` to the workers through
a bounded memory channel, which alone carries the back-pressure: batches hold at most
:func:`batch_size_for` records and the channel :func:`channel_capacity_for` batches, so
at most MAX_QUEUE_SIZE records wait. The source learns, through :meth:`Source.settle`,
which records have an outcome; it commits a partition's offset only when every
earlier record of it is settled (see :mod:`.tracker`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import trio

from ..records import Batch, Record


def batch_size_for(max_queue_size: int) -> int:
    """Records per batch: a quarter of the queue (so several batches fit), 1 to 500."""
    return max(1, min(500, max_queue_size // 4))


def channel_capacity_for(max_queue_size: int) -> int:
    """Batches the channel buffers: at most ``max_queue_size`` records in all."""
    return max(1, max_queue_size // batch_size_for(max_queue_size))


class Source(Protocol):
    """A supplier of record batches with ordered, at-least-once commits."""

    mode: str
    """``"kafka"`` or ``"embedded"``."""

    async def serve(
        self,
        batch_send: trio.MemorySendChannel[Batch],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Feed batches into ``batch_send`` until :meth:`stop_intake`, then close it.

        A full channel is the only brake: the source waits (Kafka: pauses its
        partitions and keeps polling) until a worker takes a batch.

        Keeps committing settled offsets until :meth:`aclose`; returns after the
        final commit. Cancellation leaves unsettled records uncommitted.
        """
        ...

    def stop_intake(self) -> None:
        """Stop handing out records (thread-safe, idempotent)."""
        ...

    def release(self) -> None:
        """Give up the partitions to other instances until :meth:`rejoin` (thread-safe)."""
        ...

    def rejoin(self) -> None:
        """Take a share of the partitions again after :meth:`release` (thread-safe)."""
        ...

    def settle(self, records: Sequence[Record]) -> None:
        """Mark records as finished (thread-safe; stale epochs are ignored)."""
        ...

    async def aclose(self) -> None:
        """Commit what is settled and release the consumer; idempotent."""
        ...

    def in_flight(self) -> int:
        """Records handed out and not yet settled."""
        ...

    def lag(self) -> int:
        """Records on the assigned partitions not yet committed (best effort)."""
        ...

    def health(self) -> dict[str, Any]: ...
