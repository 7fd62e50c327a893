"""Priority lanes without a broker: the rank of a record, the intake's order and fair
share, the reader's hold on the main topic, and the embedded queue's two lanes."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata

from pushtrio.contract.lanes import DEFAULT_PRIORITY, LaneTopics, peek_priority
from pushtrio.contract.records import Record
from pushtrio.source.intake import Intake
from pushtrio.source.kafka.lanes import LaneGate, unread
from pushtrio.source.memory import MemoryBroker, MemorySource


def record(offset: int, priority: int, topic: str = "t") -> Record:
    return Record(topic, 0, offset, b"{}", 0, priority=priority)


@pytest.mark.parametrize(
    ("value", "priority"),
    [
        (b'{"user_id": "u", "priority": 3}', 3),
        (b'{"user_id": "u", "priority": 0}', 0),
        (b'{"priority": 2.0, "title": "t"}', 2),
        (b'{"user_id": "u"}', DEFAULT_PRIORITY),
        (b'{"priority": null}', DEFAULT_PRIORITY),
        (b'{"priority": 1.5}', DEFAULT_PRIORITY),
        (b'{"priority": 9}', DEFAULT_PRIORITY),
        (b'{"priority": "3"}', DEFAULT_PRIORITY),
        (b'{"priority": 3', DEFAULT_PRIORITY),
        (b'["priority", 3]', DEFAULT_PRIORITY),
        (b"", DEFAULT_PRIORITY),
        (None, DEFAULT_PRIORITY),
    ],
)
def test_the_priority_is_read_before_the_record_is_decoded(
    value: bytes | None, priority: int
) -> None:
    assert peek_priority(value) == priority


def test_lanes_send_urgent_priorities_to_the_urgent_topic() -> None:
    lanes = LaneTopics("n", "n.urgent", urgent_priority=2)
    assert [lanes.topic_for(p) for p in range(4)] == ["n", "n", "n.urgent", "n.urgent"]
    assert [lanes.lane_of(p) for p in range(4)] == ["main", "main", "urgent", "urgent"]
    off = LaneTopics("n", "")
    assert {off.topic_for(p) for p in range(4)} == {"n"}
    assert {off.lane_of(p) for p in range(4)} == {"main"}


async def test_the_intake_hands_out_the_highest_priority_first() -> None:
    intake = Intake(10)
    for offset, priority in enumerate([0, 1, 3, 0, 2, 3]):
        intake.put_nowait(record(offset, priority))
    assert intake.queued() == [2, 1, 1, 2]
    batch = await intake.take(10)
    # Highest priority first, arrival order within a priority.
    assert [(r.priority, r.offset) for r in batch] == [
        (3, 2),
        (3, 5),
        (2, 4),
        (1, 1),
        (0, 0),
        (0, 3),
    ]
    assert len(intake) == 0


async def test_a_quarter_of_each_batch_goes_to_the_records_waiting_longest() -> None:
    intake = Intake(100)
    for offset in range(8):
        intake.put_nowait(record(offset, 0))  # an old backlog
    for offset in range(8, 40):
        intake.put_nowait(record(offset, 3))  # then a flood of urgent records
    batch = await intake.take(8)
    # 2 of 8 slots (a quarter) to the oldest, the rest by priority.
    assert [(r.priority, r.offset) for r in batch] == [
        (0, 0),
        (0, 1),
        *((3, offset) for offset in range(8, 14)),
    ]
    # Under a steady flood the backlog still drains, a quarter of a batch at a time.
    taken = batch
    next_urgent = 40
    while any(r.priority == 0 for r in intake_contents(intake)):
        intake.put_nowait(record(next_urgent, 3))
        next_urgent += 1
        taken += await intake.take(8)
    assert [r.offset for r in taken if r.priority == 0] == list(range(8))


def intake_contents(intake: Intake) -> list[Record]:
    return [r for queue in intake._queues for _, r in queue]


async def test_the_intake_is_bounded_and_a_put_waits_for_room() -> None:
    intake = Intake(2)
    intake.put_nowait(record(0, 1))
    intake.put_nowait(record(1, 1))
    with pytest.raises(trio.WouldBlock):
        intake.put_nowait(record(2, 1))
    put_done = trio.Event()

    async def put_third() -> None:
        await intake.put(record(2, 3))
        put_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(put_third)
        await trio.testing.wait_all_tasks_blocked()
        assert not put_done.is_set()
        assert [r.offset for r in await intake.take(1)] == [0]
        await put_done.wait()
    assert [r.offset for r in await intake.take(5)] == [2, 1]


async def test_a_closed_intake_drains_then_gives_empty_batches() -> None:
    intake = Intake(5)
    intake.put_nowait(record(0, 1))
    intake.close()
    with pytest.raises(trio.ClosedResourceError):
        intake.put_nowait(record(1, 1))
    assert [r.offset for r in await intake.take(5)] == [0]
    assert await intake.take(5) == []


async def test_one_taker_gets_all_there_is_and_waiting_takers_wake_on_close() -> None:
    intake = Intake(10)
    batches: list[list[Record]] = []

    async def worker() -> None:
        while batch := await intake.take(10):
            batches.append(batch)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        for offset in range(5):
            intake.put_nowait(record(offset, 1))
        await trio.testing.wait_all_tasks_blocked()
        intake.close()
    assert [[r.offset for r in batch] for batch in batches] == [[0, 1, 2, 3, 4]]


def test_the_gate_holds_the_main_topic_while_urgent_records_are_unread() -> None:
    now = [0.0]
    gate = LaneGate(hold_max_s=1.0, open_s=0.3, clock=lambda: now[0])
    assert not gate.hold_main(0)
    assert gate.hold_main(5)
    now[0] = 0.5
    assert gate.hold_main(3)
    assert not gate.hold_main(0)  # all read: the main topic goes on at once
    assert gate.holds == 1


def test_a_steady_urgent_flood_holds_the_main_topic_at_most_hold_max_at_a_time() -> None:
    now = [0.0]
    gate = LaneGate(hold_max_s=1.0, open_s=0.25, clock=lambda: now[0])
    open_at = []
    while now[0] < 5.0:
        if not gate.hold_main(100):
            open_at.append(now[0])
        now[0] += 0.125  # exact in binary
    # Held 1 s, then read for 0.25 s, then held again.
    assert open_at == [1.0, 1.125, 2.25, 2.375, 3.5, 3.625, 4.75, 4.875]
    assert gate.holds == 4


class _State(SimpleNamespace):
    highwater: int | None
    position: OffsetAndMetadata | None


def consumer_with(states: dict[TopicPartition, _State]) -> Any:
    return SimpleNamespace(_subscription=SimpleNamespace(assignment=states))


def test_unread_is_the_high_watermark_minus_the_position() -> None:
    tp = [TopicPartition("u", n) for n in range(4)]
    states = {
        tp[0]: _State(highwater=10, position=OffsetAndMetadata(4, "", -1)),
        tp[1]: _State(highwater=7, position=OffsetAndMetadata(7, "", -1)),
        tp[2]: _State(highwater=None, position=OffsetAndMetadata(0, "", -1)),  # never fetched
        tp[3]: _State(highwater=5, position=None),  # no position yet
    }
    consumer = consumer_with(states)
    assert unread(consumer, tp) == 6
    assert unread(consumer, [TopicPartition("u", 9)]) == 0  # not assigned
    assert unread(SimpleNamespace(), tp) == 0  # another client layout: nothing known


def values(priorities: Sequence[int], prefix: str) -> list[tuple[bytes, bytes, list[Any]]]:
    return [
        (b"k", orjson.dumps({"id": f"{prefix}-{i}", "user_id": "u", "priority": p}), [])
        for i, p in enumerate(priorities)
    ]


async def test_the_embedded_queue_reads_the_urgent_lane_first() -> None:
    broker = MemoryBroker()
    source = MemorySource(broker, "main", batch_size=5, urgent_topic="main.urgent")
    await broker.publish_many("main", values([0] * 20, "m"))
    await broker.publish_many("main.urgent", values([3] * 3, "u"))
    intake = Intake(10)
    async with trio.open_nursery() as nursery:
        await nursery.start(source.serve, intake)
        await trio.testing.wait_all_tasks_blocked()
        assert source.unread() == {"main": 20 - (10 - 3), "urgent": 0}
        first = await intake.take(5)
        assert [r.topic for r in first[:3]] == ["main.urgent"] * 3
        assert all(r.priority == 3 for r in first[:3])
        # Urgent records published while the main backlog waits overtake it: only
        # what the intake already holds (and one fair-share slot) goes first.
        await broker.publish_many("main.urgent", values([3] * 2, "v"))
        await trio.testing.wait_all_tasks_blocked()
        taken = list(first)
        while len(taken) < 25:
            taken += await intake.take(5)
            await trio.testing.wait_all_tasks_blocked()
        late = [i for i, r in enumerate(taken) if r.topic == "main.urgent"][3:]
        assert len(late) == 2
        assert max(late) < 5 + 10 + 1  # behind at most the intake's contents and a slot
        assert [r.offset for r in taken if r.topic == "main"] == list(range(20))
        source.settle(taken)
        source.stop_intake()
