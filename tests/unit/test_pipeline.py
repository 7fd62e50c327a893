"""The pipeline end to end on the embedded backends, in process, on virtual time.

A whole :class:`~pushtrio.service.Service` runs (web server on port 0 included);
records go in through the embedded broker and outcomes are read from the event
hub, subscribed before anything is published so no outcome can be missed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import trio

from pushtrio.config import Settings
from pushtrio.events import Subscription
from pushtrio.providers import provider_stats
from pushtrio.source.memory import MemoryBroker, MemorySource

from ..fast import fast_settings

if TYPE_CHECKING:
    from pushtrio.service import Service

FUTURE = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
PAST = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
KINDS = ("delivered", "failed", "invalid", "rate_limited", "expired", "duplicate")


def settings(**changes: Any) -> Settings:
    base = fast_settings(
        provider_seed=1,
        rate_limit_per_user=1000,
        rate_limit_window_s=3600.0,
        shutdown_timeout_s=30.0,
        worker_count=4,
        max_queue_size=400,
    )
    return base.replace(**changes)


def note(message_id: str | None, user_id: str = "u1", **fields: Any) -> bytes:
    document: dict[str, Any] = {"user_id": user_id, "title": "hello", **fields}
    if message_id is not None:
        document["id"] = message_id
    return orjson.dumps(document)


@dataclass
class Running:
    service: Service
    feed: Subscription
    stop: trio.Event

    @property
    def broker(self) -> MemoryBroker:
        assert self.service.backends is not None
        publisher = self.service.backends.publisher
        assert isinstance(publisher, MemoryBroker)
        return publisher

    @property
    def source(self) -> MemorySource:
        assert self.service.backends is not None
        source = self.service.backends.source
        assert isinstance(source, MemorySource)
        return source

    async def publish(self, values: Sequence[bytes], key: bytes | None = b"k") -> None:
        topic = self.service.settings.kafka_topic
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

    def dead_letters(self) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]], int]]:
        return self.broker.log(self.service.settings.dlq_topic)


@asynccontextmanager
async def run_service(**changes: Any) -> AsyncIterator[Running]:
    """Serve a Service; on leaving the block, stop it and wait until serve returns."""
    from pushtrio.service import Service

    service = Service(settings(**changes))
    stop = trio.Event()
    with service.hub.subscribe(capacity=100_000) as feed:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(60):
                await nursery.start(service.serve, stop)
            yield Running(service, feed, stop)
            stop.set()


def kinds_of(events: Sequence[dict[str, Any]]) -> Counter[str]:
    return Counter(event["event"] for event in events)


def check_metrics_invariant(service: Service) -> dict[str, Any]:
    snapshot = service.metrics.snapshot()
    assert snapshot["processed_messages"] == sum(snapshot[f"{kind}_messages"] for kind in KINDS)
    return snapshot


async def test_rate_limit_is_exact(autojump_clock: trio.abc.Clock) -> None:
    users, per_user, limit = 50, 4, 3
    async with run_service(rate_limit_per_user=limit) as running:
        await running.publish(
            [note(f"m-{u}-{i}", f"user-{u}") for i in range(per_user) for u in range(users)]
        )
        events = await running.outcomes(users * per_user)
    assert kinds_of(events) == {"delivered": users * limit, "rate_limited": users}
    per_user_delivered = Counter(e["user_id"] for e in events if e["event"] == "delivered")
    assert set(per_user_delivered.values()) == {limit}
    assert len(per_user_delivered) == users
    snapshot = check_metrics_invariant(running.service)
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
    async with run_service() as running:
        await running.publish(values)
        events = await running.outcomes(len(values))
        assert running.feed.pending == 0
        dead = running.dead_letters()
        snapshot = check_metrics_invariant(running.service)
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
    assert sorted(value for _, value, _, _ in dead) == sorted([values[1], values[2]])
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
    async with run_service() as running:
        await running.publish([note("once")])
        [first] = await running.outcomes(1)
        await running.publish([note("once")])
        [second] = await running.outcomes(1)
    assert (first["event"], second["event"]) == ("delivered", "duplicate")
    providers = running.service.providers.values()
    assert sum(provider_stats(provider).sent for provider in providers) == 1


async def test_same_id_in_concurrent_batches_is_delivered_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    # max_queue_size 4 -> batches of one record, so the two copies go to two workers.
    async with run_service(max_queue_size=4, worker_count=4, provider_latency_s=0.05) as running:
        await running.publish([note("retry-of-producer", provider="fcm")] * 2)
        events = await running.outcomes(2)
    assert kinds_of(events) == {"delivered": 1, "duplicate": 1}
    assert provider_stats(running.service.providers["fcm"]).sent == 1


async def test_retries_are_counted_and_failures_dead_lettered(
    autojump_clock: trio.abc.Clock,
) -> None:
    rates = (("fcm", 0.0), ("apns", 1.0), ("firebase", 1.0))
    n = 40
    async with run_service(
        provider_success_rates=rates, retry_attempts=2, retry_delay_s=1.0
    ) as running:
        await running.publish([note(f"f-{i}", provider="fcm") for i in range(n)])
        await running.publish([note("ok", provider="apns")])
        events = await running.outcomes(n + 1)
        dead = running.dead_letters()
        snapshot = check_metrics_invariant(running.service)
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
    async with run_service(provider_success_rates=rates, retry_attempts=0) as running:
        await running.publish([note(f"f-{i}", provider="fcm") for i in range(10)])
        events = await running.outcomes(10)
    assert {e["attempts"] for e in events} == {1}
    assert running.service.metrics.retried_attempts == 0


async def test_graceful_stop_drains_retries_and_commits_everything(
    autojump_clock: trio.abc.Clock,
) -> None:
    rates = (("fcm", 0.5), ("apns", 1.0), ("firebase", 1.0))
    n = 40
    from pushtrio.service import Service

    service = Service(settings(provider_success_rates=rates, retry_attempts=3, retry_delay_s=1.0))
    stop = trio.Event()
    with service.hub.subscribe() as feed:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.serve, stop)
            running = Running(service, feed, stop)
            await running.publish([note(f"g-{i}", provider="fcm") for i in range(n)])
            await feed.receive()
            # Some notifications are now waiting out their back-off.
            processed_at_stop = service.metrics.processed
            stop.set()
        # serve returned: everything handed out has an outcome and is committed.
    assert 0 < processed_at_stop < n
    assert service.metrics.processed == n
    assert running.source.tracker.committed(("notifications", 0)) == n
    assert running.source.lag() == 0
    assert service.metrics.retried_attempts > 0


async def test_shutdown_timeout_leaves_unfinished_records_uncommitted(
    autojump_clock: trio.abc.Clock,
) -> None:
    rates = (("fcm", 0.5), ("apns", 1.0), ("firebase", 1.0))
    n = 40
    from pushtrio.service import Service

    service = Service(
        settings(
            provider_success_rates=rates,
            retry_attempts=3,
            retry_delay_s=100.0,
            shutdown_timeout_s=1.0,
        )
    )
    stop = trio.Event()
    with service.hub.subscribe() as feed:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.serve, stop)
            running = Running(service, feed, stop)
            await running.publish([note(f"s-{i}", provider="fcm") for i in range(n)])
            first = await feed.receive()
            settled_ids = {first["id"]}
            while True:
                try:
                    settled_ids.add(feed.receive_nowait()["id"])
                except trio.WouldBlock:
                    break
            started = trio.current_time()
            stop.set()
    # Back-off waits (>= 15 s) outlast the 1 s shutdown timeout.
    assert trio.current_time() - started < 15
    assert service.metrics.processed == len(settled_ids) < n
    settled_offsets = {int(i.removeprefix("s-")) for i in settled_ids}
    first_unsettled = min(set(range(n)) - settled_offsets)
    assert running.source.tracker.committed(("notifications", 0)) == first_unsettled


async def test_web_server_reports_bound_address(autojump_clock: trio.abc.Clock) -> None:
    async with run_service() as running:
        [address] = running.service.addresses
        assert address.startswith("http://127.0.0.1:")
        assert not address.endswith(":0")


async def test_a_dead_letter_too_big_for_the_broker_is_written_without_its_value(
    autojump_clock: trio.abc.Clock,
) -> None:
    from pushtrio.pipeline import DEAD_LETTER_MAX_VALUE_BYTES

    huge = b"x" * (DEAD_LETTER_MAX_VALUE_BYTES + 1)
    small = b"not json"
    async with run_service() as running:
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
