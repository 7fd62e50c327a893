"""Replaying dead letters on the real broker: the reader, and ``pushtrio replay`` end to end."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from kafka.admin import KafkaAdminClient

from pushtrio.contract.dead_letter import DEAD_LETTER_MAX_VALUE_BYTES, REPLAYED_FROM, dead_letter
from pushtrio.contract.outcome import Outcome, OutcomeKind
from pushtrio.contract.records import ORIGIN_HEADER, Message, Record
from pushtrio.pipeline.replay import ReplayFilter, replay_letters
from pushtrio.source.kafka.letters import open_kafka_letters
from pushtrio.source.kafka.publisher import KafkaPublisher

from ..support.files import read_jsonl, wait_lines
from ..support.kafka import end_offsets, kafka_producer, notification, produce, read_all
from ..support.kafka import wait_committed as wait_group_committed
from ..support.ports import closed_port
from ..support.process import ServeProcess, serve_env

pytestmark = pytest.mark.integration

Placed = tuple[int, Message, int | None]
"""A letter to write: partition, (key, value, headers), timestamp (None: now)."""


def write_letters(bootstrap: str, topic: str, letters: Sequence[Placed]) -> None:
    """Write dead letters as the pipeline would, each to the partition it names."""
    producer = kafka_producer(bootstrap, linger_ms=5, max_request_size=2 * 1024 * 1024)
    try:
        for partition, (key, value, headers), timestamp_ms in letters:
            producer.send(
                topic,
                key=key,
                value=value,
                headers=headers,
                partition=partition,
                timestamp_ms=timestamp_ms,
            )
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)


def original(i: int, value: bytes | None = None) -> Record:
    """A record of the main topic as the pipeline read it, with a header of its own."""
    key, default = notification(f"n-{i}", f"user-{i}")
    return Record(
        "orders",
        0,
        1000 + i,
        default if value is None else value,
        0,
        key,
        headers=(("trace", f"t-{i}".encode()),),
    )


def letter(record: Record, kind: OutcomeKind = OutcomeKind.FAILED) -> Message:
    outcome = Outcome(kind, f"n-{record.offset - 1000}", error="unregistered token", attempts=1)
    return dead_letter(record, outcome)


def replayed_from(headers: Sequence[tuple[str, bytes]]) -> list[Any]:
    [value] = [v for k, v in headers if k == REPLAYED_FROM]
    found: list[Any] = orjson.loads(value)
    return found


async def test_replay_restores_each_record_and_reads_only_up_to_the_start_end(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    dlq, topic = new_topic(2), new_topic(1)
    records = [original(i) for i in range(6)]
    records[3] = original(3, b"x" * (DEAD_LETTER_MAX_VALUE_BYTES + 1))
    records[4] = Record("orders", 0, 1004, None, 0, b"user-4", headers=(("trace", b"t-4"),))
    placed: list[Placed] = [(i % 2, letter(r), None) for i, r in enumerate(records)]
    await trio.to_thread.run_sync(write_letters, kafka_bootstrap, dlq, placed)
    publisher = KafkaPublisher([kafka_bootstrap])
    try:
        async with open_kafka_letters([kafka_bootstrap], dlq, None) as letters:
            assert letters.total == 6
            # Letters written once the replay runs (a replayed one failing again) wait.
            later = [(0, letter(original(9)), None), (1, letter(original(10)), None)]
            await trio.to_thread.run_sync(write_letters, kafka_bootstrap, dlq, later)
            report = await replay_letters(letters, publisher, topic, ReplayFilter())
    finally:
        await publisher.aclose()

    assert (report.scanned, report.replayed, report.skipped) == (6, 5, 1)
    # Partition by partition, in offset order.
    assert [(x.partition, x.offset) for x in report.letters] == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 2),
    ]
    assert [(x.partition, x.offset, x.id) for x in report.skipped_letters] == [(1, 1, "n-3")]
    written = await trio.to_thread.run_sync(read_all, kafka_bootstrap, topic, 5)
    assert len(written) == 5
    by_letter = {tuple(replayed_from(r.headers)): r for r in written}
    assert set(by_letter) == {(dlq, x.partition, x.offset) for x in report.letters}
    for x in report.letters:
        source = records[int(x.id.removeprefix("n-"))]
        again = by_letter[(dlq, x.partition, x.offset)]
        assert (again.key, again.value) == (source.key, source.value)
        ours = (REPLAYED_FROM, ORIGIN_HEADER)
        assert [h for h in again.headers if h[0] not in ours] == list(source.headers)


async def test_since_starts_at_the_time_and_a_limit_takes_what_its_dry_run_showed(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    dlq, topic = new_topic(1), new_topic(1)
    now_ms = int(time.time() * 1000)
    old: list[Placed] = [(0, letter(original(i)), now_ms - 7_200_000) for i in range(4)]
    new: list[Placed] = [(0, letter(original(i)), now_ms) for i in range(4, 9)]
    await trio.to_thread.run_sync(write_letters, kafka_bootstrap, dlq, old + new)
    since = ReplayFilter(since_ms=now_ms - 3_600_000, limit=3)
    publisher = KafkaPublisher([kafka_bootstrap])
    try:
        async with open_kafka_letters([kafka_bootstrap], dlq, since.since_ms) as letters:
            assert letters.total == 5, "the read starts at the first letter that recent"
            dry_run = dataclasses.replace(since, dry_run=True)
            dry = await replay_letters(letters, publisher, topic, dry_run)
        async with open_kafka_letters([kafka_bootstrap], dlq, since.since_ms) as letters:
            real = await replay_letters(letters, publisher, topic, since)
    finally:
        await publisher.aclose()
    assert [x.id for x in dry.letters] == [x.id for x in real.letters] == ["n-4", "n-5", "n-6"]
    assert (dry.replayed, real.replayed, real.scanned) == (3, 3, 3)
    written = await trio.to_thread.run_sync(read_all, kafka_bootstrap, topic, 3)
    assert sorted(replayed_from(r.headers)[2] for r in written) == [4, 5, 6]


async def test_a_missing_dead_letter_topic_is_empty_and_stays_missing(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    missing = f"missing-{new_topic(1)}"
    async with open_kafka_letters([kafka_bootstrap], missing, None) as letters:
        assert letters.total == 0
        assert await letters.next_chunk() is None
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert missing not in admin.list_topics()
    finally:
        admin.close()


def pushtrio_replay(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """``python -m pushtrio replay`` as users run it, with ``env`` on top of ours."""
    return subprocess.run(
        [sys.executable, "-m", "pushtrio", "replay", *arguments],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_replay_without_a_broker_exits_1() -> None:
    # In a process of its own: kafka-python leaks the socket of a failed bootstrap.
    with closed_port() as port:
        started = time.monotonic()
        result = pushtrio_replay({"KAFKA_BROKERS": f"127.0.0.1:{port}"}, "--dry-run")
        took = time.monotonic() - started
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("pushtrio replay: cannot read notifications.dlq: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert took < 30


# -- the whole story, with processes ---------------------------------------------------


def journal_ids(path: Path) -> Counter[str]:
    """Ids the mock providers accepted (``<provider> <id>`` lines), with their counts."""
    return Counter(line.split()[1] for line in path.read_text().splitlines() if line)


def test_replay_of_failed_letters_after_the_provider_is_fixed(
    kafka_bootstrap: str, redis_addr: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic, dlq = new_topic(3), new_topic(2)
    n_fcm, n_apns, n_invalid = 400, 100, 10
    fcm_ids = {f"fcm-{i}" for i in range(n_fcm)}
    records = [notification(f"fcm-{i}", f"user-{i % 40}", provider="fcm") for i in range(n_fcm)]
    records += [notification(f"apns-{i}", f"user-{i}", provider="apns") for i in range(n_apns)]
    records += [(b"bad", b"not json")] * n_invalid
    produce(kafka_bootstrap, topic, records)
    common = {"DLQ_TOPIC": dlq, "RETRY_ATTEMPTS": "0"}
    broken = serve_env(
        kafka_bootstrap,
        redis_addr,
        topic,
        tmp_path,
        "broken",
        PROVIDER_FCM_SUCCESS_RATE="0",
        # No breaker to park them: here every FCM notification is to fail at once.
        BREAKER_MIN_CALLS="100000",
        **common,
    )
    with ServeProcess(broken, tmp_path / "broken.log") as first:
        first.wait_ready()
        wait_group_committed(kafka_bootstrap, broken["CONSUMER_GROUP"], topic, 120)
        first.signal(signal.SIGTERM)
        assert first.wait(30) == 0
    outcomes = Counter(e["event"] for e in read_jsonl(Path(broken["OUTCOME_LOG"])))
    assert outcomes == {"failed": n_fcm, "delivered": n_apns, "invalid": n_invalid}
    letters_at_start = end_offsets(kafka_bootstrap, dlq)
    assert sum(letters_at_start.values()) == n_fcm + n_invalid

    fixed = serve_env(kafka_bootstrap, redis_addr, topic, tmp_path, "fixed", **common)
    fixed_outcomes, fixed_journal = Path(fixed["OUTCOME_LOG"]), Path(fixed["MOCK_PROVIDER_JOURNAL"])
    cli_env = {"KAFKA_BROKERS": kafka_bootstrap, "KAFKA_TOPIC": topic, "DLQ_TOPIC": dlq}
    with ServeProcess(fixed, tmp_path / "fixed.log") as second:
        second.wait_ready()

        dry = pushtrio_replay(cli_env, "--outcome", "failed", "--dry-run", "--limit", "3")
        assert dry.returncode == 0, dry.stderr
        assert f"would replay 3 letters of {dlq} to {topic}" in dry.stdout
        assert sum(f"fcm-{i} " in dry.stdout for i in range(n_fcm)) == 3, dry.stdout

        started = time.monotonic()
        replay = pushtrio_replay(cli_env, "--outcome", "failed", "--json")
        took = time.monotonic() - started
        assert replay.returncode == 0, replay.stderr
        report = orjson.loads(replay.stdout)
        assert (report["scanned"], report["replayed"], report["skipped"]) == (
            n_fcm + n_invalid,
            n_fcm,
            0,
        )
        wait_lines(fixed_outcomes, n_fcm, 60)
        delivered = Counter(e["id"] for e in read_jsonl(fixed_outcomes))
        assert delivered == Counter(fcm_ids), "each failed notification delivered once"
        assert journal_ids(fixed_journal) == Counter(fcm_ids)

        # Again, through the running service this time: dedup turns each into a duplicate.
        response = httpx.post(f"{second.url}/dlq/replay", json={"outcome": "failed"}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["replayed"] == n_fcm
        wait_lines(fixed_outcomes, 2 * n_fcm, 60)
        events = read_jsonl(fixed_outcomes)
        assert Counter(e["event"] for e in events) == {"delivered": n_fcm, "duplicate": n_fcm}
        assert journal_ids(fixed_journal) == Counter(fcm_ids), "a replay sent twice"
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    print(f"\nreplay: {n_fcm} of {n_fcm + n_invalid} letters replayed by the CLI in {took:.2f}s")

    assert end_offsets(kafka_bootstrap, dlq) == letters_at_start, "a replay made new letters"
    total = len(records) + 2 * n_fcm
    main_topic = read_all(kafka_bootstrap, topic, total)
    replays = [r for r in main_topic if any(k == REPLAYED_FROM for k, _ in r.headers or ())]
    sources = Counter(tuple(replayed_from(r.headers)) for r in replays)
    assert len(replays) == 2 * n_fcm
    assert set(sources.values()) == {2}, "each letter replayed once per run"
    assert {source[0] for source in sources} == {dlq}
