"""The pipeline in-process against the real Kafka broker and Redis server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import orjson
import pytest
import trio

from pushtrio.config import Settings
from pushtrio.contract.outcome import OutcomeKind
from pushtrio.service import Service

from ..fast import fast_settings
from ..support.kafka import kafka_producer, notification, produce, read_all, wait_committed

pytestmark = pytest.mark.integration


def kafka_settings(kafka: str, redis: str, topic: str, **changes: object) -> Settings:
    base = fast_settings(
        kafka_brokers=(kafka,),
        kafka_topic=topic,
        consumer_group=f"group-{topic}",
        redis_addr=redis,
        dlq_topic=f"{topic}.dlq",
        provider_seed=7,
        shutdown_timeout_s=10.0,
    )
    return base.replace(**changes)


async def run_until(service: Service, processed: int, timeout_s: float = 90.0) -> None:
    """Run ``service`` until it has ``processed`` outcomes, then stop it gracefully."""
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(service.serve, stop)
        with trio.fail_after(timeout_s), service.hub.subscribe(capacity=100_000) as feed:
            # Counted before published: each event wakes us after the count moved.
            while service.metrics.processed < processed:
                await feed.receive()
        stop.set()


async def test_limit_is_exact_and_offsets_reach_the_end(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str]
) -> None:
    topic = await trio.to_thread.run_sync(new_topic, 3)
    records = [notification(f"m-{i}", f"user-{i % 200}") for i in range(2000)]
    await trio.to_thread.run_sync(produce, kafka_bootstrap, topic, records)
    settings = kafka_settings(
        kafka_bootstrap, redis_addr, topic, rate_limit_per_user=5, rate_limit_window_s=3600.0
    )
    service = Service(settings)

    await run_until(service, 2000)

    metrics = service.metrics
    assert metrics.count(OutcomeKind.DELIVERED) == 1000
    assert metrics.count(OutcomeKind.RATE_LIMITED) == 1000
    assert metrics.processed == 2000
    await trio.to_thread.run_sync(
        wait_committed, kafka_bootstrap, settings.consumer_group, topic, 30.0
    )


async def test_bad_input_gets_outcomes_and_dead_letters(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str]
) -> None:
    topic = await trio.to_thread.run_sync(new_topic, 2)
    dlq = await trio.to_thread.run_sync(new_topic, 1, "dlq")
    records = [
        (b"k", b"not json at all"),
        (b"k", b"[1, 2]"),
        (b"k", b'{"title": "no user"}'),
        notification("bad-priority", "u-1", priority="high"),
        notification("old", "u-2", expires_at="2020-01-01T00:00:00Z"),
        notification("twice", "u-3", provider="fcm"),
        notification("twice", "u-3", provider="fcm"),
        notification("doomed", "u-4", provider="apns"),
        notification("fine", "u-5", provider="fcm"),
    ]
    await trio.to_thread.run_sync(produce, kafka_bootstrap, topic, records)
    rates = (("fcm", 1.0), ("apns", 0.0), ("firebase", 1.0))
    settings = kafka_settings(
        kafka_bootstrap, redis_addr, topic, dlq_topic=dlq, provider_success_rates=rates
    )
    service = Service(settings)

    await run_until(service, len(records))

    m = service.metrics
    assert m.count(OutcomeKind.INVALID) == 4
    assert m.count(OutcomeKind.EXPIRED) == 1
    assert m.count(OutcomeKind.DUPLICATE) == 1
    assert m.count(OutcomeKind.FAILED) == 1
    assert m.count(OutcomeKind.DELIVERED) == 2  # "twice" once, and "fine"
    letters = await trio.to_thread.run_sync(read_all, kafka_bootstrap, dlq, 5)
    assert len(letters) == 5
    headers = [dict(r.headers) for r in letters]
    assert Counter(h["pushtrio-outcome"] for h in headers) == {b"invalid": 4, b"failed": 1}
    failed = next(h for h in headers if h["pushtrio-outcome"] == b"failed")
    assert failed["pushtrio-id"] == b"doomed"
    # Retried while the errors are transient; a permanent one ends it early.
    assert 1 <= int(failed["pushtrio-attempts"]) <= settings.retry_attempts + 1
    assert failed["pushtrio-reason"]
    # The record dead-lettered: the topic's, or a retry tier's; its origin is the topic's.
    source = orjson.loads(failed["pushtrio-source"])
    assert source[0] == topic or source[0].startswith(f"{topic}.retry.")
    assert orjson.loads(failed["pushtrio-origin"])[0] == topic
    assert {r.value for r in letters} >= {b"not json at all", b"[1, 2]"}
    await trio.to_thread.run_sync(
        wait_committed, kafka_bootstrap, settings.consumer_group, topic, 30.0
    )


def _produce_with_headers(bootstrap: str, topic: str) -> None:
    producer = kafka_producer(bootstrap)
    headers = [("trace-id", b"t-1"), ("origin", b"")]
    producer.send(topic, key=b"k-bad", value=b'{"id": "own-7", "user_id": ""}', headers=headers)
    producer.send(topic, key=b"k-null", value=None, headers=[("trace-id", b"t-2")])
    producer.flush(30)
    producer.close(10)


async def test_dead_letters_are_replayable_key_value_and_headers(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str]
) -> None:
    topic = await trio.to_thread.run_sync(new_topic, 1)
    dlq = await trio.to_thread.run_sync(new_topic, 1, "dlq")
    await trio.to_thread.run_sync(_produce_with_headers, kafka_bootstrap, topic)
    service = Service(kafka_settings(kafka_bootstrap, redis_addr, topic, dlq_topic=dlq))

    await run_until(service, 2)

    letters = await trio.to_thread.run_sync(read_all, kafka_bootstrap, dlq, 2)
    by_key = {letter.key: letter for letter in letters}
    bad, tombstone = by_key[b"k-bad"], by_key[b"k-null"]
    assert bad.value == b'{"id": "own-7", "user_id": ""}'
    assert bad.headers[:2] == [("trace-id", b"t-1"), ("origin", b"")]
    assert dict(bad.headers)["pushtrio-id"] == b"own-7"
    assert tombstone.value is None
    assert tombstone.headers[0] == ("trace-id", b"t-2")
    assert dict(tombstone.headers)["pushtrio-id"].startswith(b"k-")
    assert service.metrics.snapshot()["invalid_messages"] == 2
