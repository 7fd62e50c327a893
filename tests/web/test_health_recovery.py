"""``/health`` follows a real Redis going away and coming back, and no message is lost.

Each test runs its own private ``redis-server`` on a free port (stopping the shared
test Redis would break other tests). The queue is the embedded one, or the real
Kafka broker when the integration services are up.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed

from ..integration.private_services import PrivateRedis
from ..support.requirements import unavailable
from ..support.waiting import wait_until
from .conftest import Running, notification, open_feed, run_service


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed")
    with PrivateRedis(tmp_path / "redis") as server:
        yield server


async def health(running: Running) -> tuple[int, dict[str, Any]]:
    async with running.client() as client:
        response = await client.get("/health")
    return response.status_code, response.json()


async def collect(running: Running, into: list[dict[str, Any]], task_status: Any) -> None:
    async with open_feed(running.ws) as ws:
        task_status.started(ws)
        try:
            while True:
                into.append(orjson.loads(await ws.get_message()))
        except ConnectionClosed:
            return


async def check_outage_and_recovery(running: Running, server: PrivateRedis) -> None:
    """Send, stop Redis, send more, start Redis: health follows, every message settles."""
    events: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery, running.client() as client:
        feed = await nursery.start(collect, running, events)
        status, document = await health(running)
        assert status == 200, document
        assert document["components"]["redis"]["healthy"] is True

        sent = []
        for i in range(20):
            response = await client.post("/send", json=notification(f"user-{i % 4}", id=f"pre-{i}"))
            assert response.status_code == 202
            sent.append(f"pre-{i}")
        await wait_until(lambda: len(events) == 20, what="20 outcomes before the outage")

        await trio.to_thread.run_sync(server.kill)

        async def redis_down() -> bool:
            status, document = await health(running)
            return status == 503 and document["components"]["redis"]["healthy"] is False

        await wait_until(redis_down, what="/health to report Redis down")
        status, document = await health(running)
        assert document["status"] in ("degraded", "down")
        assert document["components"]["redis"]["error"]

        # The broker still takes notifications; they wait for Redis.
        for i in range(30):
            response = await client.post("/send", json=notification(f"user-{i % 4}", id=f"mid-{i}"))
            assert response.status_code == 202
            sent.append(f"mid-{i}")
        async with running.client() as probe:
            assert (await probe.get("/ratelimit/user-0")).status_code == 503

        # Nothing can settle without Redis (dedup and limiter live there): the 30
        # wait, neither lost nor passed unchecked.
        assert len(events) == 20
        await trio.to_thread.run_sync(server.start)

        async def healthy() -> bool:
            return (await health(running))[0] == 200

        await wait_until(healthy, timeout_s=30, what="/health to recover")
        await wait_until(lambda: len(events) >= 50, timeout_s=60, what="all 50 outcomes")
        await feed.aclose()

    ids = [event["id"] for event in events]
    assert sorted(ids) == sorted(sent), "each message has exactly one outcome"
    assert {event["event"] for event in events} == {"delivered"}
    assert running.service.metrics.processed == 50


async def test_health_follows_redis_and_no_message_is_lost_embedded_queue(
    private_redis: PrivateRedis,
) -> None:
    with trio.fail_after(120):
        async with run_service(redis_addr=private_redis.addr, rate_limit_per_user=1000) as running:
            await check_outage_and_recovery(running, private_redis)


@pytest.mark.integration
async def test_health_follows_redis_and_no_message_is_lost_kafka(
    private_redis: PrivateRedis, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = await trio.to_thread.run_sync(new_topic, 2)
    dlq = await trio.to_thread.run_sync(new_topic, 1, "dlq")
    with trio.fail_after(180):
        async with run_service(
            kafka_brokers=(kafka_bootstrap,),
            kafka_topic=topic,
            dlq_topic=dlq,
            consumer_group=f"group-{topic}",
            redis_addr=private_redis.addr,
            rate_limit_per_user=1000,
        ) as running:
            await check_outage_and_recovery(running, private_redis)


async def test_health_is_503_while_one_provider_fails_every_call() -> None:
    """A provider with every call failing is not hidden behind the healthy ones."""
    rates = (("fcm", 0.0), ("apns", 1.0), ("firebase", 1.0))
    async with (
        run_service(
            provider_success_rates=rates, retry_attempts=0, rate_limit_per_user=1000
        ) as running,
        running.client() as client,
    ):
        for i in range(60):
            response = await client.post("/send", json=notification(f"u{i}", provider="fcm"))
            assert response.status_code == 202

        async def fcm_unhealthy() -> bool:
            document = (await client.get("/health")).json()
            return document["components"]["providers"]["fcm"]["healthy"] is False

        await wait_until(fcm_unhealthy, what="fcm reported unhealthy")
        response = await client.get("/health")
        assert response.status_code == 503
        document = response.json()
        assert document["status"] == "degraded"
        assert document["components"]["providers"]["healthy"] is False
        assert document["components"]["providers"]["apns"]["healthy"] is True
        # 20 failed calls of 20 opened its breaker: the rest are parked, not tried.
        assert document["components"]["providers"]["fcm"]["breaker"] == "open"
        assert document["components"]["providers"]["apns"]["breaker"] == "closed"
