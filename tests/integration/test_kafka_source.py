"""KafkaSource alone against the real broker: cancellation and back-pressure.

No pipeline: the test is the worker, receiving records and settling them itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import orjson
import pytest
import trio

from pushtrio.contract.records import Record
from pushtrio.source import batch_size_for
from pushtrio.source.intake import Intake
from pushtrio.source.kafka.clients import SESSION_TIMEOUT_MS
from pushtrio.source.kafka.reader import KafkaSource

from ..support.kafka import (
    committed_offsets,
    end_offsets,
    group_members,
    notification,
    produce,
    wait_committed,
)
from ..support.waiting import wait_until

pytestmark = pytest.mark.integration

POLL_S = 0.05
MAX_QUEUE_SIZE = 50
BATCH_SIZE = batch_size_for(MAX_QUEUE_SIZE)


async def take_batch(intake: Intake) -> list[Record]:
    """What a worker does: wait for a record, then take what else is there."""
    return await intake.take(BATCH_SIZE)


def assigned(source: KafkaSource) -> list[int]:
    partitions: list[int] = source.health()["assigned_partitions"]
    return partitions


async def close_if_stuck(
    source: KafkaSource, cancelled: trio.Event, timeout_s: float, stuck: list[bool]
) -> None:
    """Watchdog: a reader thread that ignores cancellation would hang the test forever
    (it runs shielded), so ``timeout_s`` after ``cancelled`` close it and note that."""
    await cancelled.wait()
    await trio.sleep(timeout_s)  # a deadline, not synchronisation
    stuck.append(True)
    await source.aclose()


async def test_cancelling_serve_ends_the_reader_and_leaves_the_group(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = await trio.to_thread.run_sync(new_topic, 2)
    group = f"group-{topic}"
    records = [notification(f"m-{i}", f"user-{i % 20}") for i in range(200)]
    await trio.to_thread.run_sync(produce, kafka_bootstrap, topic, records)
    source = KafkaSource([kafka_bootstrap], topic, group, batch_size=BATCH_SIZE)
    intake = Intake(MAX_QUEUE_SIZE)
    stuck: list[bool] = []

    cancelled = trio.Event()
    async with trio.open_nursery() as outer:
        outer.start_soon(close_if_stuck, source, cancelled, 15.0, stuck)
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(30):
                    await nursery.start(source.serve, intake)
                # Holding both partitions with records handed out and none settled:
                # what a crash elsewhere in the service leaves behind.
                await wait_until(lambda: assigned(source) == [0, 1] and len(intake) > 0, 30)
            finally:
                cancelled.set()
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()

    assert not stuck, "serve was still running 15 s after being cancelled"
    assert not source.health()["healthy"]  # the consumer is closed
    state, members = await trio.to_thread.run_sync(group_members, kafka_bootstrap, group)
    assert (state, members) == ("Empty", {})
    # Nothing was settled, so no commit moved past offset 0: every record is re-read.
    # What was handed out is committed at 0 on the way out (no commit at all would
    # leave where the group starts again to the consumer's auto_offset_reset).
    committed = await trio.to_thread.run_sync(committed_offsets, kafka_bootstrap, group)
    assert committed, "nothing was committed"
    assert set(committed.values()) == {0}, committed


async def test_a_full_channel_holds_the_reader_back_without_losing_the_group(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    total = 2000
    topic = await trio.to_thread.run_sync(new_topic, 2)
    group = f"group-{topic}"
    records = [notification(f"m-{i}", f"user-{i % 50}") for i in range(total)]
    await trio.to_thread.run_sync(produce, kafka_bootstrap, topic, records)
    ends = await trio.to_thread.run_sync(end_offsets, kafka_bootstrap, topic)
    assert sum(ends.values()) == total
    source = KafkaSource([kafka_bootstrap], topic, group, batch_size=BATCH_SIZE)
    intake = Intake(MAX_QUEUE_SIZE)
    received: list[Record] = []

    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            await nursery.start(source.serve, intake)
        await wait_until(lambda: assigned(source) == [0, 1] and len(intake) > 0, 30)
        state, members = await trio.to_thread.run_sync(group_members, kafka_bootstrap, group)
        assert state == "Stable"
        [(member_id, partitions)] = members.items()
        assert partitions == [0, 1]

        # Nobody reads for longer than a session time-out: the reader must stop at
        # the queue bound and keep polling (paused), so the member is never dropped.
        most_in_flight = 0
        idle_until = trio.current_time() + SESSION_TIMEOUT_MS / 1000 + 2
        while trio.current_time() < idle_until:
            most_in_flight = max(most_in_flight, source.in_flight())
            await trio.sleep(POLL_S)
        # Nothing taken yet: what is in flight is what waits in the channel.
        assert len(intake) == MAX_QUEUE_SIZE  # the channel filled up...
        assert most_in_flight == MAX_QUEUE_SIZE  # ...and nothing more was handed out
        assert source.in_flight() == most_in_flight  # it stopped there instead of growing
        health = source.health()
        assert health["paused"]
        assert health["healthy"], health["error"]
        state, members = await trio.to_thread.run_sync(group_members, kafka_bootstrap, group)
        assert (state, members) == ("Stable", {member_id: [0, 1]})

        # Now act as the workers: take, settle, check the bound on every batch.
        with trio.fail_after(60):
            while len(received) < total:
                # All taken so far is settled: in flight = records in the channel.
                assert source.in_flight() == len(intake) <= MAX_QUEUE_SIZE
                batch = await take_batch(intake)
                received.extend(batch)
                source.settle(batch)
        source.stop_intake()
        with trio.fail_after(30):
            extra = await intake.take(MAX_QUEUE_SIZE)
        assert extra == []
        await source.aclose()

    ids = Counter(orjson.loads(record.value or b"")["id"] for record in received)
    assert ids == Counter(f"m-{i}" for i in range(total))  # each exactly once
    for partition, end in ends.items():
        offsets = [r.offset for r in received if r.partition == partition]
        assert offsets == list(range(end)), f"partition {partition} out of order"
    committed = await trio.to_thread.run_sync(wait_committed, kafka_bootstrap, group, topic, 30.0)
    assert committed == ends
