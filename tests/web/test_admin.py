"""The admin endpoints over HTTP: success and error cases, against the served service."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import h11
import httpx
import orjson
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from pushtrio.contract.errors import BrokerUnavailable
from pushtrio.contract.notification import MAX_RECORD_BYTES
from pushtrio.contract.outcome import OutcomeKind
from pushtrio.source.memory import MemoryBroker
from pushtrio.web.server import serve_web

from ..support.waiting import wait_until
from .conftest import Running, make_handles, notification

OUTCOME_FIELDS = (
    "delivered_messages",
    "failed_messages",
    "invalid_messages",
    "rate_limited_messages",
    "expired_messages",
    "duplicate_messages",
)


async def test_health_is_ok_in_embedded_mode(served: Running) -> None:
    async with served.client() as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["status"] == "ok"
    assert document["mode"] == "embedded"
    assert set(document["components"]) == {"kafka", "redis", "workers", "providers"}
    assert all(component["healthy"] for component in document["components"].values())


async def test_send_queues_a_notification_that_is_then_delivered(served: Running) -> None:
    async with served.client() as client:
        given = await client.post("/send", json=notification("alice", id="order-1"))
        generated = await client.post("/send", json=notification("alice", priority=3))
        assert given.status_code == 202
        assert given.json() == {"id": "order-1", "status": "queued"}
        assert generated.status_code == 202
        assert re.fullmatch(r"[0-9a-f]{32}", generated.json()["id"])
        assert generated.json()["status"] == "queued"
        await wait_until(lambda: served.service.metrics.processed == 2, what="2 outcomes")
        metrics = (await client.get("/metrics")).json()
    assert metrics["delivered_messages"] == 2


async def test_send_writes_urgent_priorities_to_the_urgent_topic(served: Running) -> None:
    broker = served.service.backends.publisher if served.service.backends else None
    assert isinstance(broker, MemoryBroker)
    async with served.client() as client:
        for priority in (0, 1, 2, 3, 3):
            response = await client.post("/send", json=notification("dora", priority=priority))
            assert response.status_code == 202
        await wait_until(lambda: served.service.metrics.processed == 5, what="5 outcomes")
    assert broker.end_offset("notifications.urgent") == 2
    assert broker.end_offset("notifications") == 3


async def test_metrics_add_up_and_prometheus_agrees(served: Running) -> None:
    expired = notification("bob", expires_at="2001-01-01T00:00:00Z")
    async with served.client() as client:
        for i in range(12):  # the limit is 10 per user: 2 are rate limited
            assert (await client.post("/send", json=notification("carol", id=f"c{i}"))).is_success
        assert (await client.post("/send", json=expired)).status_code == 202
        await wait_until(lambda: served.service.metrics.processed == 13, what="13 outcomes")
        response = await client.get("/metrics")
        scrape = await client.get("/metrics/prometheus")

    assert response.status_code == 200
    metrics = response.json()
    for name in (
        "processed_messages",
        *OUTCOME_FIELDS,
        "retried_attempts",
        "queue_size",
        "in_flight",
        "worker_count",
        "consumer_lag",
        "latency_ms",
        "providers",
        "uptime_seconds",
    ):
        assert name in metrics, name
    assert set(metrics["latency_ms"]) >= {"p50", "p95", "p99"}
    assert metrics["processed_messages"] == sum(metrics[name] for name in OUTCOME_FIELDS) == 13
    assert metrics["delivered_messages"] == 10
    assert metrics["rate_limited_messages"] == 2
    assert metrics["expired_messages"] == 1
    assert sum(p["delivered"] for p in metrics["providers"].values()) == 10

    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(scrape.text)}
    assert families["pushtrio_processed_messages"].type == "counter"
    assert families["pushtrio_processed_messages"].samples[0].value == 13
    by_outcome = {
        sample.labels["outcome"]: sample.value for sample in families["pushtrio_outcomes"].samples
    }
    assert by_outcome == {kind.value: metrics[f"{kind.value}_messages"] for kind in OutcomeKind}
    assert families["pushtrio_queue_size"].type == "gauge"
    histogram = families["pushtrio_latency_seconds"]
    assert histogram.type == "histogram"
    count = next(s.value for s in histogram.samples if s.name == "pushtrio_latency_seconds_count")
    assert count == 13


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"title": "no user"}, "user_id"),
        ({"user_id": 42, "title": "t"}, "user_id"),
        ({"user_id": "has space", "title": "t"}, "user_id"),
        ({"user_id": "u" * 129, "title": "t"}, "user_id"),
        ({"user_id": "u1"}, "title"),
        ({"user_id": "u1", "title": 5}, "title"),
        ({"user_id": "u1", "title": "t", "priority": "high"}, "priority"),
        ({"user_id": "u1", "title": "t", "priority": 7}, "priority"),
        ({"user_id": "u1", "title": "t", "priority": True}, "priority"),
        ({"user_id": "u1", "title": "t", "expires_at": "tomorrow"}, "expires_at"),
        ({"user_id": "u1", "title": "t", "expires_at": 1700000000}, "expires_at"),
        ({"user_id": "u1", "title": "t", "data": [1, 2]}, "data"),
        ({"user_id": "u1", "title": "t", "provider": "sms"}, "provider"),
        ({"user_id": "u1", "title": "t", "id": 17}, "id"),
        ({"user_id": "u1", "title": "t", "id": "i" * 129}, "id"),
        ({"user_id": "u1", "title": "t" * 257}, "title"),
        ({"user_id": "u1", "body": "b" * 4097}, "body"),
        ({"user_id": "u1", "title": "t", "type": "t" * 65}, "type"),
        ({"user_id": "u1", "title": "t", "data": {"k": "v" * 9000}}, "data"),
        ([{"user_id": "u1", "title": "t"}], None),
        ("just a string", None),
    ],
)
async def test_send_rejects_invalid_notifications_with_the_field(
    served: Running, document: Any, field: str | None
) -> None:
    async with served.client() as client:
        response = await client.post("/send", json=document)
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == field
    assert isinstance(body["error"], str)
    assert body["error"]
    assert served.service.metrics.processed == 0


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"user_id": "u1", "title": ', {"Content-Type": "application/json"}),
        (b"not json at all", {"Content-Type": "application/json"}),
        (b"", {"Content-Type": "application/json"}),
        (b'{"user_id": "u1", "title": "\xff\xfe"}', {"Content-Type": "application/json"}),
        (b'{"user_id": "u1", "title": "t"}', {"Content-Type": "text/plain"}),
        (b"user_id=u1&title=t", {"Content-Type": "application/x-www-form-urlencoded"}),
        (b'{"user_id": "u1", "title": "t"}', {}),
        (
            b'{"user_id": "u1", "title": "t"}',
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        ),
    ],
)
async def test_send_answers_415_to_a_body_that_is_not_json(
    served: Running, content: bytes, headers: dict[str, str]
) -> None:
    async with served.client() as client:
        response = await client.post("/send", content=content, headers=headers)
    assert response.status_code == 415
    assert response.json()["error"]


async def test_send_accepts_json_content_types_with_parameters(served: Running) -> None:
    body = orjson.dumps(notification("u1"))
    async with served.client() as client:
        for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
            response = await client.post(
                "/send", content=body, headers={"Content-Type": content_type}
            )
            assert response.status_code == 202, content_type


async def test_send_answers_413_beyond_the_size_limit(served: Running) -> None:
    padding = "x" * (MAX_RECORD_BYTES + 1)
    oversized = orjson.dumps(notification("u1", data={"padding": padding}))
    headers = {"Content-Type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(oversized), 8192):
            yield oversized[start : start + 8192]

    async with served.client() as client:
        declared = await client.post("/send", content=oversized, headers=headers)
        streamed = await client.post("/send", content=chunks(), headers=headers)
    assert declared.status_code == 413
    assert declared.json()["field"] is None
    assert declared.headers["connection"] == "close"  # the rest of the body is not read
    assert streamed.status_code == 413  # chunked: no Content-Length to refuse it by


async def test_send_takes_null_as_absent(served: Running) -> None:
    nulls = dict.fromkeys(("id", "type", "data", "priority", "created_at", "expires_at"))
    async with served.client() as client:
        response = await client.post("/send", json=notification("u1", provider=None, **nulls))
    assert response.status_code == 202
    assert re.fullmatch(r"[0-9a-f]{32}", response.json()["id"])


async def _read_response(stream: trio.SocketStream, connection: h11.Connection) -> int:
    """The status of the next whole response on ``stream`` (its body is read and dropped)."""
    status = 0
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some())
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage):
            return status
        elif not isinstance(event, h11.Data):
            raise AssertionError(f"unexpected {event!r}")


async def test_a_connection_stays_usable_after_an_answer_that_needs_no_body(
    served: Running,
) -> None:
    """Hypercorn cannot reuse a connection whose request body had not arrived when the
    answer ended: it left such a connection open and dead, never answering it again."""
    url = httpx.URL(served.http)
    assert url.port is not None
    body = orjson.dumps(notification("u1"))
    client = h11.Connection(h11.CLIENT)
    headers = [("Host", url.host), ("Content-Length", str(len(body)))]
    with trio.fail_after(10):
        async with await trio.open_tcp_stream(url.host, url.port) as stream:
            request = h11.Request(method="OPTIONS", target="/metrics", headers=headers)
            await stream.send_all(client.send(request))
            # The server does all it can with the headers alone (answers, unfixed).
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(
                client.send(h11.Data(data=body)) + client.send(h11.EndOfMessage())
            )
            first = await _read_response(stream, client)
            client.start_next_cycle()
            request = h11.Request(method="GET", target="/health", headers=[("Host", url.host)])
            await stream.send_all(client.send(request) + client.send(h11.EndOfMessage()))
            second = await _read_response(stream, client)
    assert (first, second) == (200, 200)


async def test_ratelimit_status_and_reset(served: Running) -> None:
    async with served.client() as client:
        fresh = await client.get("/ratelimit/dave")
        assert fresh.status_code == 200
        assert fresh.json() == {
            "user_id": "dave",
            "limit": 10,
            "window_seconds": 3600.0,
            "used": 0,
            "remaining": 10,
            "reset_in_seconds": 0.0,
        }
        for i in range(4):
            await client.post("/send", json=notification("dave", id=f"d{i}"))
        await wait_until(lambda: served.service.metrics.processed == 4, what="4 outcomes")
        used = (await client.get("/ratelimit/dave")).json()
        assert used["used"] == 4
        assert used["remaining"] == 6
        assert 3590 < used["reset_in_seconds"] <= 3600

        cleared = await client.delete("/ratelimit/dave")
        assert cleared.status_code == 200
        assert cleared.json()["used"] == 0
        assert cleared.json()["remaining"] == 10
        assert (await client.get("/ratelimit/dave")).json()["used"] == 0


@pytest.mark.parametrize("user_id", ["has%20space", "semi;colon", "u" * 129, "%C3%A9t%C3%A9"])
async def test_ratelimit_refuses_a_malformed_user_id(served: Running, user_id: str) -> None:
    async with served.client() as client:
        for method in ("GET", "DELETE"):
            response = await client.request(method, f"/ratelimit/{user_id}")
            assert response.status_code == 400
            assert response.json()["field"] == "user_id"


async def test_unknown_routes_and_methods_answer_json(served: Running) -> None:
    async with served.client() as client:
        missing = await client.get("/nope")
        nested = await client.get("/ratelimit/")
        wrong_method = await client.put("/metrics")
        post_health = await client.post("/health", json={})
        get_send = await client.get("/send")
        head_health = await client.head("/health")
    for response in (missing, nested):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert "no such endpoint" in response.json()["error"]
    for response, allowed in ((wrong_method, "GET"), (post_health, "GET"), (get_send, "POST")):
        assert response.status_code == 405
        assert response.headers["content-type"] == "application/json"
        assert allowed in response.headers["allow"]
        assert "not allowed" in response.json()["error"]
    assert head_health.status_code == 200


async def test_a_plain_get_of_the_feed_is_told_to_open_a_websocket(served: Running) -> None:
    async with served.client() as client:
        response = await client.get("/ws/events", params={"event": "delivered"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "a WebSocket endpoint; open it with a handshake: GET /ws/events"
    }


async def test_a_websocket_handshake_elsewhere_is_refused_with_json(served: Running) -> None:
    handshake = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    async with served.client() as client:
        response = await client.get("/health", headers=handshake)
    assert response.status_code == 400
    assert response.json() == {"error": "not a WebSocket endpoint: WEBSOCKET /health"}


async def test_dashboard_page_is_served(served: Running) -> None:
    async with served.client() as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/ws/events" in response.text
    assert "<canvas" in response.text


class DownBroker:
    """A publisher whose broker is gone: what KafkaPublisher raises when Kafka is down.

    (The real KafkaPublisher against a dead port leaks kafka-python's sockets when
    its producer cannot bootstrap, which filterwarnings=error turns into failures.)
    """

    def __init__(self) -> None:
        self.attempts = 0

    async def publish_many(self, topic: str, items: Sequence[Any]) -> None:
        self.attempts += 1
        await trio.lowlevel.checkpoint()
        raise BrokerUnavailable("Kafka did not take the records: NoBrokersAvailable")

    async def check(self) -> None:
        raise BrokerUnavailable("NoBrokersAvailable")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


@pytest.fixture
async def broker_down() -> AsyncIterator[str]:
    """The web app alone, served by Hypercorn, with a publisher whose broker is down."""
    publisher = DownBroker()
    handles = make_handles(publisher=publisher)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        addresses = await nursery.start(serve_web, handles, shutdown)
        yield addresses[0]
        shutdown.set()
    assert publisher.attempts == 1


async def test_send_answers_503_when_the_broker_is_unavailable(broker_down: str) -> None:
    async with httpx.AsyncClient(base_url=broker_down, timeout=30.0) as client:
        response = await client.post("/send", json=notification("u1"))
    assert response.status_code == 503
    assert "broker unavailable" in response.json()["error"]


async def test_an_unexpected_error_is_a_json_500() -> None:
    handles = make_handles()

    async def broken_health() -> dict[str, Any]:
        raise RuntimeError("boom")

    handles = dataclasses.replace(handles, health=broken_health)
    shutdown = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(serve_web, handles, shutdown)
            async with httpx.AsyncClient(base_url=addresses[0]) as client:
                response = await client.get("/health")
                metrics = await client.get("/metrics")
            shutdown.set()
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert metrics.status_code == 200  # the app keeps serving
