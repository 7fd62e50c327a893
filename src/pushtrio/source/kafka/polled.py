"""kafka-python's records as pushtrio's, and records back to offsets per partition."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...contract.lanes import peek_priority
from ...contract.records import Record


def to_records(
    polled: dict[Any, list[Any]],
    skip: set[tuple[str, int]],
    epoch_of: Callable[[tuple[str, int]], int | None],
) -> list[Record]:
    """One poll's records, all partitions together; each partition's in offset order.

    Partitions in ``skip``, and those without an epoch (not assigned), are left out.
    """
    converted: list[Record] = []
    for tp, records in polled.items():
        if (tp.topic, tp.partition) in skip or not records:
            continue
        epoch = epoch_of((tp.topic, tp.partition))
        if epoch is None:
            continue
        converted.extend(
            Record(
                r.topic,
                r.partition,
                r.offset,
                r.value,
                r.timestamp,
                r.key,
                epoch,
                tuple(r.headers) if r.headers else (),
                peek_priority(r.value),
            )
            for r in records
        )
    return converted


def offsets_by_partition(records: Sequence[Record]) -> dict[tuple[str, int, int], list[int]]:
    """Offsets grouped by (topic, partition, epoch), each group in the records' order."""
    groups: dict[tuple[str, int, int], list[int]] = {}
    for record in records:
        groups.setdefault((record.topic, record.partition, record.epoch), []).append(record.offset)
    return groups
