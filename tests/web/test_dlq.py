"""``POST /dlq/replay``: filters in, the report out; through the embedded pipeline end to end."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import trio

from pushtrio.contract.errors import BrokerUnavailable
from pushtrio.contract.notification import MAX_RECORD_BYTES
from pushtrio.pipeline.replay import ReplayFilter, ReplayReport
from pushtrio.providers.mock import MockProvider
from pushtrio.source.memory import MemoryBroker
from pushtrio.web.server import serve_web

from ..support.waiting import wait_until
from .conftest import TOKEN, Running, make_handles, notification, run_service

Replay = Callable[[ReplayFilter], Awaitable[ReplayReport]]


@asynccontextmanager
async def app_with(replay: Replay) -> AsyncIterator[httpx.AsyncClient]:
    """The web app alone, with ``replay`` as its replay handle; a client on it."""
    handles = make_handles(replay=replay)
    shutdown = trio.Event()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(serve_web, handles, shutdown)
            async with httpx.AsyncClient(base_url=addresses[0], timeout=10.0) as client:
                yield client
            shutdown.set()


class Recorder:
    """A replay handle that records the filters it is given."""

    def __init__(self) -> None:
        self.filters: list[ReplayFilter] = []

    async def __call__(self, chosen: ReplayFilter) -> ReplayReport:
        await trio.lowlevel.checkpoint()
        self.filters.append(chosen)
        return ReplayReport("notifications.dlq", "notifications", dry_run=chosen.dry_run)


async def test_the_filters_reach_the_replay_as_given() -> None:
    recorder = Recorder()
    body = {
        "outcome": "failed",
        "reason": "Timeout",
        "since": "2030-01-01T00:00:00Z",
        "ids": ["a", "b"],
        "limit": 5.0,
        "dry_run": True,
    }
    async with app_with(recorder) as client:
        everything = await client.post("/dlq/replay", json={})
        nulls = await client.post("/dlq/replay", json=dict.fromkeys(body))
        chosen = await client.post("/dlq/replay", json=body)
    assert everything.status_code == nulls.status_code == chosen.status_code == 200
    assert recorder.filters == [
        ReplayFilter(),
        ReplayFilter(),
        ReplayFilter(
            outcome="failed",
            reason="Timeout",
            since_ms=1_893_456_000_000,
            ids=frozenset({"a", "b"}),
            limit=5,
            dry_run=True,
        ),
    ]
    assert chosen.json() == {
        "dry_run": True,
        "dlq_topic": "notifications.dlq",
        "topic": "notifications",
        "scanned": 0,
        "matched": 0,
        "replayed": 0,
        "skipped": 0,
        "letters": [],
        "skipped_letters": [],
    }


async def test_since_as_a_duration_counts_back_from_now() -> None:
    recorder = Recorder()
    async with app_with(recorder) as client:
        before_ms = int(time.time() * 1000)
        response = await client.post("/dlq/replay", json={"since": "1h"})
        after_ms = int(time.time() * 1000)
    assert response.status_code == 200
    since_ms = recorder.filters[0].since_ms
    assert since_ms is not None
    assert before_ms - 3_600_000 <= since_ms <= after_ms - 3_600_000


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"outcome": "delivered"}, "outcome", "outcome must be one of failed, invalid"),
        ({"outcome": ""}, "outcome", "outcome must be one of failed, invalid"),
        ({"reason": 3}, "reason", "reason must be a string"),
        ({"reason": "x" * 1025}, "reason", "reason is longer than 1024 characters"),
        ({"since": "yesterday"}, "since", "since: expected an RFC 3339 time"),
        ({"since": "2030-02-30T00:00:00Z"}, "since", "since: '2030-02-30T00:00:00Z' is not"),
        ({"since": 3600}, "since", "since must be a string"),
        ({"ids": []}, "ids", "ids must be a non-empty list"),
        ({"ids": "a"}, "ids", "ids must be a non-empty list"),
        ({"ids": ["a", ""]}, "ids", "ids must be strings of 1 to 128 characters"),
        ({"ids": ["x" * 129]}, "ids", "ids must be strings of 1 to 128 characters"),
        ({"limit": 0}, "limit", "limit must be an integer of at least 1"),
        ({"limit": 1.5}, "limit", "limit must be an integer of at least 1"),
        ({"limit": True}, "limit", "limit must be an integer of at least 1"),
        ({"limit": "5"}, "limit", "limit must be an integer of at least 1"),
        ({"dry_run": "yes"}, "dry_run", "dry_run must be true or false"),
        ({"outcomes": "failed"}, "outcomes", "unknown field outcomes (expected outcome, "),
    ],
)
async def test_a_bad_filter_is_400_naming_the_field(
    body: dict[str, Any], field: str, error: str
) -> None:
    recorder = Recorder()
    async with app_with(recorder) as client:
        response = await client.post("/dlq/replay", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"].startswith(error)
    assert recorder.filters == [], "nothing may be replayed on a bad filter"


async def test_a_body_that_is_not_a_json_object_is_refused() -> None:
    recorder = Recorder()
    async with app_with(recorder) as client:
        array = await client.post("/dlq/replay", json=["failed"])
        text = await client.post("/dlq/replay", content=b"outcome=failed")
        broken = await client.post(
            "/dlq/replay", content=b"{", headers={"Content-Type": "application/json"}
        )
        empty = await client.post("/dlq/replay")
        huge = await client.post("/dlq/replay", json={"reason": "x" * MAX_RECORD_BYTES})
    assert array.status_code == 400
    assert array.json() == {"error": "the body must be a JSON object of filters", "field": None}
    assert text.status_code == broken.status_code == empty.status_code == 415
    assert huge.status_code == 413
    assert recorder.filters == []


async def test_a_second_replay_while_one_runs_is_409() -> None:
    release = trio.Event()
    started = trio.Event()

    async def slow(chosen: ReplayFilter) -> ReplayReport:
        started.set()
        await release.wait()
        return ReplayReport("dlq", "topic", replayed=1)

    async with app_with(slow) as client:
        first: list[httpx.Response] = []

        async def first_replay() -> None:
            first.append(await client.post("/dlq/replay", json={}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first_replay)
            await started.wait()
            second = await client.post("/dlq/replay", json={"dry_run": True})
            release.set()
        third = await client.post("/dlq/replay", json={})
    assert second.status_code == 409
    assert second.json() == {"error": "a replay is already running on this instance", "field": None}
    assert first[0].status_code == third.status_code == 200
    assert first[0].json()["replayed"] == 1


async def test_a_broker_failure_is_503() -> None:
    async def down(chosen: ReplayFilter) -> ReplayReport:
        await trio.lowlevel.checkpoint()
        raise BrokerUnavailable("cannot read notifications.dlq: NoBrokersAvailable")

    async with app_with(down) as client:
        response = await client.post("/dlq/replay", json={})
    assert response.status_code == 503
    assert response.json() == {
        "error": "broker unavailable: cannot read notifications.dlq: NoBrokersAvailable"
    }


async def test_the_replay_needs_the_admin_token(secured: Running) -> None:
    async with secured.client() as client:
        without = await client.post("/dlq/replay", json={})
        wrong = await client.post("/dlq/replay", json={}, headers={"Authorization": "Bearer nope"})
        right = await client.post(
            "/dlq/replay", json={}, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert without.status_code == wrong.status_code == 401
    assert right.status_code == 200
    assert right.json()["replayed"] == 0


async def test_failed_letters_replayed_after_the_provider_is_fixed_embedded() -> None:
    """The embedded pipeline end to end: fail on fcm, fix it, replay, replay again."""
    rates = (("fcm", 0.0), ("apns", 1.0), ("firebase", 1.0))
    async with run_service(provider_success_rates=rates, retry_attempts=0) as running:
        metrics = running.service.metrics
        assert running.service.backends is not None
        broker = running.service.backends.publisher
        assert isinstance(broker, MemoryBroker)
        fcm = running.service.providers["fcm"]
        assert isinstance(fcm, MockProvider)
        ids = [f"replay-{i}" for i in range(5)]
        async with running.client() as client:
            for message_id in ids:
                body = notification("alice", id=message_id, provider="fcm")
                assert (await client.post("/send", json=body)).status_code == 202
            invalid = {"user_id": "bob", "title": "t", "priority": 9}
            await broker.publish_many("notifications", [(b"bob", orjson.dumps(invalid), [])])
            await wait_until(lambda: metrics.snapshot()["failed_messages"] == 5, what="5 failed")
            await wait_until(lambda: metrics.snapshot()["invalid_messages"] == 1, what="1 invalid")

            dry = await client.post("/dlq/replay", json={"outcome": "failed", "dry_run": True})
            assert dry.status_code == 200
            assert dry.json()["replayed"] == 5
            assert sorted(x["id"] for x in dry.json()["letters"]) == ids
            assert metrics.snapshot()["processed_messages"] == 6, "a dry run replays nothing"

            fcm.success_rate = 1.0
            first = await client.post("/dlq/replay", json={"outcome": "failed"})
            assert first.status_code == 200
            assert (first.json()["scanned"], first.json()["replayed"]) == (6, 5)
            await wait_until(
                lambda: metrics.snapshot()["delivered_messages"] == 5, what="5 delivered"
            )

            again = await client.post("/dlq/replay", json={"outcome": "failed"})
            assert again.json()["replayed"] == 5
            await wait_until(
                lambda: metrics.snapshot()["duplicate_messages"] == 5, what="5 duplicates"
            )
        snapshot = metrics.snapshot()
        assert snapshot["delivered_messages"] == 5, "a replay sent a notification twice"
        assert snapshot["failed_messages"] == 5
        assert snapshot["invalid_messages"] == 1, "--outcome failed replayed an invalid letter"
        assert len(broker.log("notifications.dlq")) == 6, "a replay added dead letters"
