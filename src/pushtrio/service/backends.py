"""Choose and build the backends the settings ask for (Kafka or embedded, Redis or embedded)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..config import Settings
from ..contract.delays import DelayTopics
from ..contract.records import Publisher
from ..source import Source, batch_size_for
from ..source.kafka.publisher import KafkaPublisher
from ..source.kafka.reader import KafkaSource
from ..source.memory import MemoryBroker, MemorySource
from ..stores.dedup import DedupStore, MemoryDedup, RedisDedup
from ..stores.devices import DeviceRegistry, MemoryDevices, RedisDevices
from ..stores.limiter import Limiter
from ..stores.limiter.memory import MemoryLimiter
from ..stores.limiter.redis import RedisLimiter
from ..stores.redis_client import open_redis


@dataclass(frozen=True, slots=True)
class Backends:
    source: Source
    publisher: Publisher
    limiter: Limiter
    dedup: DedupStore
    devices: DeviceRegistry

    def describe(self, settings: Settings) -> str:
        queue = (
            "embedded queue"
            if settings.kafka_embedded
            else f"Kafka {','.join(settings.kafka_brokers)} topic={settings.kafka_topic} "
            f"group={settings.consumer_group}"
        )
        store = (
            "embedded limiter and dedup"
            if settings.redis_embedded
            else f"Redis {settings.redis_addr}"
        )
        return f"{queue}; {store}"


def delay_topics(settings: Settings) -> DelayTopics:
    """The retry tiers, park and defer topics of the main topic."""
    return DelayTopics(settings.kafka_topic, settings.retry_attempts, settings.retry_delay_s)


@asynccontextmanager
async def open_backends(settings: Settings) -> AsyncIterator[Backends]:
    """Build the backends; close the publisher and Redis connections on exit.

    Nothing connects here: connection failures surface from the first call.
    """
    source: Source
    publisher: Publisher
    batch_size = batch_size_for(settings.max_queue_size)
    if settings.kafka_embedded:
        broker = MemoryBroker()
        source = MemorySource(
            broker,
            settings.kafka_topic,
            batch_size=batch_size,
            delay_topics=delay_topics(settings).all(),
            urgent_topic=settings.urgent_topic,
        )
        publisher = broker
    else:
        source = KafkaSource(
            settings.kafka_brokers,
            settings.kafka_topic,
            settings.consumer_group,
            batch_size=batch_size,
            delay_topics=delay_topics(settings).all(),
            urgent_topic=settings.urgent_topic,
        )
        publisher = KafkaPublisher(settings.kafka_brokers, timeout_s=10.0)
    try:
        if settings.redis_embedded:
            limiter: Limiter = MemoryLimiter(
                settings.rate_limit_per_user, settings.rate_limit_window_s
            )
            yield Backends(
                source, publisher, limiter, MemoryDedup(settings.dedup_ttl_s), MemoryDevices()
            )
        else:
            redis_at = open_redis(
                settings.redis_addr, password=settings.redis_password, db=settings.redis_db
            )
            async with redis_at as client:
                yield Backends(
                    source,
                    publisher,
                    RedisLimiter(
                        client, settings.rate_limit_per_user, settings.rate_limit_window_s
                    ),
                    RedisDedup(client, settings.dedup_ttl_s),
                    RedisDevices(client),
                )
    finally:
        await publisher.aclose()
