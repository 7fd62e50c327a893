"""Phase 1, the ceiling: a bare kafka-python consumer reading and decoding N records.

No other work: poll, ``orjson.loads`` each value, count. This is as fast as any
Python service built on kafka-python can read the same topic on this machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from kafka import KafkaConsumer

from .kafka_io import ProgressCallback
from .stats import rate

POLL_TIMEOUT_MS = 200


@dataclass(frozen=True, slots=True)
class CeilingResult:
    """Messages per second of the bare consumer, with and without its start-up."""

    messages: int
    total_s: float
    """From creating the consumer (connect, join the group) to the last record decoded."""
    read_s: float
    """From the first record polled to the last record decoded."""
    rate_total: float
    rate_read: float
    max_poll_records: int


def measure_ceiling(
    bootstrap: str,
    topic: str,
    group: str,
    expected: int,
    on_progress: ProgressCallback,
    timeout_s: float = 300.0,
    max_poll_records: int = 500,
) -> CeilingResult:
    """Read ``expected`` records of ``topic`` as consumer group ``group``.

    Raises TimeoutError when fewer than ``expected`` arrive within ``timeout_s``.
    """
    started = time.perf_counter()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="pushtrio-bench-ceiling",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
    )
    read = 0
    first = 0.0
    try:
        deadline = started + timeout_s
        while read < expected:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"ceiling: read {read} of {expected} in {timeout_s:.0f}s")
            for records in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                if not first:
                    first = time.perf_counter()
                for record in records:
                    orjson.loads(record.value)
                read += len(records)
            on_progress(read)
        finished = time.perf_counter()
    finally:
        consumer.close(autocommit=False)
    return CeilingResult(
        messages=read,
        total_s=finished - started,
        read_s=finished - first,
        rate_total=rate(read, finished - started),
        rate_read=rate(read, finished - first),
        max_poll_records=max_poll_records,
    )
