"""Real delivery end to end: ``pushtrio serve`` with FCM and APNs credentials, against
the local protocol fakes, on the real broker and Redis.

Devices are registered through the API, notifications arrive through Kafka, and what
the fakes received is checked field by field; then every error class, token expiry
and refresh, dead-token pruning, a stalled provider, and HTTP/2 multiplexing.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ..fakes.apns import DEFAULT_TOPIC, FakeApns
from ..fakes.fcm import (
    INTERNAL,
    INVALID_PAYLOAD,
    INVALID_TOKEN,
    QUOTA_EXCEEDED,
    SENDER_ID_MISMATCH,
    UNAVAILABLE,
    UNREGISTERED,
    FakeFcm,
)
from ..fakes.keys import ec_key_pair
from ..fakes.running import in_thread
from ..support.files import read_jsonl
from ..support.kafka import notification, produce, read_all, wait_committed
from ..support.process import ServeProcess, serve_env
from ..support.waiting import wait_for

pytestmark = pytest.mark.integration

KEY_ID = "KEY1234567"
TEAM_ID = "TEAM123456"


def apns_token(n: int) -> str:
    return f"{n:064x}"


@dataclass
class Real:
    """A serve process with real providers, and the fakes behind them."""

    serve: ServeProcess
    fcm: FakeFcm
    apns: FakeApns
    env: dict[str, str]

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        path = Path(self.env["OUTCOME_LOG"])
        return read_jsonl(path) if path.exists() else []

    def outcome(self, message_id: str) -> dict[str, Any]:
        [event] = [e for e in self.outcomes if e["id"] == message_id]
        return event

    def wait_outcomes(self, n: int, timeout_s: float = 60) -> None:
        wait_for(lambda: len(self.outcomes) >= n, timeout_s, f"{n} outcomes")

    def register(self, user_id: str, token: str, provider: str) -> None:
        url = f"{self.serve.url}/users/{user_id}/devices/{token}"
        response = httpx.put(url, json={"provider": provider}, timeout=10)
        assert response.status_code == 201, response.text

    def devices(self, user_id: str) -> list[dict[str, str]]:
        document = httpx.get(f"{self.serve.url}/users/{user_id}/devices", timeout=10).json()
        devices: list[dict[str, str]] = document["devices"]
        return devices


@contextmanager
def real_service(
    kafka: str, redis: str, topic: str, tmp_path: Path, **extra: str
) -> Iterator[Real]:
    fcm, apns = FakeFcm(), FakeApns(tmp_path)
    private, public = ec_key_pair()
    apns.add_key(KEY_ID, TEAM_ID, public)
    key_file = tmp_path / "apns.p8"
    key_file.write_bytes(private)
    with ExitStack() as stack:
        fcm_port = stack.enter_context(in_thread(fcm))
        apns_port = stack.enter_context(in_thread(apns))
        credentials = fcm.write_credentials(tmp_path / "service-account.json")
        env = serve_env(
            kafka,
            redis,
            topic,
            tmp_path,
            "real",
            FCM_CREDENTIALS_FILE=str(credentials),
            FCM_ENDPOINT=f"http://127.0.0.1:{fcm_port}",
            APNS_KEY_FILE=str(key_file),
            APNS_KEY_ID=KEY_ID,
            APNS_TEAM_ID=TEAM_ID,
            APNS_TOPIC=DEFAULT_TOPIC,
            APNS_ENDPOINT=f"https://127.0.0.1:{apns_port}",
            APNS_CA_FILE=apns.ca_file,
            **extra,
        )
        serve = stack.enter_context(ServeProcess(env, tmp_path / "real.log"))
        serve.wait_ready()
        yield Real(serve, fcm, apns, env)


@contextmanager
def watching(url: str, events: str, log: Path) -> Iterator[Path]:
    """``pushtrio watch --json`` on the feed (a user's tool), its frames in ``log``."""
    with open(log, "wb") as out:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "pushtrio", "watch", "--json", "--url", url, "--event", events],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        watcher.terminate()
        watcher.wait(10)


def metrics(url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{url}/metrics", timeout=10).json()
    return document


def frames(log: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log.read_bytes().splitlines() if line.startswith(b"{")]


def wait_subscribed(real: Real, kafka: str, topic: str, feed: Path) -> int:
    """Send canaries until the watcher (subscribed to ``delivered``) shows one: from
    then on it sees every event. Returns how many were sent."""
    real.register("canary", "fcm-canary", "fcm")
    canaries = 0
    deadline = time.monotonic() + 30
    while not frames(feed):
        assert time.monotonic() < deadline, "the watcher never saw the feed"
        canaries += 1
        produce(kafka, topic, [notification(f"canary-{canaries}", "canary", provider="fcm")])
        with contextlib.suppress(AssertionError):
            wait_for(lambda: frames(feed), 2, "a canary on the feed")
    return canaries


def pruned_frames(log: Path) -> list[dict[str, Any]]:
    return [f for f in frames(log) if f["event"] == "token_pruned"]


def test_registered_devices_get_pushes_and_dead_tokens_are_pruned(
    kafka_bootstrap: str, redis_addr: str, new_topic: object, tmp_path: Path
) -> None:
    assert callable(new_topic)
    topic = new_topic(partitions=2)
    expires = datetime.now(UTC) + timedelta(hours=1)
    expires_text = expires.isoformat().replace("+00:00", "Z")
    with real_service(kafka_bootstrap, redis_addr, topic, tmp_path) as real:
        real.register("both", "fcm-both", "fcm")
        real.register("both", apns_token(1), "apns")
        real.register("gone-apns", apns_token(2), "apns")
        real.apns.answer_token(apns_token(2), 410, "Unregistered")
        real.register("gone-fcm", "fcm-gone", "fcm")
        real.register("gone-fcm", "fcm-alive", "fcm")
        real.fcm.fail_device("fcm-gone", UNREGISTERED)
        ws = real.serve.url.replace("http://", "ws://")
        with watching(ws, "token_pruned,delivered", tmp_path / "feed.jsonl") as feed:
            canaries = wait_subscribed(real, kafka_bootstrap, topic, feed)
            produce(
                kafka_bootstrap,
                topic,
                [
                    notification("any", "both", title="Hi", body="to every device"),
                    notification(
                        "to-apns",
                        "both",
                        provider="apns",
                        title="Urgent",
                        body="now",
                        priority=3,
                        expires_at=expires_text,
                        data={"order": 42, "kind": "ship"},
                    ),
                    notification(
                        "to-fcm",
                        "both",
                        provider="fcm",
                        title="Later",
                        body="whenever",
                        priority=0,
                        data={"order": 42, "nested": {"a": [1]}},
                    ),
                    notification("dead-apns", "gone-apns", provider="apns", title="x"),
                    notification("half-dead", "gone-fcm", provider="fcm", title="y"),
                    notification("nobody", "no-devices", title="z"),
                    notification(
                        "explicit", "whoever", provider="apns", title="t", tokens=[apns_token(9)]
                    ),
                ],
            )
            real.wait_outcomes(7 + canaries)
            wait_for(lambda: len(pruned_frames(feed)) >= 2, 20, "two token_pruned events")

        by_id = {e["id"]: e for e in real.outcomes if not e["id"].startswith("canary-")}
        assert {k: e["event"] for k, e in by_id.items()} == {
            "any": "delivered",
            "to-apns": "delivered",
            "to-fcm": "delivered",
            "dead-apns": "failed",
            "half-dead": "delivered",
            "nobody": "failed",
            "explicit": "delivered",
        }
        assert by_id["any"]["devices"] == {"accepted": 2, "failed": 0, "pruned": 0}
        assert by_id["half-dead"]["devices"] == {"accepted": 1, "failed": 0, "pruned": 1}
        assert by_id["dead-apns"]["devices"] == {"accepted": 0, "failed": 0, "pruned": 1}
        assert by_id["dead-apns"]["error"] == "Unregistered"
        assert by_id["nobody"]["error"] == "no registered device"

        # Pruned at once, and announced on the feed.
        assert real.devices("gone-apns") == []
        assert real.devices("gone-fcm") == [{"provider": "fcm", "token": "fcm-alive"}]
        pruned = sorted((f["user_id"], f["provider"], f["token"]) for f in pruned_frames(feed))
        assert pruned == [("gone-apns", "apns", apns_token(2)), ("gone-fcm", "fcm", "fcm-gone")]
        assert metrics(real.serve.url)["pruned_tokens"] == 2

        # APNs, field by field.
        apns = {(r.token, r.body.get("pushtrio_id")): r for r in real.apns.requests}
        urgent = apns[(apns_token(1), "to-apns")]
        assert urgent.status == 200
        assert urgent.headers["apns-topic"] == DEFAULT_TOPIC
        assert urgent.headers["apns-push-type"] == "alert"
        assert urgent.headers["apns-priority"] == "10"
        assert urgent.headers["apns-expiration"] == str(int(expires.timestamp()))
        assert urgent.headers["apns-collapse-id"] == "to-apns"
        assert urgent.body["aps"] == {"alert": {"title": "Urgent", "body": "now"}}
        assert urgent.body["order"] == 42
        assert urgent.body["kind"] == "ship"
        assert urgent.claims is not None
        assert urgent.claims["iss"] == TEAM_ID
        assert (apns_token(9), "explicit") in apns
        assert apns[(apns_token(1), "any")].headers["apns-priority"] == "5"

        # FCM, field by field.
        fcm = {
            (m.message["token"], m.message["data"]["pushtrio_id"]): m for m in real.fcm.messages()
        }
        later = fcm[("fcm-both", "to-fcm")].message
        assert later["notification"] == {"title": "Later", "body": "whenever"}
        assert later["data"] == {"order": "42", "nested": '{"a":[1]}', "pushtrio_id": "to-fcm"}
        assert later["android"]["priority"] == "NORMAL"
        assert later["android"]["notification"] == {"tag": "to-fcm"}
        assert later["apns"]["headers"]["apns-priority"] == "5"
        assert ("fcm-both", "any") in fcm
        assert real.fcm.token_exchanges == 1  # one access token for every send
        assert len({m.access_token for m in real.fcm.messages()}) == 1

        # Nothing for the devices a notification did not name.
        assert ("fcm-both", "to-apns") not in fcm
        assert (apns_token(1), "to-fcm") not in apns

    letters = read_all(kafka_bootstrap, f"{topic}.dlq", 2)
    assert sorted(orjson.loads(letter.value)["id"] for letter in letters) == ["dead-apns", "nobody"]


def test_errors_retries_token_refresh_and_a_stalled_provider(
    kafka_bootstrap: str, redis_addr: str, new_topic: object, tmp_path: Path
) -> None:
    assert callable(new_topic)
    topic = new_topic(partitions=1)
    settings = {
        "RETRY_ATTEMPTS": "3",
        "RETRY_DELAY": "300ms",
        "PROVIDER_TIMEOUT": "1s",
        "BREAKER_MIN_CALLS": "100000",  # this test is about errors, not breakers
    }
    with real_service(kafka_bootstrap, redis_addr, topic, tmp_path, **settings) as real:
        users = ("u-transient", "u-permanent", "u-refresh", "u-expired", "u-stall")
        for n, user in enumerate(users):
            real.register(user, f"fcm-{user}", "fcm")
            real.register(user, apns_token(n), "apns")

        # FCM: a 503 then success; a payload FCM refuses; revoked access tokens.
        real.fcm.fail_next(1, UNAVAILABLE)
        produce(
            kafka_bootstrap,
            topic,
            [notification("transient", "u-transient", provider="fcm", title="a")],
        )
        real.wait_outcomes(1)
        real.fcm.fail_device("fcm-u-permanent", INVALID_PAYLOAD)
        produce(
            kafka_bootstrap,
            topic,
            [notification("permanent", "u-permanent", provider="fcm", title="b")],
        )
        real.wait_outcomes(2)
        real.fcm.revoke_access_tokens()
        produce(
            kafka_bootstrap,
            topic,
            [notification("refresh", "u-refresh", provider="fcm", title="c")],
        )
        real.wait_outcomes(3)

        # APNs: a provider token the server calls expired (the next, made a second
        # later, is fine), then a stall past PROVIDER_TIMEOUT.
        produce(kafka_bootstrap, topic, [notification("warm", "u-expired", provider="apns")])
        real.wait_outcomes(4)
        [warm] = [r for r in real.apns.requests if r.body.get("pushtrio_id") == "warm"]
        assert warm.claims is not None
        issued = warm.claims["iat"]
        wait_for(lambda: time.time() >= issued + 1, 5, "a second after the first token")
        real.apns.expire_tokens_issued_before(issued + 1)
        produce(kafka_bootstrap, topic, [notification("expired", "u-expired", provider="apns")])
        real.wait_outcomes(5)
        retried = metrics(real.serve.url)["retry_scheduled_messages"]
        real.apns.stall()
        produce(kafka_bootstrap, topic, [notification("stall", "u-stall", provider="apns")])
        assert real.apns.wait_for_held(1, 30)
        wait_for(
            lambda: metrics(real.serve.url)["retry_scheduled_messages"] > retried,
            30,
            "the stalled push timed out into a retry tier",
        )
        real.apns.release()
        real.wait_outcomes(6)
        wait_committed(kafka_bootstrap, real.env["CONSUMER_GROUP"], topic, 30)

    by_id = {e["id"]: e for e in real.outcomes}
    assert by_id["transient"]["event"] == "delivered"
    assert by_id["transient"]["attempts"] == 2
    assert by_id["permanent"]["event"] == "failed"
    assert by_id["permanent"]["error"] == "INVALID_ARGUMENT"
    assert by_id["refresh"]["event"] == "delivered"
    assert by_id["refresh"]["attempts"] == 1
    assert real.fcm.token_exchanges == 2  # the first, and one refresh on the 401
    assert by_id["expired"]["event"] == "delivered"
    assert by_id["expired"]["attempts"] == 1
    expired = [r for r in real.apns.requests if r.body.get("pushtrio_id") == "expired"]
    assert [r.reason for r in expired] == ["ExpiredProviderToken", ""]
    assert expired[0].headers["authorization"] != expired[1].headers["authorization"]
    assert by_id["stall"]["event"] == "delivered"
    assert by_id["stall"]["attempts"] == 2
    assert Counter(e["event"] for e in real.outcomes) == {"delivered": 5, "failed": 1}


def test_many_pushes_share_one_http2_connection(
    kafka_bootstrap: str, redis_addr: str, new_topic: object, tmp_path: Path
) -> None:
    assert callable(new_topic)
    topic = new_topic(partitions=2)
    n = 300
    with real_service(kafka_bootstrap, redis_addr, topic, tmp_path) as real:
        real.apns.set_latency(0.02)  # answers overlap: streams must multiplex
        records = [
            notification(f"m-{i}", f"user-{i}", provider="apns", title="hi", tokens=[apns_token(i)])
            for i in range(n)
        ]
        produce(kafka_bootstrap, topic, records)
        real.wait_outcomes(n)
        assert Counter(e["event"] for e in real.outcomes) == {"delivered": n}
        assert {r.token for r in real.apns.requests} == {apns_token(i) for i in range(n)}
        assert real.apns.connections == 1
        assert 1 < real.apns.max_concurrent_requests <= real.apns.max_concurrent_streams


def test_every_error_class_ends_as_mapped(
    kafka_bootstrap: str, redis_addr: str, new_topic: object, tmp_path: Path
) -> None:
    """Each provider answer of the issue's table, end to end: dead tokens pruned,
    permanent errors failed at once, transient ones retried (after Retry-After)
    until the attempts run out."""
    assert callable(new_topic)
    topic = new_topic(partitions=1)
    settings = {"RETRY_ATTEMPTS": "1", "RETRY_DELAY": "100ms", "BREAKER_MIN_CALLS": "100000"}
    with real_service(kafka_bootstrap, redis_addr, topic, tmp_path, **settings) as real:
        apns_answers = {
            "apns-bad-token": (400, "BadDeviceToken"),
            "apns-bad-request": (400, "BadExpirationDate"),
            "apns-throttled": (429, "TooManyRequests"),
            "apns-down": (503, "ServiceUnavailable"),
        }
        for n, (user, (status, reason)) in enumerate(apns_answers.items()):
            real.register(user, apns_token(100 + n), "apns")
            real.apns.answer_token(apns_token(100 + n), status, reason)
        fcm_answers = {
            "fcm-invalid-token": INVALID_TOKEN,
            "fcm-sender": SENDER_ID_MISMATCH,
            "fcm-quota": QUOTA_EXCEEDED,  # Retry-After: 7
            "fcm-internal": INTERNAL,
        }
        for user, failure in fcm_answers.items():
            real.register(user, f"token-{user}", "fcm")
            real.fcm.fail_device(f"token-{user}", failure)
        ws = real.serve.url.replace("http://", "ws://")
        with watching(ws, "retry_scheduled,delivered", tmp_path / "steps.jsonl") as steps:
            canaries = wait_subscribed(real, kafka_bootstrap, topic, steps)
            users = [*apns_answers, *fcm_answers]
            produce(
                kafka_bootstrap,
                topic,
                [
                    notification(user, user, provider="apns" if user.startswith("apns") else "fcm")
                    for user in users
                ],
            )
            real.wait_outcomes(len(users) + canaries, 60)
        by_id = {e["id"]: e for e in real.outcomes}
        assert {u: (by_id[u]["event"], by_id[u]["attempts"], by_id[u]["error"]) for u in users} == {
            "apns-bad-token": ("failed", 1, "BadDeviceToken"),
            "apns-bad-request": ("failed", 1, "BadExpirationDate"),
            "apns-throttled": ("failed", 2, "TooManyRequests"),
            "apns-down": ("failed", 2, "ServiceUnavailable"),
            "fcm-invalid-token": ("failed", 1, "INVALID_ARGUMENT"),
            "fcm-sender": ("failed", 1, "SENDER_ID_MISMATCH"),
            "fcm-quota": ("failed", 2, "QUOTA_EXCEEDED"),
            "fcm-internal": ("failed", 2, "INTERNAL"),
        }
        pruned = {u for u in users if by_id[u]["devices"]["pruned"]}
        assert pruned == {"apns-bad-token", "fcm-invalid-token"}
        assert [u for u in users if not real.devices(u)] == sorted(pruned, key=users.index)
        # The retry of a 429 with Retry-After: 7 was due 7 s after the answer, not 100 ms.
        scheduled = {f["id"]: f for f in frames(steps) if f.get("event") == "retry_scheduled"}
        assert scheduled["fcm-quota"]["due"] - scheduled["fcm-quota"]["ts"] >= 6.9
        assert scheduled["fcm-internal"]["due"] - scheduled["fcm-internal"]["ts"] < 1.0
