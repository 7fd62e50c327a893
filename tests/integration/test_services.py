"""Smoke tests for the real Redis and Kafka that scripts/services.sh starts.

If these fail, every other integration test will too: look here first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
import trio

from ..support.kafka import kafka_producer

pytestmark = pytest.mark.integration


async def test_redis_ping_set_get(redis_addr: str) -> None:
    import redis

    host, port = redis_addr.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), socket_timeout=5)
    try:
        key = f"pushtrio-smoke-{uuid.uuid4().hex}"

        def roundtrip() -> tuple[bool, bool, object, int]:
            pong = client.ping()
            stored = client.set(key, "hello", ex=60)
            value = client.get(key)
            ttl = client.ttl(key)
            return bool(pong), bool(stored), value, int(ttl)

        # The service calls redis-py from worker threads; do the same here.
        pong, stored, value, ttl = await trio.to_thread.run_sync(roundtrip)
    finally:
        client.close()

    assert pong
    assert stored
    assert value == b"hello"
    assert 0 < ttl <= 60


def test_kafka_produce_consume_commit(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    from kafka import KafkaConsumer, TopicPartition

    topic = new_topic(partitions=2, prefix="smoke")
    sent = [f"message-{i}".encode() for i in range(10)]

    producer = kafka_producer(kafka_bootstrap, client_id="pushtrio-smoke")
    try:
        # kafka-python 3.0 defaults: idempotent, acks=all.
        futures = [
            producer.send(topic, key=f"user-{i % 4}".encode(), value=value)
            for i, value in enumerate(sent)
        ]
        producer.flush(timeout=30)
        metadata = [future.get(timeout=30) for future in futures]
    finally:
        producer.close(timeout=10)
    assert all(m.topic == topic for m in metadata)
    assert {m.partition for m in metadata} <= {0, 1}

    partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        client_id="pushtrio-smoke",
        group_id=f"smoke-{uuid.uuid4().hex[:12]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        received: list[bytes] = []
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(record.value for record in records)
        assert sorted(received) == sorted(sent)
        assert set(consumer.assignment()) == set(partitions)

        consumer.commit()
        end = consumer.end_offsets(partitions)
        committed = {tp: consumer.committed(tp) for tp in partitions}
    finally:
        consumer.close()

    assert sum(end.values()) == len(sent)
    assert committed == end
