"""``pushtrio serve`` as real processes: kill -9, two instances in a group, SIGTERM."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from ..support.files import read_jsonl, wait_lines
from ..support.kafka import notification, produce, wait_committed
from ..support.process import ServeProcess, serve_env
from ..support.waiting import wait_for

pytestmark = pytest.mark.integration


def run_until_committed(env: dict[str, str], log: Path, kafka: str, topic: str) -> None:
    """Serve until the group's commits reach the end of ``topic``, then stop with SIGTERM."""
    with ServeProcess(env, log) as process:
        process.wait_ready()
        wait_committed(kafka, env["CONSUMER_GROUP"], topic, 180)
        process.signal(signal.SIGTERM)
        assert process.wait(30) == 0


def accepted_ids(journal: Path) -> Counter[str]:
    return Counter(line.split()[1] for line in journal.read_text().splitlines() if line)


def test_kill_9_then_restart_loses_nothing(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(3)
    n = 20_000
    produce(kafka_bootstrap, topic, (notification(f"k-{i}", f"user-{i % 2000}") for i in range(n)))
    env = serve_env(kafka_bootstrap, redis_addr, topic, tmp_path, "run")
    outcomes = Path(env["OUTCOME_LOG"])

    with ServeProcess(env, tmp_path / "first.log") as first:
        first.wait_ready()
        wait_lines(outcomes, 5_000, 120)
        first.kill()  # SIGKILL: no chance to commit or clean up
    assert first.proc.returncode == -signal.SIGKILL
    seen_before_restart = len(read_jsonl(outcomes))
    assert seen_before_restart < n, "the kill came too late to test anything"

    run_until_committed(env, tmp_path / "second.log", kafka_bootstrap, topic)

    events = read_jsonl(outcomes)
    ids = {f"k-{i}" for i in range(n)}
    assert {e["id"] for e in events} == ids, "a message has no outcome"
    assert {e["event"] for e in events} <= {"delivered", "duplicate"}
    delivered = Counter(e["id"] for e in events if e["event"] == "delivered")
    assert max(delivered.values()) == 1, "an outcome says delivered twice"
    # Every message reached the provider (a `duplicate` outcome after the restart
    # means the first run delivered and recorded it, but died before logging it).
    accepted = accepted_ids(Path(env["MOCK_PROVIDER_JOURNAL"]))
    assert set(accepted) == ids
    twice = sorted(i for i, c in accepted.items() if c > 1)
    # Only those caught between a provider's acceptance and the dedup record can be
    # delivered twice: at most what was in flight at the instant of the kill.
    print(
        f"\nkill -9: {seen_before_restart} outcomes before the kill; "
        f"{len(twice)} of {n} ids accepted twice by the provider"
    )
    assert len(twice) <= int(env["MAX_QUEUE_SIZE"])


def assigned(process: ServeProcess) -> list[int]:
    health = httpx.get(f"{process.url}/health", timeout=5).json()
    return list(health["components"]["kafka"]["assigned_partitions"])


def test_two_instances_split_the_work_and_share_the_limit(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(6)
    extra = {"RATE_LIMIT_PER_USER": "10", "RATE_LIMIT_WINDOW": "1h"}
    env_a = serve_env(kafka_bootstrap, redis_addr, topic, tmp_path, "a", **extra)
    env_b = serve_env(kafka_bootstrap, redis_addr, topic, tmp_path, "b", **extra)
    with ServeProcess(env_a, tmp_path / "a.log") as a, ServeProcess(env_b, tmp_path / "b.log") as b:
        a.wait_ready()
        b.wait_ready()

        def split() -> bool:
            parts_a, parts_b = assigned(a), assigned(b)
            return bool(parts_a and parts_b and sorted(parts_a + parts_b) == list(range(6)))

        wait_for(split, 60, "the group to settle on a split of the 6 partitions", every_s=0.1)

        n, users = 6000, 300
        records = (notification(f"s-{i}", f"user-{i % users}") for i in range(n))
        produce(kafka_bootstrap, topic, records)
        wait_committed(kafka_bootstrap, env_a["CONSUMER_GROUP"], topic, 120)
        for process in (a, b):
            process.signal(signal.SIGTERM)
            assert process.wait(30) == 0

    for log in (tmp_path / "a.log", tmp_path / "b.log"):
        lines = log.read_text().splitlines()
        # A normal start and a rebalance are not errors, and say so once, not per retry.
        assert [line for line in lines if '"level": "error"' in line] == []
        assert sum("commit failed" in line for line in lines) <= 2, "\n".join(lines)
    events_a = read_jsonl(Path(env_a["OUTCOME_LOG"]))
    events_b = read_jsonl(Path(env_b["OUTCOME_LOG"]))
    assert events_a, "instance b did all the work"
    assert events_b, "instance a did all the work"
    events = events_a + events_b
    assert len(events) == n
    assert {e["id"] for e in events} == {f"s-{i}" for i in range(n)}
    per_user = Counter(e["user_id"] for e in events if e["event"] == "delivered")
    assert set(per_user.values()) == {10}
    assert len(per_user) == users
    assert Counter(e["event"] for e in events) == {"delivered": 3000, "rate_limited": 3000}


def test_sigterm_under_load_exits_cleanly_and_restart_finishes(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(3)
    n = 20_000
    produce(kafka_bootstrap, topic, (notification(f"t-{i}", f"user-{i % 500}") for i in range(n)))
    env = serve_env(kafka_bootstrap, redis_addr, topic, tmp_path, "run")
    outcomes = Path(env["OUTCOME_LOG"])

    with ServeProcess(env, tmp_path / "first.log") as first:
        first.wait_ready()
        wait_lines(outcomes, 3_000, 120)
        first.signal(signal.SIGTERM)
        started = time.monotonic()
        assert first.wait(30) == 0
        took = time.monotonic() - started
    assert took < 10 + 2, f"shutdown took {took:.1f}s, beyond SHUTDOWN_TIMEOUT"
    assert len(read_jsonl(outcomes)) < n

    run_until_committed(env, tmp_path / "second.log", kafka_bootstrap, topic)

    events = read_jsonl(outcomes)
    assert {e["id"] for e in events} == {f"t-{i}" for i in range(n)}
    # A graceful stop commits everything it finished: nothing is processed twice.
    assert len(events) == n
