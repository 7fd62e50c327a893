"""The service's life: start-up reports the bound address, a stop drains the
pipeline and commits, the shutdown timeout cuts the drain short. A whole
:class:`~pushtrio.service.Service` runs in process (web server on port 0), on the
embedded backends and virtual time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from pushtrio.contract.delays import StepKind
from pushtrio.service import Service
from pushtrio.sinks.events import Subscription
from pushtrio.source.memory import MemoryBroker, MemorySource

from ..fast import note, pipeline_settings
from ..support.waiting import wait_until


@dataclass
class Running:
    service: Service
    feed: Subscription
    stop: trio.Event

    @property
    def source(self) -> MemorySource:
        assert self.service.backends is not None
        source = self.service.backends.source
        assert isinstance(source, MemorySource)
        return source

    async def publish(self, values: Sequence[bytes]) -> None:
        assert self.service.backends is not None
        broker = self.service.backends.publisher
        assert isinstance(broker, MemoryBroker)
        topic = self.service.settings.kafka_topic
        await broker.publish_many(topic, [(b"k", value, []) for value in values])


@asynccontextmanager
async def run_service(**changes: Any) -> AsyncIterator[Running]:
    """Serve a Service; on leaving the block, stop it and wait until serve returns."""
    service = Service(pipeline_settings(**changes))
    stop = trio.Event()
    with service.hub.subscribe(capacity=100_000) as feed:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):
                await nursery.start(service.serve, stop)
            yield Running(service, feed, stop)
            stop.set()


async def test_graceful_stop_commits_the_topic_and_leaves_retries_in_their_tiers(
    autojump_clock: trio.abc.Clock,
) -> None:
    rates = (("fcm", 0.5), ("apns", 1.0), ("firebase", 1.0))
    n = 40
    async with run_service(
        provider_success_rates=rates, retry_attempts=3, retry_delay_s=1.0
    ) as running:
        service = running.service
        await running.publish([note(f"g-{i}", provider="fcm") for i in range(n)])
        await running.feed.receive()
    # Leaving the block stopped the service and waited for serve to return: every
    # record of the topic is committed; each notification has an outcome or waits,
    # uncommitted, as one record of a retry tier.
    assert running.source.tracker.committed(("notifications", 0)) == n
    assert running.source.lag() == 0
    assert service.metrics.steps(StepKind.RETRY_SCHEDULED) > 0
    assert service.metrics.processed + running.source.waiting() == n


async def test_shutdown_timeout_leaves_unfinished_records_uncommitted(
    autojump_clock: trio.abc.Clock,
) -> None:
    n = 40
    service = Service(pipeline_settings(provider_latency_s=100.0, shutdown_timeout_s=1.0))
    stop = trio.Event()
    with service.hub.subscribe() as feed:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.serve, stop)
            running = Running(service, feed, stop)
            await running.publish([note(f"s-{i}", provider="fcm") for i in range(n)])
            await wait_until(lambda: running.source.in_flight() > 0, what="records handed out")
            started = trio.current_time()
            stop.set()
    # Provider calls of 100 s outlast the 1 s shutdown timeout.
    assert trio.current_time() - started < 15
    assert service.metrics.processed == 0
    assert running.source.tracker.committed(("notifications", 0)) in (None, 0)


async def test_web_server_reports_bound_address(autojump_clock: trio.abc.Clock) -> None:
    async with run_service() as running:
        [address] = running.service.addresses
        assert address.startswith("http://127.0.0.1:")
        assert not address.endswith(":0")
