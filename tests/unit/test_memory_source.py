"""The embedded queue: MemoryBroker topics and MemorySource batches, bound, commits."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pushtrio.records import Batch
from pushtrio.source import batch_size_for, channel_capacity_for
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
    ("max_queue_size", "batch_size", "capacity"),
    [(1, 1, 1), (3, 1, 3), (20, 5, 4), (1000, 250, 4), (1001, 250, 4), (10_000, 500, 20)],
)
def test_the_queue_shape_follows_the_queue_bound(
    max_queue_size: int, batch_size: int, capacity: int
) -> None:
    assert batch_size_for(max_queue_size) == batch_size
    assert channel_capacity_for(max_queue_size) == capacity
    # A full channel of full batches holds at most MAX_QUEUE_SIZE records.
    assert batch_size * capacity <= max_queue_size


async def test_records_come_in_offset_order_in_batches() -> None:
    broker = MemoryBroker()
    await broker.publish_many(TOPIC, values(12))
    source = MemorySource(broker, TOPIC, batch_size=5)
    batch_send, batch_recv = trio.open_memory_channel[Batch](100)
    received: list[Batch] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(source.serve, batch_send)
        with trio.fail_after(5):
            while sum(map(len, received)) < 12:
                batch = await batch_recv.receive()
                received.append(batch)
        assert [len(b) for b in received] == [5, 5, 2]
        records = [r for b in received for r in b]
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
            [late] = await batch_recv.receive()
        assert late.offset == 12
        source.stop_intake()
    # serve returned after stop_intake and closed its end of the channel.
    with trio.fail_after(5):
        assert [batch async for batch in batch_recv] == []


async def test_a_full_channel_holds_the_source_back(autojump_clock: trio.abc.Clock) -> None:
    max_queue_size = 10
    total = 200
    batch_size, capacity = batch_size_for(max_queue_size), channel_capacity_for(max_queue_size)
    broker = MemoryBroker()
    await broker.publish_many(TOPIC, values(total))
    source = MemorySource(broker, TOPIC, batch_size=batch_size)
    batch_send, batch_recv = trio.open_memory_channel[Batch](capacity)
    seen_batches: list[int] = []
    seen_in_flight: list[int] = []
    consumed = 0
    async with trio.open_nursery() as nursery:
        await nursery.start(source.serve, batch_send)
        while consumed < total:
            # Let the source fill up as far as it will before each sample.
            await trio.testing.wait_all_tasks_blocked()
            seen_batches.append(batch_recv.statistics().current_buffer_used)
            seen_in_flight.append(source.in_flight())
            batch = await batch_recv.receive()
            consumed += len(batch)
            await trio.sleep(1)  # a slow worker (virtual time)
            source.settle(batch)
        source.stop_intake()
    assert max(seen_batches) == capacity  # the bound was reached, and held
    # All settled before each sample: in flight = the channel's batches plus the
    # one batch the source holds while it waits for room.
    assert max(seen_in_flight) == capacity * batch_size + batch_size
    assert source.tracker.committed(TP) == total
    assert source.in_flight() == 0
    assert source.lag() == 0


async def test_settle_out_of_order_commits_only_up_to_the_first_gap() -> None:
    broker = MemoryBroker()
    await broker.publish_many(TOPIC, values(8))
    source = MemorySource(broker, TOPIC, batch_size=10)  # one batch of 8
    batch_send, batch_recv = trio.open_memory_channel[Batch](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(source.serve, batch_send)
        with trio.fail_after(5):
            batch = await batch_recv.receive()
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
    batch_send, batch_recv = trio.open_memory_channel[Batch](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(source.serve, batch_send)
        with trio.fail_after(5):
            batch = await batch_recv.receive()
        source.settle(batch[:2])
        await source.aclose()
    assert source.tracker.committed(TP) == 2
    assert source.lag() == 2
    assert source.health() == {"healthy": True, "backend": "embedded queue", "topic": TOPIC}
    assert source.mode == "embedded"
