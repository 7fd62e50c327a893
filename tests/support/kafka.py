"""Blocking Kafka helpers (kafka-python): produce, read back, compare offsets.

Call them through ``trio.to_thread.run_sync`` from async tests. Every producer of
the tests and benchmarks comes from :func:`kafka_producer`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

PRODUCER_DEFAULTS: dict[str, Any] = {"client_id": "pushtrio-tests", "max_block_ms": 30_000}
"""kafka-python's defaults otherwise (idempotent, acks=all); a send blocks 30 s at most."""


_DELAY_TOPIC = re.compile(r"\.(retry\.\d+|park|defer)$")


def kafka_producer(bootstrap: str, **options: Any) -> KafkaProducer:
    """A producer on ``bootstrap``: :data:`PRODUCER_DEFAULTS`, then ``options``."""
    return KafkaProducer(bootstrap_servers=bootstrap, **{**PRODUCER_DEFAULTS, **options})


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    **options: Any,
) -> int:
    """Write ``(key, value)`` records and wait for every acknowledgement; return the count.

    ``options`` go to :func:`kafka_producer` (``compression_type="lz4"``, ...).
    """
    producer = kafka_producer(bootstrap, **{"linger_ms": 5, "batch_size": 256 * 1024, **options})
    n = 0
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return n


def produce_to_partitions(
    bootstrap: str, topic: str, records: Sequence[tuple[int, bytes, bytes]], **options: Any
) -> None:
    """Write ``(partition, key, value)`` records, each to the partition it names."""
    producer = kafka_producer(bootstrap, **{"linger_ms": 5, **options})
    try:
        for partition, key, value in records:
            producer.send(topic, key=key, value=value, partition=partition)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def notification(message_id: str, user_id: str, **extra: object) -> tuple[bytes, bytes]:
    """A ``(key, value)`` record of one valid notification, keyed by its user."""
    document = {"id": message_id, "user_id": user_id, "title": "hello", "body": "world", **extra}
    return user_id.encode(), orjson.dumps(document)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="pushtrio-tests-offsets")
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def is_delay_topic(topic: str) -> bool:
    """Whether ``topic`` is one of pushtrio's retry tiers, park or defer topics."""
    return bool(_DELAY_TOPIC.search(topic))


def delete_topics(bootstrap: str, topics: Sequence[str]) -> None:
    """Delete ``topics`` and the topics a service made next to them (``<topic>.*``:
    delay topics, dead-letter topics)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        prefixes = tuple(f"{topic}." for topic in topics)
        beside = [t for t in admin.list_topics() if t.startswith(prefixes)]
        admin.delete_topics(sorted(set(topics) | set(beside)))
    finally:
        admin.close()


def records_in(bootstrap: str, topic: str) -> int:
    """Records ``topic`` holds (the sum of its end offsets); 0 when it does not exist."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="pushtrio-tests-offsets")
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return 0
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return int(sum(ends.values()))
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str | None = None) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (partitions without one
    are absent); without ``topic``, of the group's topic that is not a delay topic."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets({group: None})[group]
    finally:
        admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if meta.offset >= 0 and (tp.topic == topic if topic else not is_delay_topic(tp.topic))
    }


def committed_when_loaded(
    bootstrap: str, group: str, timeout_s: float = 30, topic: str | None = None
) -> dict[int, int]:
    """The group's committed offsets, once the coordinator has loaded them.

    Just after a broker (re)starts, the coordinator answers CoordinatorLoadInProgress
    for a while: such retriable errors are waited out, up to ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return committed_offsets(bootstrap, group, topic)
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def group_members(bootstrap: str, group: str) -> tuple[str, dict[str, list[int]]]:
    """The group's state and, for each member id, the partitions assigned to it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        description = admin.describe_groups([group])[group]
    finally:
        admin.close()
    members = {
        member["member_id"]: sorted(
            p
            for topic in (member["member_assignment"] or {}).get("assigned_partitions", [])
            for p in topic["partitions"]
        )
        for member in description["members"]
    }
    return description["group_state"], members


def wait_committed(bootstrap: str, group: str, topic: str, timeout_s: float) -> dict[int, int]:
    """Poll until the group's committed offsets equal the end offsets; return them."""
    deadline = time.monotonic() + timeout_s
    ends = end_offsets(bootstrap, topic)
    committed: dict[int, int] = {}
    while time.monotonic() < deadline:
        committed = committed_when_loaded(
            bootstrap, group, max(0.0, deadline - time.monotonic()), topic
        )
        if committed == ends:
            return committed
        time.sleep(0.2)
    raise AssertionError(f"committed {committed} never reached end offsets {ends}")


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    """Read ``expected`` records of ``topic`` from the beginning (fails if fewer arrive)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # One more short poll: more than expected would be a bug too.
        for batch in consumer.poll(timeout_ms=500).values():
            records.extend(batch)
    finally:
        consumer.close()
    return records
