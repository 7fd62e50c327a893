"""Liveness and honesty of ``pushtrio serve`` as a process (issue 7, items 1-3).

- a batch the client cannot decode stops its partition visibly (health, log, lag)
  while the other partitions flow, and SIGTERM still ends the process;
- a reader thread stuck inside kafka-python does not keep the process alive;
- a wrong Redis password stops the instance before it joins the group; an
  unreachable Redis delays the join; a password revoked later makes the instance
  leave the group so that a healthy one drains its partitions.

Faults inside the child process come from ``tests/integration/faults/sitecustomize.py``.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from ..support.files import read_jsonl, tail
from ..support.kafka import (
    committed_offsets,
    end_offsets,
    group_members,
    kafka_producer,
    notification,
    produce_to_partitions,
    wait_committed,
)
from ..support.process import ServeProcess, serve_env
from ..support.waiting import wait_for
from .private_services import PrivateRedis, get_health, process_cpu_s, time_limit

pytestmark = pytest.mark.integration

FAULTS = Path(__file__).parent / "faults"
SHUTDOWN_TIMEOUT_S = 3
SHUTDOWN_SLACK_S = 8  # the reader thread's close grace (5 s) and process start-up


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, *, ready: bool = True) -> Iterator[ServeProcess]:
    """``pushtrio serve`` until the block ends (then stopped, SIGKILL after the slack)."""
    stop_timeout_s = SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S
    with ServeProcess(env, log, stop_timeout_s=stop_timeout_s) as process:
        if ready:
            process.wait_ready()
        yield process


def health_error(url: str) -> str:
    status, document = get_health(url)
    if not isinstance(document, dict):
        return f"{status}: {document}"
    errors = [
        f"{name}: {component.get('error')}"
        for name, component in document.get("components", {}).items()
        if isinstance(component, dict) and component.get("error")
    ]
    return f"{status} " + "; ".join(errors)


def metrics(url: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{url}/metrics", timeout=5).json()
    return document


def sigterm_exit_s(process: ServeProcess) -> tuple[float, int]:
    started = time.monotonic()
    process.signal(signal.SIGTERM)
    status = process.wait(SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S + 20)
    return time.monotonic() - started, status


def log_lines(path: Path, text: str) -> list[str]:
    return [line for line in path.read_text(errors="replace").splitlines() if text in line]


def test_undecodable_batch_stops_its_partition_visibly(
    kafka_bootstrap: str, redis_addr: str, new_topic: Any, tmp_path: Path
) -> None:
    """lz4 batches on partition 0 with no lz4 library: the rest flows, health says why."""
    with time_limit(120):
        topic = new_topic(3)
        plain = [(p, *notification(f"plain-{p}-{i}", f"u{i}")) for p in (1, 2) for i in range(50)]
        produce_to_partitions(kafka_bootstrap, topic, plain)
        producer = kafka_producer(kafka_bootstrap, compression_type="lz4", linger_ms=200)
        for i in range(20):
            key, value = notification(f"lz4-{i}", f"u{i}")
            producer.send(topic, key=key, value=value, partition=0)
        producer.flush(30)
        producer.close(10)
        env = serve_env(
            kafka_bootstrap,
            redis_addr,
            topic,
            tmp_path,
            "nolz4",
            PYTHONPATH=str(FAULTS),
            PUSHTRIO_FAULT_NO_CODEC="lz4",
            SHUTDOWN_TIMEOUT=f"{SHUTDOWN_TIMEOUT_S}s",
        )
        log = tmp_path / "nolz4.log"
        group = env["CONSUMER_GROUP"]
        with serving(env, log) as process:
            url = process.url
            wait_for(
                lambda: (
                    {p: o for p, o in committed_offsets(kafka_bootstrap, group).items() if p}
                    == {1: 50, 2: 50}
                ),
                60,
                "partitions 1 and 2 committed",
            )
            wait_for(lambda: "partition 0" in health_error(url), 30, "the stop on /health")
            status, _ = get_health(url)
            error = health_error(url)
            assert status == 503, error
            # kafka-python may write a first record alone, uncompressed: the stop is
            # where the first compressed batch starts, and nothing passes beyond it.
            stop = committed_offsets(kafka_bootstrap, group).get(0, 0)
            assert stop < 20
            assert f"partition 0 stopped at offset {stop}:" in error
            assert "UnsupportedCodecError" in error
            stopped = log_lines(log, f"partition 0 stopped at offset {stop}:")
            assert len(stopped) == 1, tail(log)
            assert topic in stopped[0]
            wait_for(
                lambda: metrics(url)["consumer_lag"] == 20 - stop,
                20,
                "lag counts the stuck partition",
            )
            cpu_before = process_cpu_s(process.proc.pid)
            time.sleep(3)  # measuring CPU over a span, not synchronising
            busy = (process_cpu_s(process.proc.pid) - cpu_before) / 3
            assert busy < 0.5, f"the stuck partition costs {busy:.0%} of a core"
            took, status = sigterm_exit_s(process)
        print(f"\nstuck partition: {busy:.1%} of a core; exit {status} {took:.1f}s after SIGTERM")
        assert status == 0
        assert took < SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S
        assert committed_offsets(kafka_bootstrap, group).get(0, 0) == stop
        delivered = {e["id"] for e in read_jsonl(Path(env["OUTCOME_LOG"]))}
        plain_ids = {f"plain-{p}-{i}" for p in (1, 2) for i in range(50)}
        assert delivered == plain_ids | {f"lz4-{i}" for i in range(stop)}


def test_sigterm_ends_a_process_whose_reader_is_stuck_in_poll(
    kafka_bootstrap: str, redis_addr: str, new_topic: Any, tmp_path: Path
) -> None:
    with time_limit(90):
        topic = new_topic(2)
        flag = tmp_path / "hang-now"
        env = serve_env(
            kafka_bootstrap,
            redis_addr,
            topic,
            tmp_path,
            "hang",
            PYTHONPATH=str(FAULTS),
            PUSHTRIO_FAULT_HANG_POLL=str(flag),
            SHUTDOWN_TIMEOUT=f"{SHUTDOWN_TIMEOUT_S}s",
        )
        log = tmp_path / "hang.log"
        with serving(env, log) as process:
            wait_for(lambda: log_lines(log, "partitions assigned"), 30, "partitions assigned")
            flag.touch()
            hung = Path(f"{flag}.hung")
            wait_for(hung.exists, 10, "the reader thread stuck in poll")
            took, status = sigterm_exit_s(process)
        print(f"\nreader stuck in poll: exit {status} {took:.1f}s after SIGTERM")
        assert status == 0, tail(log)
        assert took < SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S, tail(log)
        assert log_lines(log, "Kafka reader did not stop"), tail(log)


def _redis_with_password(tmp_path: Path, password: str) -> PrivateRedis:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    client = server.client()
    client.config_set("requirepass", password)
    client.close()
    return server


def test_wrong_redis_password_exits_before_joining_the_group(
    kafka_bootstrap: str, new_topic: Any, tmp_path: Path
) -> None:
    with time_limit(60):
        topic = new_topic(2)
        server = _redis_with_password(tmp_path, "right")
        try:
            env = serve_env(
                kafka_bootstrap, server.addr, topic, tmp_path, "badpw", REDIS_PASSWORD="wrong"
            )
            log = tmp_path / "badpw.log"
            with serving(env, log, ready=False) as process:
                status = process.wait(30)
        finally:
            server.close()
        text = log.read_text()
        assert status == 1, text
        errors = [line for line in text.splitlines() if '"level": "error"' in line]
        assert len(errors) == 1, text
        assert "cannot start" in errors[0]
        assert "AuthenticationError" in errors[0]
        assert "partitions assigned" not in text
        assert " ready on " not in text
        state, members = group_members(kafka_bootstrap, env["CONSUMER_GROUP"])
        assert members == {}, state


def test_unreachable_redis_delays_the_join_until_it_answers(
    kafka_bootstrap: str, new_topic: Any, tmp_path: Path
) -> None:
    with time_limit(90):
        topic = new_topic(2)
        produce_to_partitions(
            kafka_bootstrap,
            topic,
            [(i % 2, *notification(f"late-{i}", f"u{i}")) for i in range(40)],
        )
        server = PrivateRedis(tmp_path / "redis")  # not started yet: nothing listens
        env = serve_env(kafka_bootstrap, server.addr, topic, tmp_path, "late")
        log = tmp_path / "late.log"
        try:
            with serving(env, log, ready=False) as process:
                wait_for(lambda: len(log_lines(log, "not answering")) >= 2, 30, "two warnings")
                assert "partitions assigned" not in log.read_text()
                _, members = group_members(kafka_bootstrap, env["CONSUMER_GROUP"])
                assert members == {}
                assert all("redis" in line for line in log_lines(log, "not answering"))
                server.start()
                process.wait_ready(60)
                wait_committed(kafka_bootstrap, env["CONSUMER_GROUP"], topic, 60)
                _, status = sigterm_exit_s(process)
            assert status == 0
        finally:
            server.close()
        outcomes = read_jsonl(Path(env["OUTCOME_LOG"]))
        assert sorted(e["id"] for e in outcomes) == sorted(f"late-{i}" for i in range(40))


def test_revoked_password_releases_partitions_to_a_healthy_instance(
    kafka_bootstrap: str, redis_addr: str, new_topic: Any, tmp_path: Path
) -> None:
    """Two instances, one on a Redis whose password is changed: the other drains all."""
    with time_limit(150):
        topic = new_topic(6)
        n = 6000
        server = _redis_with_password(tmp_path, "right")
        common = {"RELEASE_AFTER": "3s", "PROVIDER_LATENCY": "20ms", "WORKER_COUNT": "2"}
        good_env = serve_env(kafka_bootstrap, redis_addr, topic, tmp_path, "good", **common)
        bad_env = serve_env(
            kafka_bootstrap, server.addr, topic, tmp_path, "bad", REDIS_PASSWORD="right", **common
        )
        group = good_env["CONSUMER_GROUP"]
        try:
            with (
                serving(bad_env, tmp_path / "bad.log") as bad,
                serving(good_env, tmp_path / "good.log") as good,
            ):
                wait_for(
                    lambda: (
                        sum(bool(p) for p in group_members(kafka_bootstrap, group)[1].values()) == 2
                    ),
                    60,
                    "both instances own partitions",
                )
                admin = redis.Redis(host="127.0.0.1", port=server.port, password="right")
                admin.config_set("requirepass", "changed")
                admin.client_kill_filter(_type="normal", skipme=True)
                admin.close()
                produce_to_partitions(
                    kafka_bootstrap,
                    topic,
                    [(i % 6, *notification(f"r-{i}", f"u{i % 500}")) for i in range(n)],
                )
                wait_for(
                    lambda: "AuthenticationError" in health_error(bad.url),
                    30,
                    "the refusal on /health",
                )
                wait_for(
                    lambda: len(group_members(kafka_bootstrap, group)[1]) == 1,
                    30,
                    "the bad instance left the group",
                )
                drained = wait_for(
                    lambda: (
                        committed_offsets(kafka_bootstrap, group)
                        == end_offsets(kafka_bootstrap, topic)
                    ),
                    60,
                    "committed = end",
                )
                assert get_health(bad.url)[0] == 503
                left = log_lines(tmp_path / "bad.log", "left the consumer group")
                assert left, tail(tmp_path / "bad.log")
                for process in (good, bad):
                    _, status = sigterm_exit_s(process)
                    assert status == 0
        finally:
            server.close()
        print(f"\nrevoked password: the healthy instance drained all in {drained:.1f}s")
        ids = [e["id"] for e in read_jsonl(Path(good_env["OUTCOME_LOG"]))]
        ids += [e["id"] for e in read_jsonl(Path(bad_env["OUTCOME_LOG"]))]
        assert set(ids) == {f"r-{i}" for i in range(n)}


def test_a_pipeline_that_stops_moving_is_reported_and_still_stops_on_sigterm(
    kafka_bootstrap: str, redis_addr: str, new_topic: Any, tmp_path: Path
) -> None:
    """Providers that never answer: no error anywhere, but lag and no commit is a stall."""
    with time_limit(120):
        topic = new_topic(1)
        produce_to_partitions(
            kafka_bootstrap, topic, [(0, *notification(f"s-{i}", f"u{i}")) for i in range(5)]
        )
        env = serve_env(
            kafka_bootstrap,
            redis_addr,
            topic,
            tmp_path,
            "stall",
            PROVIDER_LATENCY="10m",
            PROVIDER_TIMEOUT="20m",
            SHUTDOWN_TIMEOUT=f"{SHUTDOWN_TIMEOUT_S}s",
        )
        log = tmp_path / "stall.log"
        with serving(env, log) as process:
            url = process.url
            assert get_health(url)[0] == 200, health_error(url)
            took = wait_for(lambda: "stalled" in health_error(url), 60, "a stall on /health")
            status, document = get_health(url)
            assert status == 503
            assert (
                "partitions [0] have 5 records waiting" in document["components"]["kafka"]["error"]
            )
            exit_s, exit_status = sigterm_exit_s(process)
        print(f"\nstall reported {took:.1f}s after start; exit {exit_s:.1f}s after SIGTERM")
        assert exit_status == 0, tail(log)
        assert exit_s < SHUTDOWN_TIMEOUT_S + SHUTDOWN_SLACK_S
        assert committed_offsets(kafka_bootstrap, env["CONSUMER_GROUP"]).get(0, 0) == 0
