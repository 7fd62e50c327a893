"""Delay topics: the headers a waiting record carries, what the scheduler decides,
and how the Kafka reader holds records until they are due."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from pushtrio.contract.delays import DelayTopics, Step, StepKind, delayed, due_ms, waiting
from pushtrio.contract.notification import Notification
from pushtrio.contract.outcome import DeviceCounts, Outcome, OutcomeKind
from pushtrio.contract.records import ORIGIN_HEADER, Record
from pushtrio.pipeline.breaker import BreakerOptions, CircuitBreaker
from pushtrio.pipeline.policy import MAX_RETRY_AFTER_S, PARK_AGAIN_S, Scheduler, SchedulerOptions
from pushtrio.source.kafka.fetcher_fix import release_parked
from pushtrio.source.kafka.held import HeldRecords
from pushtrio.source.kafka.topics import stray_tiers

TOPICS = DelayTopics("orders", retry_attempts=3, retry_delay_s=1.0)
NOTE = Notification(id="n-1", user_id="u1", provider="fcm")
ORIGINAL = Record("orders", 2, 40, b"{}", 0, b"k", headers=(("trace", b"t"),))


def scheduler(now: list[int], **changes: object) -> Scheduler:
    options = {"defer": True, "defer_max_s": 60.0, "max_park_s": 600.0, **changes}
    return Scheduler(
        SchedulerOptions(TOPICS, **options),  # type: ignore[arg-type]
        clock=lambda: now[0],
    )


def as_record(step: Step, offset: int = 0) -> Record:
    """The record the step writes, as read back from its topic."""
    key, value, headers = step.message
    return Record(step.topic, 0, offset, value, 0, key, headers=tuple(headers))


def test_the_topics_are_the_tiers_then_park_then_defer() -> None:
    assert TOPICS.all() == [
        "orders.retry.1",
        "orders.retry.2",
        "orders.retry.3",
        "orders.park",
        "orders.defer",
    ]


def test_a_main_topic_record_waits_for_nothing() -> None:
    assert waiting(ORIGINAL).attempts == 0
    assert due_ms(ORIGINAL) == 0


def test_a_delayed_record_keeps_key_value_and_own_headers_and_replaces_its_state() -> None:
    first = Record("orders", 2, 40, b"{}", 0, b"k", headers=(("trace", b"t"),))
    key, value, headers = delayed(first, attempts=1, due=5000, reason="503")
    again = Record("orders.retry.1", 0, 7, value, 0, key, headers=tuple(headers))
    key2, value2, headers2 = delayed(again, attempts=2, due=9000, reason="timeout")
    assert (key2, value2) == (b"k", b"{}")
    names = [name for name, _ in headers2]
    assert names.count("pushtrio-attempts") == 1
    assert ("trace", b"t") in headers2
    state = dict(headers2)
    assert state["pushtrio-due"] == b"9000"
    assert state["pushtrio-reason"] == b"timeout"
    assert state[ORIGIN_HEADER] == b'["orders",2,40]'  # the first record, not the tier's


def test_a_transient_failure_goes_to_the_tier_of_its_attempt_until_none_is_left() -> None:
    now = [1_000_000]
    s = scheduler(now)
    step = s.after_failure(ORIGINAL, NOTE, 1, "503 unavailable", 0.0)
    assert isinstance(step, Step)
    assert (step.kind, step.topic, step.attempts) == (StepKind.RETRY_SCHEDULED, "orders.retry.1", 1)
    assert 1_000_500 <= step.due_ms <= 1_001_000  # 1 s, jittered x0.5-1.0
    tier3 = s.after_failure(as_record(step), NOTE, 3, "503 unavailable", 0.0)
    assert isinstance(tier3, Step)
    assert tier3.topic == "orders.retry.3"
    assert 1_002_000 <= tier3.due_ms <= 1_004_000
    final = s.after_failure(as_record(tier3), NOTE, 4, "503 unavailable", 0.0)
    assert isinstance(final, Outcome)
    assert (final.event, final.attempts, final.error) == (OutcomeKind.FAILED, 4, "503 unavailable")


def test_a_providers_retry_after_delays_the_retry_up_to_a_cap() -> None:
    now = [1_000_000]
    s = scheduler(now)
    step = s.after_failure(ORIGINAL, NOTE, 1, "QUOTA_EXCEEDED", 0.0, not_before_s=7.0)
    assert isinstance(step, Step)
    assert step.topic == "orders.retry.1"  # the tier of its attempt, due later
    assert step.due_ms == 1_007_000
    shorter = s.after_failure(ORIGINAL, NOTE, 1, "UNAVAILABLE", 0.0, not_before_s=0.1)
    assert isinstance(shorter, Step)
    assert 1_000_500 <= shorter.due_ms <= 1_001_000  # the tier's own delay wins
    capped = s.after_failure(ORIGINAL, NOTE, 1, "UNAVAILABLE", 0.0, not_before_s=86400.0)
    assert isinstance(capped, Step)
    assert capped.due_ms == 1_000_000 + int(MAX_RETRY_AFTER_S * 1000)


def test_the_last_failure_keeps_its_device_counts() -> None:
    s = scheduler([1_000_000])
    devices = DeviceCounts(accepted=0, failed=2, pruned=1)
    final = s.after_failure(ORIGINAL, NOTE, 4, "UNAVAILABLE", 0.0, devices=devices)
    assert isinstance(final, Outcome)
    assert final.devices == devices
    assert final.to_event()["devices"] == {"accepted": 0, "failed": 2, "pruned": 1}


def test_parking_waits_for_the_breaker_and_gives_up_after_max_park() -> None:
    now = [1_000_000]
    clock = [0.0]
    breaker = CircuitBreaker(
        "fcm", BreakerOptions(min_calls=1, open_for_s=30.0), clock=lambda: clock[0]
    )
    breaker.record(False)
    s = scheduler(now, max_park_s=100.0)
    parked = s.park(ORIGINAL, NOTE, breaker, 0.0)
    assert isinstance(parked, Step)
    assert (parked.kind, parked.topic, parked.attempts) == (StepKind.PARKED, "orders.park", 0)
    assert parked.due_ms == 1_030_000
    clock[0], now[0] = 30.0, 1_030_000  # half open, its probes taken: ask again soon
    again = s.park(as_record(parked), NOTE, breaker, 0.0, attempts=2)
    assert isinstance(again, Step)
    assert again.due_ms == now[0] + PARK_AGAIN_S * 1000
    assert again.attempts == 2
    now[0] = 1_100_001  # parked for more than 100 s since the first time
    final = s.park(as_record(again), NOTE, breaker, 0.0)
    assert isinstance(final, Outcome)
    assert final.event is OutcomeKind.FAILED
    assert final.attempts == 2
    assert "circuit breaker open" in final.error


def test_defer_waits_for_the_slot_within_defer_max_and_expiry() -> None:
    now = [1_000_000]
    s = scheduler(now, defer_max_s=10.0)
    step = s.defer(ORIGINAL, NOTE, 2.5, 0.0)
    assert isinstance(step, Step)
    assert (step.kind, step.topic, step.due_ms) == (StepKind.DEFERRED, "orders.defer", 1_002_500)
    now[0] = 1_009_000  # deferred again: 9 s after the first deferral, 2 s more is too long
    refused = s.defer(as_record(step), NOTE, 2.0, 0.0)
    assert isinstance(refused, Outcome)
    assert refused.event is OutcomeKind.RATE_LIMITED
    soon = datetime.fromtimestamp(1_001.0, UTC)
    expiring = Notification(id="n-2", user_id="u1", provider="fcm", expires_at=soon)
    now[0] = 1_000_000
    expired = s.defer(ORIGINAL, expiring, 2.0, 0.0)
    assert isinstance(expired, Outcome)
    assert expired.event is OutcomeKind.EXPIRED


def test_with_the_drop_policy_a_limited_notification_is_rate_limited() -> None:
    outcome = scheduler([0], defer=False).defer(ORIGINAL, NOTE, 1.0, 0.0)
    assert isinstance(outcome, Outcome)
    assert outcome.event is OutcomeKind.RATE_LIMITED


def tier_record(partition: int, offset: int, due: int, topic: str = "orders.retry.1") -> Record:
    return Record(
        topic, partition, offset, b"{}", 0, headers=(("pushtrio-due", str(due).encode()),)
    )


def test_held_records_pass_the_main_topic_and_release_each_partition_from_its_head() -> None:
    held = HeldRecords(["orders.retry.1"])
    main = Record("orders", 0, 1, b"{}", 0)
    records = [tier_record(0, 0, 100), tier_record(0, 1, 300), tier_record(1, 0, 200), main]
    assert held.hold(records) == [main]
    assert len(held) == 3
    assert held.release_due(now=50) == []
    assert held.waiting("orders.retry.1", 0)
    assert held.waiting("orders.retry.1", 1)
    assert [(r.partition, r.offset) for r in held.release_due(now=200)] == [(0, 0), (1, 0)]
    assert held.waiting("orders.retry.1", 0)
    assert not held.waiting("orders.retry.1", 1)
    assert len(held) == 1
    held.forget([("orders.retry.1", 0)])
    assert len(held) == 0
    assert not held.waiting("orders.retry.1", 0)


def test_a_head_not_yet_due_holds_back_an_earlier_due_record_behind_it() -> None:
    """Due order per partition is assumed (one delay per topic): jitter may put a
    slightly earlier due behind a later one, which then waits for the head."""
    held = HeldRecords(["orders.retry.1"])
    held.hold([tier_record(0, 0, 300), tier_record(0, 1, 100)])
    assert held.release_due(now=200) == []
    assert [r.offset for r in held.release_due(now=300)] == [0, 1]


@pytest.mark.parametrize("value", [b"soon", b"", None])
def test_a_malformed_or_null_state_header_is_ignored(value: bytes | None) -> None:
    headers = (("pushtrio-due", value), ("pushtrio-attempts", value))
    record = Record("orders.retry.1", 0, 0, b"{}", 0, headers=headers)  # type: ignore[arg-type]
    assert due_ms(record) == 0
    assert waiting(record).attempts == 0


class _Batch:
    def __init__(self, records: int) -> None:
        self.records = records

    def __bool__(self) -> bool:
        return self.records > 0


def test_an_exhausted_batch_in_line_is_cleared_so_parked_records_come_back() -> None:
    fetcher = SimpleNamespace(_next_partition_records=_Batch(0), _paused_partition_records={1: 2})
    consumer = SimpleNamespace(_fetcher=fetcher)
    assert release_parked(consumer)
    assert fetcher._next_partition_records is None


@pytest.mark.parametrize(
    ("in_line", "parked"),
    [(_Batch(3), {1: 2}), (_Batch(0), {}), (None, {1: 2})],
)
def test_a_batch_still_in_use_or_nothing_parked_is_left_alone(
    in_line: _Batch | None, parked: dict[int, int]
) -> None:
    fetcher = SimpleNamespace(_next_partition_records=in_line, _paused_partition_records=parked)
    assert not release_parked(SimpleNamespace(_fetcher=fetcher))
    assert fetcher._next_partition_records is in_line
    assert not release_parked(object())  # another client layout: nothing to do


def test_retry_tiers_beyond_the_setting_are_found_in_tier_order() -> None:
    existing = ["orders", "orders.retry.1", "orders.retry.10", "orders.retry.2", "orders.park"]
    existing += ["orders.retry.x", "other.retry.5", "orders.retry.3.dlq"]
    assert stray_tiers(existing, "orders", ["orders.retry.1"]) == [
        "orders.retry.2",
        "orders.retry.10",
    ]
    assert stray_tiers(existing, "orders", TOPICS.all()) == ["orders.retry.10"]
