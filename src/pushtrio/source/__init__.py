"""Where notifications come from: Kafka (:mod:`.kafka`) or the embedded queue (:mod:`.memory`).

A source hands :class:`~pushtrio.contract.records.Record` objects to the workers through
the :class:`~.intake.Intake` (MAX_QUEUE_SIZE records, highest priority taken first),
which alone carries the back-pressure: a full intake holds the source back. Workers
take up to :func:`batch_size_for` records at once. The source learns, through
:meth:`Source.settle`, which records have an outcome; it commits a partition's
offset only when every earlier record of it is settled (see :mod:`.tracker`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import trio

from ..contract.dead_letter import Letter
from ..contract.records import Record
from .intake import Intake


def batch_size_for(max_queue_size: int) -> int:
    """Records a worker takes at once, and a source reads at once: a quarter of the
    queue (so several batches fit), 1 to 500."""
    return max(1, min(500, max_queue_size // 4))


class Source(Protocol):
    """A supplier of records with ordered, at-least-once commits."""

    mode: str
    """``"kafka"`` or ``"embedded"``."""

    async def serve(
        self,
        intake: Intake,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Feed records into ``intake`` until :meth:`stop_intake`, then close it.

        A full intake is the only brake: the source waits (Kafka: pauses its
        partitions and keeps polling) until the workers take records.

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

    def unread(self) -> dict[str, int]:
        """Records of each lane (``main``, ``urgent``) on this instance's partitions not
        handed out yet, as far as the source knows."""
        ...

    def health(self) -> dict[str, Any]: ...


LETTER_CHUNK_SIZE = 500
"""Letters a letter source reads, and a replay writes back, at once."""


class LetterSource(Protocol):
    """Letters of one dead-letter topic, read once from its start to a fixed end."""

    topic: str
    total: int
    """Letters between the start (``since`` taken into account) and the end: at most
    this many are read (fewer when some were deleted meanwhile)."""

    async def next_chunk(self) -> list[Letter] | None:
        """The next letters, oldest first per partition; None once all are read.

        Raises BrokerUnavailable when the broker stops answering.
        """
        ...
