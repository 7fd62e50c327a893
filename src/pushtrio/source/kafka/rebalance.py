"""Rebalances: kafka-python's listener, and the assignments it passes to the reader.

kafka-python 3.0 runs the listener on its I/O thread while the reader thread waits
in ``poll``. On revoke (or loss) it commits what is settled with ``commit_async``
(not on loss: another member may own the partition already) and drops the
partition's state, so late results of its in-flight records are ignored (their
new owner re-reads them; dedup stops double delivery). On assign it only queues the
partitions: the reader thread, the only other caller of the consumer, starts their
new epochs and seeks each to its committed offset (:meth:`Assignments.apply`),
because with eager assignors a re-assigned partition keeps its old fetch position.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ..tracker import OffsetTracker
from .clients import CALL_TIMEOUT_MS

log = logging.getLogger("pushtrio.source.kafka.reader")


class Assignments:
    """Assigned partitions not yet applied by the reader thread."""

    def __init__(self, tracker: OffsetTracker) -> None:
        self._queue: queue.SimpleQueue[list[TopicPartition]] = queue.SimpleQueue()
        self._tracker = tracker

    def add(self, partitions: list[TopicPartition]) -> None:
        """Queue newly assigned ``partitions`` (any thread)."""
        self._queue.put(list(partitions))

    def apply(self, consumer: Any) -> list[TopicPartition]:
        """In the reader thread: start a new epoch for each partition queued since the
        last call and seek it to its committed offset; return them all."""
        applied: list[TopicPartition] = []
        while True:
            try:
                assigned = self._queue.get_nowait()
            except queue.Empty:
                return applied
            for tp in assigned:
                self._tracker.assign((tp.topic, tp.partition))
                _seek_to_committed(consumer, tp)
            log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))
            applied += assigned


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """The reader's rebalance callbacks, run on kafka-python's I/O thread."""

    def __init__(
        self,
        tracker: OffsetTracker,
        assignments: Assignments,
        *,
        changed: Callable[[], None],
        consumer: Callable[[], Any],
    ) -> None:
        self._tracker = tracker
        self._assignments = assignments
        self._changed = changed
        """Told of every assignment change (see Membership.assignment_changed)."""
        self._consumer = consumer
        """The reader's consumer (opened after the listener is made)."""

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self._changed()
        self._revoke(revoked, commit=True)

    def on_partitions_lost(self, lost: list[TopicPartition]) -> None:
        self._changed()
        self._revoke(lost, commit=False)

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self._changed()
        self._assignments.add(assigned)

    def _revoke(self, partitions: list[TopicPartition], *, commit: bool) -> None:
        final = self._tracker.revoke((tp.topic, tp.partition) for tp in partitions)
        log.info("partitions revoked: %s", sorted(tp.partition for tp in partitions))
        if commit and final:
            offsets = {
                TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in final.items()
            }
            try:
                self._consumer().commit_async(offsets)
            except KafkaError as exc:
                log.warning("commit on revoke failed (records will be re-read): %s", exc)


def _seek_to_committed(consumer: Any, tp: TopicPartition) -> None:
    try:
        committed = consumer.committed(tp, timeout_ms=CALL_TIMEOUT_MS)
    except KafkaError as exc:
        # Without it the consumer resumes from its own fetch position, which is the
        # committed offset for a partition new to it.
        log.warning("no committed offset for %s (not seeking): %s", tp, exc)
        return
    if committed is None:
        consumer.seek_to_beginning(tp)
    else:
        consumer.seek(tp, committed)
