"""Unit tests of the liveness parts: error descriptions, stuck partitions, the group
monitor's arithmetic and the Redis refusal classification."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError, KafkaTimeoutError, UnsupportedCodecError

from pushtrio.source.kafka.errors import StuckPartitions, describe, release_undecodable
from pushtrio.source.kafka.monitor import GroupMonitor, _Round
from pushtrio.stores.redis_client import is_misconfiguration

TP = TopicPartition("t", 3)


def test_describe_fills_in_empty_kafka_errors() -> None:
    assert describe(KafkaTimeoutError()) == (
        "KafkaTimeoutError: the brokers did not answer in time"
    )
    assert "None" not in describe(KafkaConnectionError())
    assert describe(ValueError("bad")) == "ValueError: bad"


class _Part:
    def __init__(self) -> None:
        self.topic_partition = TP
        self.next_fetch_offset = 42
        self.drained = False

    def drain(self) -> None:
        self.drained = True


class _Consumer:
    def __init__(self, part: _Part | None) -> None:
        self._fetcher = SimpleNamespace(
            _next_partition_records=part, _next_in_line_exception_metadata=None
        )
        self.paused: list[TopicPartition] = []
        self.resumed: list[TopicPartition] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.extend(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.resumed.extend(tps)

    def assignment(self) -> set[TopicPartition]:
        return {TP}


def test_release_undecodable_drops_the_broken_batch_and_names_its_place() -> None:
    part = _Part()
    consumer = _Consumer(part)
    assert release_undecodable(consumer) == (TP, 42)
    assert part.drained
    assert consumer._fetcher._next_partition_records is None
    assert consumer.seeks == [(TP, 42)]


def test_release_undecodable_without_fetcher_state_returns_none() -> None:
    assert release_undecodable(_Consumer(None)) is None
    assert release_undecodable(object()) is None


def test_a_stuck_partition_is_paused_reported_and_cleared_once_read_past() -> None:
    stuck = StuckPartitions()
    consumer = _Consumer(_Part())
    assert stuck.stop(consumer, UnsupportedCodecError("lz4 missing"))
    assert consumer.paused == [TP]
    assert ("t", 3) in stuck
    assert ("t.retry.1", 3) not in stuck
    report = stuck.report()
    assert report["t/3"]["offset"] == 42
    assert "UnsupportedCodecError" in report["t/3"]["error"]
    stuck.retry(consumer, {TP: [SimpleNamespace(offset=41)]}, resume=True)
    assert ("t", 3) in stuck
    stuck.retry(consumer, {TP: [SimpleNamespace(offset=42)]}, resume=True)
    assert ("t", 3) not in stuck


def test_a_stuck_partition_is_resumed_when_its_retry_is_due(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pushtrio.source.kafka.errors as module

    now = [1000.0]
    monkeypatch.setattr("pushtrio.source.kafka.errors.time.monotonic", lambda: now[0])
    stuck = StuckPartitions()
    consumer = _Consumer(_Part())
    stuck.stop(consumer, UnsupportedCodecError("x"))
    stuck.retry(consumer, {}, resume=True)
    assert consumer.resumed == []
    now[0] += module.STUCK_RETRY_S
    stuck.retry(consumer, {}, resume=True)
    assert consumer.resumed == [TP]


def _monitor(monkeypatch: pytest.MonkeyPatch, now: list[float]) -> GroupMonitor:

    monkeypatch.setattr("pushtrio.source.kafka.monitor.time.monotonic", lambda: now[0])
    return GroupMonitor(["127.0.0.1:1"], "t", "g")


def test_monitor_lag_counts_every_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = _monitor(monkeypatch, [0.0])
    monitor._apply(_Round({0: (10, 10), 1: (10, 4), 2: (7, 0)}, topic_exists=True))
    assert monitor.lag() == 13


def test_monitor_reports_a_stall_only_when_records_wait_and_commits_do_not_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [0.0]
    monitor = _monitor(monkeypatch, now)
    monitor._apply(_Round({0: (10, 4), 1: (10, 10)}, topic_exists=True))
    now[0] = 31.0
    monitor._apply(_Round({0: (12, 4), 1: (12, 10)}, topic_exists=True))
    # Partition 1 just got records: waiting, but not for long yet.
    assert monitor.stalled({0, 1}, 30.0) == {0: 8}
    assert monitor.stalled({1}, 30.0) == {}
    now[0] = 32.0
    monitor._apply(_Round({0: (12, 5), 1: (12, 10)}, topic_exists=True))
    assert monitor.stalled({0, 1}, 30.0) == {}


def test_monitor_notices_a_missing_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monitor = _monitor(monkeypatch, [0.0])
    monitor._apply(_Round({}, topic_exists=False))
    assert not monitor.topic_exists
    assert monitor.lag() == 0


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (redis.exceptions.AuthenticationError("invalid username-password pair"), True),
        (redis.exceptions.NoPermissionError("NOPERM"), True),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key"), True),
        (redis.exceptions.ResponseError("DB index is out of range"), True),
        (redis.exceptions.ConnectionError("Connection refused"), False),
        (redis.exceptions.TimeoutError("Timeout reading"), False),
        (redis.exceptions.ResponseError("OOM command not allowed"), False),
    ],
)
def test_redis_refusals_are_told_from_outages(error: Any, refused: bool) -> None:
    assert is_misconfiguration(error) is refused


def test_monitor_says_missing_at_start_as_a_warning_and_deleted_as_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pushtrio.source.kafka.monitor")
    monitor = _monitor(monkeypatch, [0.0])
    missing, present = _Round({}, topic_exists=False), _Round({0: (1, 1)}, topic_exists=True)
    for result in (missing, missing, present, present, missing, missing):
        monitor._apply(result)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "topic t does not exist yet: waiting for it"),
        ("INFO", "topic t exists now"),
        ("ERROR", "topic t was deleted: nothing to read"),
    ]
