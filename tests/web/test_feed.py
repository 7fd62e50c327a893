"""``WS /ws/events`` over real sockets: filters, refusals, slow subscribers, shutdown."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection

from ..support.waiting import wait_until
from .conftest import Running, notification, open_feed, run_service

FEEDS = {
    "all": "",
    "alice": "user_id=alice",
    "refused": "event=rate_limited,invalid",
    "bob_delivered": "user_id=bob&event=delivered",
    "expired_or_duplicate": "event=expired&event=duplicate",
}


def matches(query: str, event: dict[str, Any]) -> bool:
    user_ids = [p.split("=", 1)[1] for p in query.split("&") if p.startswith("user_id=")]
    kinds = {
        kind
        for p in query.split("&")
        if p.startswith("event=")
        for kind in p.split("=", 1)[1].split(",")
    }
    return (not user_ids or event["user_id"] == user_ids[0]) and (
        not kinds or event["event"] in kinds
    )


async def read_feed(
    base_ws: str,
    query: str,
    into: list[dict[str, Any]],
    closes: list[int | None],
    *,
    task_status: trio.TaskStatus[WebSocketConnection] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Collect every frame of one feed until it is closed (by either side)."""
    async with open_feed(base_ws, query) as ws:
        task_status.started(ws)
        try:
            while True:
                into.append(orjson.loads(await ws.get_message()))
        except ConnectionClosed as exc:
            closes.append(None if exc.reason is None else exc.reason.code)


async def test_each_subscriber_sees_exactly_the_outcomes_it_filtered_for() -> None:
    feeds: dict[str, list[dict[str, Any]]] = {name: [] for name in FEEDS}
    closes: list[int | None] = []
    with trio.fail_after(60):
        async with (
            run_service(rate_limit_per_user=2) as running,
            running.client() as client,
            trio.open_nursery() as nursery,
        ):
            for name, query in FEEDS.items():
                await nursery.start(read_feed, running.ws, query, feeds[name], closes)

            sends = [notification("alice", id=f"a{i}") for i in range(4)]
            sends += [notification("bob", id=f"b{i}") for i in range(3)]
            sends += [
                notification("carol", id="c-old", expires_at="2001-01-01T00:00:00Z"),
                notification("carol", id="c-new"),
                notification("dave", id="dup-1"),
            ]
            for document in sends:
                assert (await client.post("/send", json=document)).status_code == 202
            # Records /send refuses can still arrive through the topic.
            backends = running.service.backends
            assert backends is not None
            topic = running.service.settings.kafka_topic
            await backends.publisher.publish_many(
                topic, [(None, b"not json", []), (None, b'{"user_id": "alice"}', [])]
            )
            await wait_until(lambda: len(feeds["all"]) == 12, what="12 outcomes")
            # Once dup-1 is delivered, the same id again is a duplicate.
            assert (await client.post("/send", json=sends[-1])).status_code == 202
            await wait_until(lambda: len(feeds["all"]) == 13, what="13 outcomes")
            running.stop.set()  # the service closes every feed (1001) and stops

    everything = feeds["all"]
    kinds = [event["event"] for event in everything]
    assert {kind: kinds.count(kind) for kind in set(kinds)} == {
        "delivered": 6,  # alice 2, bob 2, carol 1, dave 1
        "rate_limited": 3,  # alice 2, bob 1
        "expired": 1,
        "invalid": 2,
        "duplicate": 1,
    }
    by_id = {(e["id"], e["event"]) for e in everything}
    assert ("c-old", "expired") in by_id
    assert ("dup-1", "delivered") in by_id
    assert ("dup-1", "duplicate") in by_id
    assert [e["user_id"] for e in everything if e["event"] == "invalid"].count("alice") == 1
    for event in everything:
        assert set(event) == {
            "event",
            "id",
            "user_id",
            "provider",
            "priority",
            "attempts",
            "latency_ms",
            "error",
            "ts",
        }
    for name, query in FEEDS.items():
        expected = [event for event in everything if matches(query, event)]
        assert expected, name
        assert feeds[name] == expected, name
    assert closes == [1001] * len(FEEDS)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("event=sent", "event"),
        ("event=delivered,bogus", "event"),
        ("event=delivered&event=nope", "event"),
        ("user_id=not%20valid", "user_id"),
        ("user_id=" + "u" * 129, "user_id"),
        ("batch=yes", "batch"),
        ("batch=2", "batch"),
    ],
)
async def test_a_bad_filter_is_refused_before_the_handshake(
    served: Running, query: str, field: str
) -> None:
    with trio.fail_after(10), pytest.raises(ConnectionRejected) as rejected:
        async with open_feed(served.ws, query):
            pass
    assert rejected.value.status_code == 400
    body = orjson.loads(rejected.value.body or b"{}")
    assert body["field"] == field
    assert body["error"]


def accounted(events: list[dict[str, Any]]) -> int:
    """Outcomes a feed's frames account for: those received plus those dropped."""
    return sum(event["count"] if event["event"] == "dropped" else 1 for event in events)


async def publish_and_time(running: Running, start: int, n: int) -> float:
    """Put ``n`` notifications straight into the embedded queue; seconds until all settle."""
    backends = running.service.backends
    assert backends is not None
    items: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = [
        (None, orjson.dumps(notification(f"user-{i % 500}", id=f"m-{i}")), [])
        for i in range(start, start + n)
    ]
    metrics = running.service.metrics
    target = metrics.processed + n
    began = trio.current_time()
    await backends.publisher.publish_many(running.service.settings.kafka_topic, items)
    await wait_until(lambda: metrics.processed >= target, timeout_s=60, what=f"{n} outcomes")
    return trio.current_time() - began


async def test_a_subscriber_that_never_reads_does_not_slow_delivery() -> None:
    n = 5000
    with trio.fail_after(120):
        async with run_service(rate_limit_per_user=1_000_000) as running:
            await publish_and_time(running, 0, 1000)  # warm up
            alone = await publish_and_time(running, 1000, n)

            fast: list[dict[str, Any]] = []
            closes: list[int | None] = []
            async with (
                open_feed(running.ws, receive_buffer=4096) as stalled,
                trio.open_nursery() as nursery,
            ):
                reader = await nursery.start(read_feed, running.ws, "", fast, closes)
                with_stalled = await publish_and_time(running, 1000 + n, n)
                await wait_until(lambda: accounted(fast) == n, what="the reading subscriber")

                # Now read the stalled feed: what the socket held, then the notice of
                # the events its buffer lost, then the newest events; nothing else.
                received = dropped = notices = 0
                while received + dropped < n:
                    event = orjson.loads(await stalled.get_message())
                    if event["event"] == "dropped":
                        dropped += event["count"]
                        notices += 1
                    else:
                        received += 1
                await reader.aclose()

    assert received + dropped == n
    assert closes == [1000]
    assert dropped > 0
    assert notices >= 1
    # The reading subscriber may lose some of a burst this size (its buffer holds
    # 1000), but every outcome is either received or counted as dropped.
    delivered = [event for event in fast if event["event"] != "dropped"]
    assert all(event["event"] == "delivered" for event in delivered)
    assert len({event["id"] for event in delivered}) == len(delivered)
    assert {event["id"] for event in delivered} <= {f"m-{i}" for i in range(1000 + n, 1000 + 2 * n)}
    print(
        f"alone {alone:.3f}s, with a stalled subscriber {with_stalled:.3f}s; stalled: "
        f"{received} received, {dropped} dropped; reader: {len(delivered)} received"
    )
    # Same order of time with and without the stalled subscriber (not a tight bound:
    # the machine may be busy).
    assert with_stalled < 3 * alone + 0.5, (alone, with_stalled)


async def test_batch_frames_carry_every_event_waiting(served: Running) -> None:
    """With batch=1 each frame is a JSON array; together they hold every event once."""
    async with served.client() as client, open_feed(served.ws, "user_id=ivy&batch=1") as ws:
        for i in range(30):
            response = await client.post("/send", json=notification("ivy", id=f"ivy-{i}"))
            assert response.status_code == 202
        ids: list[str] = []
        frames = 0
        with trio.fail_after(20):
            while len(ids) < 30:
                batch = orjson.loads(await ws.get_message())
                assert isinstance(batch, list)
                assert batch
                frames += 1
                ids += [event["id"] for event in batch]
    assert sorted(ids) == sorted(f"ivy-{i}" for i in range(30))
    assert frames <= 30
