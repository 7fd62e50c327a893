"""Kafka plumbing of the harness: topics, bulk and paced producing, committed offsets.

All of it is blocking kafka-python, run from the harness's main thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from tests.support.kafka import kafka_producer

PARTITIONS = 6
CALL_TIMEOUT_MS = 30_000
PROGRESS_EVERY = 2_000

Record = tuple[bytes, bytes]
"""``(key, value)`` of one Kafka record."""

ProgressCallback = Callable[[int], None]

# kafka-python reports retried connections at WARNING; the harness reports failures itself.
logging.getLogger("kafka").setLevel(logging.ERROR)


class Kafka:
    """An admin connection to the broker: topics and committed offsets."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="pushtrio-bench",
            request_timeout_ms=CALL_TIMEOUT_MS,
        )
        self.created: list[str] = []

    def create_topics(self, *names: str, partitions: int = PARTITIONS) -> None:
        self._admin.create_topics(
            {name: {"num_partitions": partitions, "replication_factor": 1} for name in names},
            wait_for_metadata=True,
        )
        self.created.extend(names)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offset per partition of ``topic`` (partitions without
        one are absent; the group also reads the topic's delay topics)."""
        offsets = self._admin.list_group_offsets({group: None})[group]
        return {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if meta.offset >= 0 and tp.topic == topic
        }

    def delete_created_topics(self) -> None:
        """Delete every topic this harness created, and the delay topics the service
        created next to them (best effort: the broker may be gone)."""
        if self.created:
            try:
                prefixes = tuple(f"{name}." for name in self.created)
                delays = [t for t in self._admin.list_topics() if t.startswith(prefixes)]
                self._admin.delete_topics(sorted(set(self.created + delays)))
            except Exception as exc:
                logging.getLogger(__name__).warning("could not delete bench topics: %s", exc)
            self.created.clear()

    def close(self) -> None:
        self._admin.close()


def bulk_producer(bootstrap: str) -> KafkaProducer:
    """A producer tuned for writing many records fast (large batches, some linger)."""
    return kafka_producer(
        bootstrap, client_id="pushtrio-bench-bulk", linger_ms=20, batch_size=512 * 1024
    )


def produce_bulk(
    bootstrap: str, topic: str, records: Sequence[Record], on_progress: ProgressCallback
) -> float:
    """Write ``records`` to ``topic`` and wait for every acknowledgement; return seconds."""
    producer = bulk_producer(bootstrap)
    started = time.perf_counter()
    try:
        for i, (key, value) in enumerate(records, 1):
            producer.send(topic, key=key, value=value)
            if i % PROGRESS_EVERY == 0:
                on_progress(i)
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)
    on_progress(len(records))
    return time.perf_counter() - started


@dataclass(slots=True)
class PacedRun:
    """What a paced producer did: ids sent with their Kafka CreateTime (ms)."""

    target_rate: float
    create_ms: dict[str, int] = field(default_factory=dict)
    first_send: float = 0.0
    last_send: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.create_ms)

    @property
    def achieved_rate(self) -> float:
        """Sends per second between the first and the last send."""
        span = self.last_send - self.first_send
        return (self.sent - 1) / span if self.sent > 1 and span > 0 else 0.0


def record_ids(records: Sequence[Record]) -> list[str]:
    """The ``id`` field of each (valid JSON) record, decoded before any timing starts."""
    return [str(orjson.loads(value)["id"]) for _, value in records]


def produce_paced(
    producer: KafkaProducer,
    topic: str,
    records: Sequence[Record],
    target_rate: float,
    on_progress: ProgressCallback,
) -> PacedRun:
    """Send ``records`` at a steady ``target_rate`` per second, then flush.

    Each record gets an explicit CreateTime (wall-clock ms at the moment of
    ``send``) which is remembered by id: it is exactly the timestamp Kafka stores.
    The pace is kept against a schedule (record i is due at start + i / rate), so a
    late wake-up is caught up at once instead of lowering the rate.
    """
    ids = record_ids(records)
    run = PacedRun(target_rate=target_rate)
    started = time.perf_counter()
    run.first_send = started
    for i, (key, value) in enumerate(records):
        delay = started + i / target_rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # pacing an offered load: the schedule is the point
        create_ms = int(time.time() * 1000)
        producer.send(topic, key=key, value=value, timestamp_ms=create_ms)
        run.create_ms[ids[i]] = create_ms
        run.last_send = time.perf_counter()
        if i % 500 == 0:
            on_progress(i)
    producer.flush(timeout=60)
    on_progress(len(records))
    return run


def paced_producer(bootstrap: str, linger_ms: int) -> KafkaProducer:
    """A producer for latency runs.

    ``linger_ms`` trades a little latency (counted: the CreateTime is taken at
    ``send``) for much less CPU: kafka-python's sender thread costs most of a core
    when it sends every record on its own, and it shares the cores with the service.
    """
    return kafka_producer(bootstrap, client_id="pushtrio-bench-paced", linger_ms=linger_ms)
