"""Priority lanes on the real broker, with ``pushtrio serve`` as processes.

Overtaking is checked with counts, not times: the outcome log's order says how many
backlog notifications went out before each urgent one.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..support.files import read_jsonl, wait_lines
from ..support.kafka import committed_offsets, end_offsets, notification, produce, wait_committed
from ..support.process import ServeProcess, serve_env
from ..support.waiting import wait_for

pytestmark = pytest.mark.integration

SLOW = {"WORKER_COUNT": "1", "MAX_QUEUE_SIZE": "100", "PROVIDER_LATENCY": "20ms"}
"""About 1,000 notifications a second: a backlog takes seconds to drain."""


def wait_read_to_the_end(kafka: str, group: str, topic: str, timeout_s: float) -> None:
    """Until the group's commits reach the end of every partition of ``topic`` that
    has records (an empty partition has no commit)."""
    ends = {p: end for p, end in end_offsets(kafka, topic).items() if end}
    wait_for(
        lambda: (
            {p: o for p, o in committed_offsets(kafka, group, topic).items() if p in ends} == ends
        ),
        timeout_s,
        f"commits at the end of {topic}",
        every_s=0.2,
    )


def backlog(n: int, prefix: str = "b", users: int = 500) -> list[tuple[bytes, bytes]]:
    return [notification(f"{prefix}-{i}", f"user-{i % users}", priority=0) for i in range(n)]


def send_urgent(url: str, ids: list[str], **extra: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for message_id in ids:
            document = {"id": message_id, "user_id": "vip", "title": "code", "priority": 3}
            document.update(extra)
            response = client.post("/send", json=document)
            assert response.status_code == 202, response.text


def outcomes_in_order(*logs: Path) -> list[dict[str, Any]]:
    """The outcomes of every log, in the order they were settled (by time stamp)."""
    events = [event for log in logs if log.exists() for event in read_jsonl(log)]
    return sorted(events, key=lambda event: event["ts"])


def backlog_done_before(events: list[dict[str, Any]], message_id: str, prefix: str) -> int:
    """How many backlog outcomes (ids starting ``prefix-``) came before ``message_id``'s."""
    done = 0
    for event in events:
        if event["id"] == message_id:
            return done
        if event["id"].startswith(f"{prefix}-"):
            done += 1
    raise AssertionError(f"{message_id} has no outcome")


def assert_each_once(events: list[dict[str, Any]], ids: set[str]) -> None:
    assert {e["id"] for e in events} == ids, "a notification has no outcome"
    delivered = Counter(e["id"] for e in events if e["event"] == "delivered")
    assert set(delivered) == ids
    assert max(delivered.values()) == 1, "a notification was delivered twice"


def test_urgent_notifications_overtake_a_backlog(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(2)
    n = 6000
    produce(kafka_bootstrap, topic, backlog(n))
    env = serve_env(kafka_bootstrap, redis_addr, topic, tmp_path, "lanes", **SLOW)
    urgent = [f"u-{i}" for i in range(20)]
    with ServeProcess(env, tmp_path / "serve.log") as process:
        process.wait_ready()
        wait_lines(Path(env["OUTCOME_LOG"]), 200, 60)  # the backlog is draining
        send_urgent(process.url, urgent)
        wait_committed(kafka_bootstrap, env["CONSUMER_GROUP"], topic, 120)
        wait_read_to_the_end(kafka_bootstrap, env["CONSUMER_GROUP"], f"{topic}.urgent", 60)
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0

    events = outcomes_in_order(Path(env["OUTCOME_LOG"]))
    assert_each_once(events, {f"b-{i}" for i in range(n)} | set(urgent))
    passed_by = [backlog_done_before(events, message_id, "b") for message_id in urgent]
    # Every urgent outcome comes before the backlog's last 80%.
    assert max(passed_by) < n * 0.2, passed_by


def test_urgent_retries_come_back_ahead_of_the_backlog(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(2)
    n = 6000
    produce(kafka_bootstrap, topic, backlog(n))  # no provider named: fcm, apns or firebase
    env = serve_env(
        kafka_bootstrap,
        redis_addr,
        topic,
        tmp_path,
        "retries",
        PROVIDER_APNS_SUCCESS_RATE="0.5",  # the urgent ones fail half their attempts
        RETRY_ATTEMPTS="4",
        RETRY_DELAY="100ms",
        BREAKER_FAILURE_RATE="1",
        **SLOW,
    )
    urgent = [f"r-{i}" for i in range(40)]
    with ServeProcess(env, tmp_path / "serve.log") as process:
        process.wait_ready()
        wait_lines(Path(env["OUTCOME_LOG"]), 200, 60)
        send_urgent(process.url, urgent, provider="apns")
        wait_committed(kafka_bootstrap, env["CONSUMER_GROUP"], topic, 120)
        wait_for(
            lambda: {e["id"] for e in read_jsonl(Path(env["OUTCOME_LOG"]))} >= set(urgent),
            60,
            "an outcome for every urgent notification (some through the retry tiers)",
            every_s=0.2,
        )
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0

    events = outcomes_in_order(Path(env["OUTCOME_LOG"]))
    finals = {e["id"]: e for e in events if e["id"].startswith("r-")}
    assert set(finals) == set(urgent)
    assert {e["event"] for e in finals.values()} <= {"delivered", "failed"}
    assert max(e["attempts"] for e in finals.values()) > 1, "no urgent notification was retried"
    for message_id in urgent:
        # Retried through the delay topics, and still out before the backlog's last 20%.
        assert backlog_done_before(events, message_id, "b") < n * 0.8, message_id


def test_lanes_hold_across_a_rebalance_and_a_restart(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(4)
    n = 10_000
    produce(kafka_bootstrap, topic, backlog(n))

    def env_for(name: str) -> dict[str, str]:
        return serve_env(kafka_bootstrap, redis_addr, topic, tmp_path, name, **SLOW)

    env_a, env_b, env_c = env_for("a"), env_for("b"), env_for("c")
    logs = [Path(env["OUTCOME_LOG"]) for env in (env_a, env_b, env_c)]
    first_urgent = [f"u1-{i}" for i in range(10)]
    second_urgent = [f"u2-{i}" for i in range(10)]
    with ServeProcess(env_a, tmp_path / "a.log") as a:
        a.wait_ready()
        wait_lines(logs[0], 300, 60)
        with ServeProcess(env_b, tmp_path / "b.log") as b:
            b.wait_ready()
            # The group has both members: the urgent topic is split between them.
            wait_lines(logs[1], 100, 60)
            send_urgent(a.url, first_urgent)
            wait_for(
                lambda: {e["id"] for e in outcomes_in_order(*logs)} >= set(first_urgent),
                60,
                "the first urgent notifications' outcomes",
            )
            a.signal(signal.SIGTERM)  # a restart: its partitions move to b, then back
            assert a.wait(30) == 0
            with ServeProcess(env_c, tmp_path / "c.log") as c:
                c.wait_ready()
                send_urgent(b.url, second_urgent)
                group = env_a["CONSUMER_GROUP"]
                wait_committed(kafka_bootstrap, group, topic, 180)
                wait_read_to_the_end(kafka_bootstrap, group, f"{topic}.urgent", 60)

    events = outcomes_in_order(*logs)
    backlog_ids = {f"b-{i}" for i in range(n)}
    assert_each_once(events, backlog_ids | set(first_urgent) | set(second_urgent))
    for message_id in first_urgent + second_urgent:
        # Sent while thousands of backlog notifications waited; out before the last 20%.
        assert backlog_done_before(events, message_id, "b") < n * 0.8, message_id


def test_a_steady_urgent_flood_does_not_starve_the_main_lane(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic, urgent_topic = new_topic(1), new_topic(1)
    flood, main = 8000, 300
    produce(
        kafka_bootstrap,
        urgent_topic,
        (notification(f"u-{i}", f"vip-{i % 500}", priority=3) for i in range(flood)),
    )
    env = serve_env(
        kafka_bootstrap, redis_addr, topic, tmp_path, "flood", URGENT_TOPIC=urgent_topic, **SLOW
    )
    with ServeProcess(env, tmp_path / "serve.log") as process:
        process.wait_ready()
        wait_lines(Path(env["OUTCOME_LOG"]), 500, 60)  # the flood is on
        produce(kafka_bootstrap, topic, backlog(main, prefix="m"))
        wait_read_to_the_end(kafka_bootstrap, env["CONSUMER_GROUP"], urgent_topic, 120)
        wait_committed(kafka_bootstrap, env["CONSUMER_GROUP"], topic, 60)
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0

    events = outcomes_in_order(Path(env["OUTCOME_LOG"]))
    assert_each_once(events, {f"u-{i}" for i in range(flood)} | {f"m-{i}" for i in range(main)})
    order = "".join(event["id"][0] for event in events)
    # The main lane progresses during the flood (see source/kafka/lanes.py and
    # source/intake.py): all of it is out before the flood's last quarter.
    last_quarter = [i for i, kind in enumerate(order) if kind == "u"][int(flood * 0.75)]
    assert order[:last_quarter].count("m") == main, order[:last_quarter].count("m")
