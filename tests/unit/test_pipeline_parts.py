"""Pieces of the pipeline checked on their own: dead-letter size cap, in-flight claims."""

from __future__ import annotations

import orjson
import pytest

from pushtrio.contract.dead_letter import DEAD_LETTER_MAX_VALUE_BYTES, dead_letter
from pushtrio.contract.delays import DelayTopics
from pushtrio.contract.outcome import Outcome, OutcomeKind
from pushtrio.contract.records import Record
from pushtrio.pipeline.policy import Scheduler, SchedulerOptions
from pushtrio.pipeline.workers import Pipeline, PipelineOptions
from pushtrio.source.memory import MemoryBroker
from pushtrio.stores.dedup import MemoryDedup
from pushtrio.stores.limiter.memory import MemoryLimiter

OUTCOME = Outcome(OutcomeKind.INVALID, "m-1", error="record is too large", attempts=0)


def record(
    value: bytes | None = b"{}",
    *,
    topic: str = "notifications",
    partition: int = 0,
    offset: int = 0,
    epoch: int = 0,
) -> Record:
    return Record(topic, partition, offset, value, 0, key=b"k", epoch=epoch)


@pytest.mark.parametrize("size", [0, 1, 1000, DEAD_LETTER_MAX_VALUE_BYTES])
def test_a_dead_letter_up_to_the_cap_keeps_the_value_untouched(size: int) -> None:
    value = bytes(i % 251 for i in range(size))
    key, letter_value, headers = dead_letter(record(value, partition=2, offset=9), OUTCOME)
    assert key == b"k"
    assert letter_value == value
    names = dict(headers)
    assert "pushtrio-value-dropped" not in names
    assert names["pushtrio-outcome"] == b"invalid"
    assert names["pushtrio-reason"] == b"record is too large"
    assert names["pushtrio-id"] == b"m-1"
    assert orjson.loads(names["pushtrio-source"]) == ["notifications", 2, 9]


@pytest.mark.parametrize("size", [DEAD_LETTER_MAX_VALUE_BYTES + 1, 2 * 1024 * 1024])
def test_a_dead_letter_over_the_cap_drops_the_value_and_gives_its_size(size: int) -> None:
    key, letter_value, headers = dead_letter(record(b"x" * size, offset=41), OUTCOME)
    assert key == b"k"
    assert letter_value == b""
    names = dict(headers)
    assert names["pushtrio-value-dropped"] == str(size).encode()
    # The letter still points at the original record, so it can be found and replayed.
    assert orjson.loads(names["pushtrio-source"]) == ["notifications", 0, 41]
    assert [name for name, _ in headers].count("pushtrio-value-dropped") == 1


def test_a_dead_letter_of_a_tombstone_is_a_tombstone() -> None:
    _, letter_value, headers = dead_letter(record(None), OUTCOME)
    assert letter_value is None
    assert "pushtrio-value-dropped" not in dict(headers)


def test_a_dead_letter_keeps_the_original_headers_and_replaces_old_pushtrio_ones() -> None:
    original = Record(
        "notifications",
        0,
        3,
        b"{}",
        0,
        key=b"k",
        headers=(("trace-id", b"abc"), ("pushtrio-reason", b"an older failure"), ("x", b"")),
    )
    key, value, headers = dead_letter(original, OUTCOME)
    assert (key, value) == (b"k", b"{}")
    assert headers[:2] == [("trace-id", b"abc"), ("x", b"")]
    names = [name for name, _ in headers]
    assert names.count("pushtrio-reason") == 1
    assert dict(headers)["pushtrio-reason"] == b"record is too large"


def make_pipeline() -> Pipeline:
    options = PipelineOptions(
        worker_count=1,
        batch_size=1,
        max_in_flight=1,
        provider_timeout_s=1.0,
        dlq_topic="dlq",
    )
    scheduler = Scheduler(
        SchedulerOptions(
            DelayTopics("t", retry_attempts=0, retry_delay_s=0.01),
            defer=False,
            defer_max_s=1.0,
            max_park_s=1.0,
        )
    )
    return Pipeline(
        options,
        limiter=MemoryLimiter(1, 1.0),
        dedup=MemoryDedup(1.0),
        providers={},
        scheduler=scheduler,
        dead_letters=MemoryBroker(),
        sinks=(),
        settle=lambda records: None,
    )


def test_an_unclaimed_id_is_not_claimed_by_another() -> None:
    assert not make_pipeline()._claimed_by_other("m-1", record())


@pytest.mark.parametrize(
    "other",
    [
        record(offset=8),  # the producer sent it twice
        record(partition=1),
        record(topic="other"),
        record(offset=8, epoch=1),
    ],
)
def test_a_different_record_with_the_same_id_is_a_copy(other: Record) -> None:
    pipeline = make_pipeline()
    pipeline._claims["m-1"] = record(offset=0)
    assert pipeline._claimed_by_other("m-1", other)
    assert not pipeline._claimed_by_other("m-2", other)


@pytest.mark.parametrize("epoch", [0, 1, 7])
def test_the_same_record_read_again_is_not_a_copy(epoch: int) -> None:
    # After a rebalance the partition comes back with a new epoch and the record
    # holding the claim is read again: it must be processed, not called a duplicate.
    pipeline = make_pipeline()
    pipeline._claims["m-1"] = record(partition=3, offset=5, epoch=0)
    assert not pipeline._claimed_by_other("m-1", record(partition=3, offset=5, epoch=epoch))
