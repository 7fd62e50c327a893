"""The pipeline end to end on the embedded backends, in process, on virtual time.

The pipeline runs alone (no service, no web server), fed by the embedded source;
records go in through the embedded broker and outcomes are read from an event hub
that is one of the pipeline's sinks, subscribed before anything is published so no
outcome can be missed. The service's start and stop are in tests/service.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import trio

from pushtrio.config import Settings
from pushtrio.contract.delays import StepKind
from pushtrio.contract.outcome import Outcome, OutcomeKind
from pushtrio.contract.records import ORIGIN_HEADER
from pushtrio.pipeline.breaker import BreakerOptions, build_breakers
from pushtrio.pipeline.policy import Scheduler, SchedulerOptions
from pushtrio.pipeline.workers import Pipeline, PipelineOptions
from pushtrio.providers import (
    Configurable,
    Provider,
    ProviderOptions,
    build_providers,
    provider_stats,
)
from pushtrio.service.backends import delay_topics
from pushtrio.sinks.events import EventHub, Subscription
from pushtrio.sinks.metrics import Metrics
from pushtrio.source import batch_size_for
from pushtrio.source.intake import Intake
from pushtrio.source.memory import MemoryBroker, MemorySource
from pushtrio.stores.dedup import MemoryDedup
from pushtrio.stores.limiter.memory import MemoryLimiter

from ..fast import note, pipeline_settings

FUTURE = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
PAST = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
KINDS = ("delivered", "failed", "invalid", "rate_limited", "expired", "duplicate")
STEPS = ("retry_scheduled", "parked", "deferred")


class DeliveryTimes:
    """An outcome sink: trio's clock at each delivery, by user."""

    def __init__(self) -> None:
        self.by_user: dict[str, list[float]] = {}

    def record(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            if outcome.event is OutcomeKind.DELIVERED:
                self.by_user.setdefault(outcome.user_id, []).append(trio.current_time())


@dataclass
class Running:
    settings: Settings
    broker: MemoryBroker
    source: MemorySource
    metrics: Metrics
    providers: dict[str, Provider]
    feed: Subscription
    steps: Subscription
    """Intermediate events: retry_scheduled, parked, deferred."""
    delivered_at: DeliveryTimes

    async def publish(self, values: Sequence[bytes], key: bytes | None = b"k") -> None:
        topic = self.settings.kafka_topic
        await self.broker.publish_many(topic, [(key, value, []) for value in values])

    async def outcomes(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` outcome events (fails, in virtual time, if they never come)."""
        events = []
        with trio.fail_after(600):
            for _ in range(n):
                event = await self.feed.receive()
                assert event["event"] != "dropped"
                events.append(event)
        return events

    def dead_letters(self) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]], int]]:
        return self.broker.log(self.settings.dlq_topic)


def virtual_ms() -> int:
    """trio's clock in milliseconds: due times that the autojump clock reaches."""
    return int(trio.current_time() * 1000)


@asynccontextmanager
async def run_pipeline(
    *, breakers: BreakerOptions | None = None, **changes: Any
) -> AsyncIterator[Running]:
    """Run a pipeline fed by the embedded source; on leaving, stop intake and drain.

    Circuit breakers only when ``breakers`` is given; the delay topics run on
    trio's clock.
    """
    config = pipeline_settings(**changes)
    broker = MemoryBroker()
    batch_size = batch_size_for(config.max_queue_size)
    topics = delay_topics(config)
    source = MemorySource(
        broker,
        config.kafka_topic,
        batch_size=batch_size,
        delay_topics=topics.all(),
        clock=virtual_ms,
    )
    providers = build_providers(
        ProviderOptions(
            success_rates=config.provider_success_rates,
            latency_s=config.provider_latency_s,
            seed=config.provider_seed,
        )
    )
    metrics = Metrics(worker_count=config.worker_count, providers=providers)
    hub = EventHub()
    delivered_at = DeliveryTimes()
    pipeline = Pipeline(
        PipelineOptions(
            worker_count=config.worker_count,
            batch_size=batch_size,
            max_in_flight=config.max_queue_size,
            provider_timeout_s=config.provider_timeout_s,
            dlq_topic=config.dlq_topic,
        ),
        limiter=MemoryLimiter(config.rate_limit_per_user, config.rate_limit_window_s),
        dedup=MemoryDedup(config.dedup_ttl_s),
        providers=providers,
        scheduler=Scheduler(
            SchedulerOptions(
                topics=topics,
                defer=config.rate_limit_policy == "defer",
                defer_max_s=config.defer_max_s,
                max_park_s=config.breaker_max_park_s,
            ),
            clock=virtual_ms,
        ),
        breakers=None
        if breakers is None
        else build_breakers(providers, breakers, clock=trio.current_time),
        dead_letters=broker,
        sinks=[metrics.record_outcomes, hub.publish, delivered_at.record],
        step_sinks=[metrics.record_steps, hub.publish],
        settle=source.settle,
    )
    intake = Intake(config.max_queue_size)
    with (
        hub.subscribe(capacity=100_000, events=KINDS) as feed,
        hub.subscribe(capacity=100_000, events=STEPS) as steps,
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(pipeline.serve, intake)
            await nursery.start(source.serve, intake)
            yield Running(config, broker, source, metrics, providers, feed, steps, delivered_at)
            source.stop_intake()  # the source closes the intake; the pipeline drains


def kinds_of(events: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter(event["event"] for event in events)


def check_metrics_invariant(metrics: Metrics) -> dict[str, Any]:
    snapshot = metrics.snapshot()
    assert snapshot["processed_messages"] == sum(snapshot[f"{kind}_messages"] for kind in KINDS)
    return snapshot


async def test_rate_limit_is_exact(autojump_clock: trio.abc.Clock) -> None:
    users, per_user, limit = 50, 4, 3
    async with run_pipeline(rate_limit_per_user=limit) as running:
        await running.publish(
            [note(f"m-{u}-{i}", f"user-{u}") for i in range(per_user) for u in range(users)]
        )
        events = await running.outcomes(users * per_user)
    assert kinds_of(events) == {"delivered": users * limit, "rate_limited": users}
    per_user_delivered = Counter(e["user_id"] for e in events if e["event"] == "delivered")
    assert set(per_user_delivered.values()) == {limit}
    assert len(per_user_delivered) == users
    snapshot = check_metrics_invariant(running.metrics)
    assert snapshot["delivered_messages"] == users * limit
    assert snapshot["rate_limited_messages"] == users
    assert running.dead_letters() == []


async def test_each_record_gets_one_outcome_and_bad_ones_are_dead_lettered(
    autojump_clock: trio.abc.Clock,
) -> None:
    values = [
        note("a"),  # 0 delivered
        b"this is not json",  # 1 invalid
        note("b", priority="2"),  # 2 invalid (schema)
        note("c", expires_at=PAST),  # 3 expired
        note("a"),  # 4 duplicate of 0 (same batch)
        note(None, body="no id"),  # 5 delivered, with a derived id
        note("d", expires_at=FUTURE),  # 6 delivered
    ]
    async with run_pipeline() as running:
        await running.publish(values)
        events = await running.outcomes(len(values))
        assert running.feed.pending == 0
        dead = running.dead_letters()
        snapshot = check_metrics_invariant(running.metrics)
    assert kinds_of(events) == {"delivered": 3, "invalid": 2, "expired": 1, "duplicate": 1}
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_kind.setdefault(event["event"], []).append(event)
    assert {e["id"] for e in by_kind["delivered"]} >= {"a", "d"}
    derived = [e["id"] for e in by_kind["delivered"] if e["id"] not in ("a", "d")]
    assert len(derived) == 1
    assert derived[0].startswith("k-")
    assert by_kind["duplicate"][0]["id"] == "a"
    assert by_kind["expired"][0]["id"] == "c"
    assert all(e["error"] for e in by_kind["invalid"])

    # Only the invalid ones are dead letters: original value kept, reason in headers.
    assert sorted(value or b"" for _, value, _, _ in dead) == sorted([values[1], values[2]])
    for key, value, headers, _ in dead:
        assert key == b"k"
        names = dict(headers)
        assert names["pushtrio-outcome"] == b"invalid"
        assert names["pushtrio-reason"]
        topic, partition, offset = orjson.loads(names["pushtrio-source"])
        assert (topic, partition) == ("notifications", 0)
        assert values[offset] == value
    assert b"priority" in dict(next(h for _, v, h, _ in dead if v == values[2]))["pushtrio-reason"]
    assert snapshot["processed_messages"] == len(values)
    assert running.source.tracker.committed(("notifications", 0)) == len(values)


async def test_delivered_id_seen_again_later_is_a_duplicate(autojump_clock: trio.abc.Clock) -> None:
    async with run_pipeline() as running:
        await running.publish([note("once")])
        [first] = await running.outcomes(1)
        await running.publish([note("once")])
        [second] = await running.outcomes(1)
    assert (first["event"], second["event"]) == ("delivered", "duplicate")
    providers = running.providers.values()
    assert sum(provider_stats(provider).sent for provider in providers) == 1


async def test_same_id_in_concurrent_batches_is_delivered_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    # max_queue_size 4 -> batches of one record, so the two copies go to two workers.
    async with run_pipeline(max_queue_size=4, worker_count=4, provider_latency_s=0.05) as running:
        await running.publish([note("retry-of-producer", provider="fcm")] * 2)
        events = await running.outcomes(2)
    assert kinds_of(events) == {"delivered": 1, "duplicate": 1}
    assert provider_stats(running.providers["fcm"]).sent == 1


async def test_retries_are_counted_and_failures_dead_lettered(
    autojump_clock: trio.abc.Clock,
) -> None:
    rates = (("fcm", 0.0), ("apns", 1.0), ("firebase", 1.0))
    n = 40
    async with run_pipeline(
        provider_success_rates=rates, retry_attempts=2, retry_delay_s=1.0
    ) as running:
        await running.publish([note(f"f-{i}", provider="fcm") for i in range(n)])
        await running.publish([note("ok", provider="apns")])
        events = await running.outcomes(n + 1)
        dead = running.dead_letters()
        snapshot = check_metrics_invariant(running.metrics)
    failed = [e for e in events if e["event"] == "failed"]
    assert kinds_of(events) == {"failed": n, "delivered": 1}
    assert all(1 <= e["attempts"] <= 3 for e in failed)
    # Fewer than 3 attempts only when a provider refused for good.
    for event in failed:
        if event["attempts"] < 3:
            assert event["error"] in ("unregistered token", "invalid payload")
    retried = sum(e["attempts"] - 1 for e in failed)
    assert retried > 0
    assert any(e["attempts"] == 3 for e in failed)
    assert snapshot["retried_attempts"] == retried
    assert snapshot["failed_messages"] == n
    assert snapshot["providers"]["fcm"] == {"delivered": 0, "failed": n}

    assert len(dead) == n
    attempts_by_id = {e["id"]: e["attempts"] for e in failed}
    for _, _, headers, _ in dead:
        names = dict(headers)
        assert names["pushtrio-outcome"] == b"failed"
        message_id = names["pushtrio-id"].decode()
        assert int(names["pushtrio-attempts"]) == attempts_by_id[message_id]


async def test_no_retries_when_retry_attempts_is_zero(autojump_clock: trio.abc.Clock) -> None:
    rates = (("fcm", 0.0), ("apns", 1.0), ("firebase", 1.0))
    async with run_pipeline(provider_success_rates=rates, retry_attempts=0) as running:
        await running.publish([note(f"f-{i}", provider="fcm") for i in range(10)])
        events = await running.outcomes(10)
    assert {e["attempts"] for e in events} == {1}
    assert running.metrics.retried_attempts == 0


async def test_a_dead_letter_too_big_for_the_broker_is_written_without_its_value(
    autojump_clock: trio.abc.Clock,
) -> None:
    from pushtrio.contract.dead_letter import DEAD_LETTER_MAX_VALUE_BYTES

    huge = b"x" * (DEAD_LETTER_MAX_VALUE_BYTES + 1)
    small = b"not json"
    async with run_pipeline() as running:
        await running.publish([huge, small])
        events = await running.outcomes(2)
        dead = running.dead_letters()
    assert kinds_of(events) == {"invalid": 2}
    by_offset = {
        orjson.loads(dict(headers)["pushtrio-source"])[2]: (value, dict(headers))
        for _, value, headers, _ in dead
    }
    assert sorted(by_offset) == [0, 1]
    huge_value, huge_headers = by_offset[0]
    assert huge_value == b""
    assert huge_headers["pushtrio-value-dropped"] == str(len(huge)).encode()
    small_value, small_headers = by_offset[1]
    assert small_value == small
    assert "pushtrio-value-dropped" not in small_headers
    assert running.source.tracker.committed(("notifications", 0)) == 2


async def test_a_replayed_record_without_an_id_keeps_the_id_of_its_first_copy(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with run_pipeline() as running:
        await running.publish([note(None, body="no id")])
        [first] = await running.outcomes(1)
        replayed = [(b"k", note(None, body="no id"), [(ORIGIN_HEADER, b'["notifications",0,0]')])]
        await running.broker.publish_many("notifications", replayed)
        [again] = await running.outcomes(1)
    assert first["event"] == "delivered"
    assert again["event"] == "duplicate"
    assert again["id"] == first["id"]


async def test_an_open_breaker_parks_its_notifications_until_the_provider_is_back(
    autojump_clock: trio.abc.Clock,
) -> None:
    n = 30
    async with run_pipeline(
        breakers=BreakerOptions(min_calls=5, window=10, open_for_s=5.0),
        retry_attempts=2,
        retry_delay_s=0.5,
    ) as running:
        fcm = running.providers["fcm"]
        assert isinstance(fcm, Configurable)
        fcm.configure(success_rate=0.0, failure="transient")
        await running.publish([note(f"f-{i}", f"u-{i}", provider="fcm") for i in range(n)])
        await running.publish([note(f"a-{i}", f"u-{i}", provider="apns") for i in range(10)])
        apns = await running.outcomes(10)  # not held up by FCM's outage
        assert {e["id"] for e in apns} == {f"a-{i}" for i in range(10)}
        parked = 0
        with trio.fail_after(600):
            while parked < 3 * n:  # each parked three times: several breaker periods
                parked += (await running.steps.receive())["event"] == "parked"
        assert running.dead_letters() == []
        fcm.configure(success_rate=1.0)
        events = await running.outcomes(n)
    assert kinds_of(events) == {"delivered": n}
    assert {e["id"] for e in events} == {f"f-{i}" for i in range(n)}
    assert running.dead_letters() == []
    assert running.metrics.steps(StepKind.PARKED) >= 3 * n


async def test_deferred_notifications_are_delivered_when_the_window_has_room(
    autojump_clock: trio.abc.Clock,
) -> None:
    n, limit, window_s = 10, 2, 3.0
    async with run_pipeline(
        rate_limit_policy="defer", rate_limit_per_user=limit, rate_limit_window_s=window_s
    ) as running:
        await running.publish([note(f"d-{i}", "busy") for i in range(n)])
        events = await running.outcomes(n)
    assert kinds_of(events) == {"delivered": n}
    assert running.metrics.steps(StepKind.DEFERRED) >= n - limit
    times = running.delivered_at.by_user["busy"]
    assert len(times) == n
    for first, third in zip(times, times[limit:], strict=False):
        assert third - first > window_s  # never more than ``limit`` in any window
    assert times[-1] - times[0] < (n / limit) * window_s + 1  # and no later than needed
