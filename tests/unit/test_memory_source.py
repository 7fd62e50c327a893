"""The embedded queue: MemoryBroker topics and MemorySource records, bound, commits."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pushtrio.contract.records import Record
from pushtrio.source import batch_size_for
from pushtrio.source.intake import Intake
from pushtrio.source.memory import MemoryBroker, MemorySource

TOPIC = "notifications"
TP = (TOPIC, 0)


def values(n: int, start: int = 0) -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    return [(f"k{i}".encode(), f"v{i}".encode(), []) for i in range(start, start + n)]


async def test_broker_appends_in_order_with_headers_and_timestamps() -> None:
    broker = MemoryBroker()
    assert broker.log("empty") == []
    await broker.publish_many("t", [(b"k", b"v1", [("h", b"x")]), (None, b"v2", [])])
    await broker.publish_many("t", [(b"k", b"v3", [])])
    log = broker.log("t")
    assert [(key, value, headers) for key, value, headers, _ in log] == [
        (b"k", b"v1", [("h", b"x")]),
        (None, b"v2", []),
        (b"k", b"v3", []),
    ]
    assert all(isinstance(stamp, int) and stamp > 0 for *_, stamp in log)
    assert broker.log("other") == []


async def test_broker_wakes_waiters_on_append() -> None:
    broker = MemoryBroker()
    woken = trio.Event()

    async def wait() -> None:
        await broker.wait_for_more()
        woken.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert not woken.is_set()
        broker.append_nowait("t", values(1))
        with trio.fail_after(5):
            await woken.wait()


@pytest.mark.parametrize(
    ("max_queue_size", "batch_size"),
    [(1, 1), (3, 1), (20, 5), (1000, 250), (1001, 250), (10_000, 500)],
)
def test_the_batch_size_follows_the_queue_bound(max_queue_size: int, batch_size: int) -> None:
    assert batch_size_for(max_queue_size) == batch_size


async def take_one(intake: Intake) -> Record:
    [record] = await intake.take(1)
    return record


async def test_records_come_in_offset_order() -> None:
    broker = MemoryBroker()
    await broker.publish_many(TOPIC, values(12))
    source = MemorySource(broker, TOPIC, batch_size=5)
    intake = Intake(100)
    records: list[Record] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(source.serve, intake)
        with trio.fail_after(5):
            while len(records) < 12:
                records.append(await take_one(intake))
        assert [r.offset for r in records] == list(range(12))
        assert [r.value for r in records] == [f"v{i}".encode() for i in range(12)]
        assert [r.key for r in records] == [f"k{i}".encode() for i in range(12)]
        assert {(r.topic, r.partition, r.epoch) for r in records} == {
            (TOPIC, 0, source.tracker.epoch(TP))
        }
        assert source.in_flight() == 12

        # Records published later are fed too.
        await broker.publish_many(TOPIC, values(1, start=12))
        with trio.fail_after(5):
            late = await take_one(intake)
        assert late.offset == 12
        source.stop_intake()
    # serve returned after stop_intake and closed the intake.
    with trio.fail_after(5):
        assert await intake.take(100) == []


async def test_a_full_channel_holds_the_source_back(autojump_clock: trio.abc.Clock) -> None:
    max_queue_size = 10
    total = 200
    batch_size = batch_size_for(max_queue_size)
    broker = MemoryBroker()
    await broker.publish_many(TOPIC, values(total))
    source = MemorySource(broker, TOPIC, batch_size=batch_size)
    intake = Intake(max_queue_size)
    seen_queued: list[int] = []
    seen_in_flight: list[int] = []
    consumed = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(source.serve, intake)
        while consumed < total:
            # Let the source fill up as far as it will before each sample.
            await trio.testing.wait_all_tasks_blocked()
            seen_queued.append(len(intake))
            seen_in_flight.append(source.in_flight())
            record = await take_one(intake)
            consumed += 1
            await trio.sleep(1)  # a slow worker (virtual time)
            source.settle([record])
        source.stop_intake()
    assert max(seen_queued) == max_queue_size  # the bound was reached, and held
    # All settled before each sample: in flight = the channel plus what the source
    # read and holds while it waits for room (at most one read).
    assert max_queue_size < max(seen_in_flight) <= max_queue_size + batch_size
    assert source.tracker.committed(TP) == total
    assert source.in_flight() == 0
    assert source.lag() == 0


async def receive(intake: Intake, n: int) -> list[Record]:
    with trio.fail_after(5):
        return [await take_one(intake) for _ in range(n)]


async def test_settle_out_of_order_commits_only_up_to_the_first_gap() -> None:
    broker = MemoryBroker()
    await broker.publish_many(TOPIC, values(8))
    source = MemorySource(broker, TOPIC, batch_size=10)
    intake = Intake(10)
    async with trio.open_nursery() as nursery:
        await nursery.start(source.serve, intake)
        batch = await receive(intake, 8)
        assert source.lag() == 8

        source.settle([batch[i] for i in (5, 1, 0)])
        assert source.tracker.committed(TP) == 2
        assert source.lag() == 6
        assert source.in_flight() == 5

        source.settle([batch[i] for i in (2, 3, 4, 6, 7)])
        assert source.tracker.committed(TP) == 8
        assert source.lag() == 0
        assert source.in_flight() == 0
        source.stop_intake()


async def test_aclose_stops_the_feed_and_keeps_unsettled_records_uncommitted() -> None:
    broker = MemoryBroker()
    await broker.publish_many(TOPIC, values(4))
    source = MemorySource(broker, TOPIC, batch_size=4)
    intake = Intake(10)
    async with trio.open_nursery() as nursery:
        await nursery.start(source.serve, intake)
        batch = await receive(intake, 4)
        source.settle(batch[:2])
        await source.aclose()
    assert source.tracker.committed(TP) == 2
    assert source.lag() == 2
    assert source.health() == {
        "healthy": True,
        "backend": "embedded queue",
        "topic": TOPIC,
        "delayed": 0,
    }
    assert source.mode == "embedded"
