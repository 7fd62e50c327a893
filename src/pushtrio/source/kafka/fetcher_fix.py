"""A work-around for kafka-python 3.0.12: resumed partitions whose data was parked.

When a partition is paused, kafka-python (KAFKA-7548) parks the records it had
fetched for it (``_paused_partition_records``) and stops fetching it until they are
restored, which ``fetched_records`` does only while ``_next_partition_records`` is
None. But a fully consumed ``PartitionRecords`` is left in that slot, empty and
falsy, not None; with no new data for another partition the slot is never cleared,
so a resumed partition's parked records are never restored and the partition is
never fetched again. pushtrio pauses and resumes delay-topic partitions all the
time (a head not yet due), which hit this: 111 deferred notifications of 4,000 sat
in a partition nobody read. :func:`release_parked` empties the slot when it holds
nothing, which is what the restore expects.
"""

from __future__ import annotations

from typing import Any


def release_parked(consumer: Any) -> bool:
    """Clear the fetcher's in-line slot if it holds an exhausted batch; True if cleared.

    Only the reader thread may call it (it owns the consumer). Harmless when the
    fetcher's layout differs (another kafka-python version): then it does nothing.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    current = getattr(fetcher, "_next_partition_records", None)
    if fetcher is None or current is None or current:
        return False
    if not getattr(fetcher, "_paused_partition_records", None):
        return False
    fetcher._next_partition_records = None
    return True
