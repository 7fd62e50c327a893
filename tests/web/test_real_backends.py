"""The admin API against the real Redis and Kafka started by scripts/services.sh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis
import trio

from ..support.kafka import read_all
from ..support.waiting import wait_until
from .conftest import notification, open_feed, receive_json, run_service

pytestmark = pytest.mark.integration


def redis_exists(addr: str, key: str) -> int:
    host, port = addr.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port), socket_timeout=5)
    try:
        return int(client.exists(key))
    finally:
        client.close()


async def test_ratelimit_status_and_reset_in_real_redis(redis_addr: str) -> None:
    with trio.fail_after(60):
        async with (
            run_service(redis_addr=redis_addr, rate_limit_per_user=3) as running,
            running.client() as client,
        ):
            for i in range(5):
                response = await client.post("/send", json=notification("erin", id=f"e{i}"))
                assert response.status_code == 202
            metrics = running.service.metrics
            await wait_until(lambda: metrics.processed == 5, what="5 outcomes")
            status = (await client.get("/ratelimit/erin")).json()
            assert status["user_id"] == "erin"
            assert (status["limit"], status["used"], status["remaining"]) == (3, 3, 0)
            assert 3590 < status["reset_in_seconds"] <= 3600
            assert await trio.to_thread.run_sync(redis_exists, redis_addr, "rate_limit:erin")

            cleared = await client.delete("/ratelimit/erin")
            assert cleared.status_code == 200
            assert cleared.json()["used"] == 0
            assert not await trio.to_thread.run_sync(redis_exists, redis_addr, "rate_limit:erin")
            snapshot = (await client.get("/metrics")).json()
    assert snapshot["delivered_messages"] == 3
    assert snapshot["rate_limited_messages"] == 2


async def test_send_writes_to_kafka_before_answering(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str]
) -> None:
    topic = await trio.to_thread.run_sync(new_topic, 3)
    dlq = await trio.to_thread.run_sync(new_topic, 1, "dlq")
    with trio.fail_after(120):
        async with (
            run_service(
                kafka_brokers=(kafka_bootstrap,),
                kafka_topic=topic,
                dlq_topic=dlq,
                consumer_group=f"group-{topic}",
                redis_addr=redis_addr,
            ) as running,
            running.client() as client,
            open_feed(running.ws, "user_id=frank") as ws,
        ):
            refused = await client.post("/send", json={"user_id": "frank"})
            assert refused.status_code == 400
            response = await client.post("/send", json=notification("frank", priority=2))
            assert response.status_code == 202
            message_id = response.json()["id"]
            # 202 means the broker has it: it can be read back at once.
            records: list[Any] = await trio.to_thread.run_sync(
                read_all, kafka_bootstrap, topic, 1, 10.0
            )
            event = await receive_json(ws, timeout_s=60)

    assert len(records) == 1  # the refused one was never written
    record = records[0]
    assert record.key == b"frank"
    value = orjson.loads(record.value)
    assert value["id"] == message_id
    assert value["user_id"] == "frank"
    assert value["priority"] == 2
    assert event["event"] == "delivered"
    assert event["id"] == message_id
    assert event["priority"] == 2
