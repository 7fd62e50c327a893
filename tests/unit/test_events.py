"""The event hub: filters, per-subscriber buffers, dropped notices, shutdown."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pushtrio.contract.outcome import Outcome, OutcomeKind
from pushtrio.sinks.events import EventHub, Subscription, parse_event_filter

KINDS = list(OutcomeKind)


def make(i: int, kind: OutcomeKind = OutcomeKind.DELIVERED, user_id: str = "u1") -> Outcome:
    return Outcome(event=kind, id=f"n{i}", user_id=user_id, provider="fcm", ts=float(i))


def mixed(n: int) -> list[Outcome]:
    users = ("alice", "bob", "carol")
    return [make(i, KINDS[i % len(KINDS)], users[i % len(users)]) for i in range(n)]


async def test_subscribers_get_exactly_their_matching_outcomes_in_order() -> None:
    hub = EventHub()
    outcomes = mixed(300)
    with (
        hub.subscribe() as everything,
        hub.subscribe(user_id="bob") as bob,
        hub.subscribe(events="delivered, failed") as delivered_or_failed,
        hub.subscribe(user_id="alice", events=[OutcomeKind.DELIVERED]) as alice_delivered,
    ):
        assert hub.subscriber_count == 4
        hub.publish(outcomes[:150])
        hub.publish(iter(outcomes[150:]))
        cases = [
            (everything, outcomes),
            (bob, [o for o in outcomes if o.user_id == "bob"]),
            (delivered_or_failed, [o for o in outcomes if o.event in {"delivered", "failed"}]),
            (
                alice_delivered,
                [o for o in outcomes if o.user_id == "alice" and o.event == "delivered"],
            ),
        ]
        for subscription, expected in cases:
            assert expected
            assert subscription.pending == len(expected)
            received = [await subscription.receive() for _ in expected]
            assert received == [o.to_event() for o in expected]
            with pytest.raises(trio.WouldBlock):
                subscription.receive_nowait()


async def test_receive_waits_until_an_event_is_published() -> None:
    hub = EventHub()
    received: list[dict[str, object]] = []
    with hub.subscribe(user_id="u1") as subscription:

        async def reader() -> None:
            async for event in subscription:
                received.append(event)
                if len(received) == 2:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert received == []
            hub.publish([make(1, user_id="someone-else")])
            await trio.testing.wait_all_tasks_blocked()
            assert received == []
            hub.publish([make(2)])
            await trio.testing.wait_all_tasks_blocked()
            assert [e["id"] for e in received] == ["n2"]
            hub.publish([make(3)])
    assert [e["id"] for e in received] == ["n2", "n3"]


async def test_a_cancelled_receive_loses_nothing() -> None:
    hub = EventHub()
    with hub.subscribe() as subscription:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(subscription.receive)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        hub.publish([make(1)])
        assert (await subscription.receive())["id"] == "n1"


async def test_a_slow_subscriber_never_blocks_publish_and_learns_what_it_lost() -> None:
    hub = EventHub()
    outcomes = [make(i) for i in range(10_000)]
    fast_received: list[dict[str, object]] = []
    with hub.subscribe(capacity=100) as slow, hub.subscribe() as fast:

        async def read_fast() -> None:
            while len(fast_received) < len(outcomes):
                fast_received.append(await fast.receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_fast)
            for start in range(0, len(outcomes), 50):
                hub.publish(outcomes[start : start + 50])
                await trio.testing.wait_all_tasks_blocked()

        assert fast_received == [o.to_event() for o in outcomes]
        assert slow.dropped_total == 9_900
        assert await slow.receive() == {"event": "dropped", "count": 9_900}
        rest = [slow.receive_nowait() for _ in range(100)]
        assert rest == [o.to_event() for o in outcomes[-100:]]
        with pytest.raises(trio.WouldBlock):
            slow.receive_nowait()

        # Falling behind again yields a new notice with only the new losses.
        hub.publish(make(i) for i in range(10_000, 10_105))
        assert slow.receive_nowait() == {"event": "dropped", "count": 5}
        assert slow.receive_nowait()["id"] == "n10005"


async def test_unsubscribe_removes_the_subscriber() -> None:
    hub = EventHub()
    with hub.subscribe() as first:
        with hub.subscribe() as second:
            assert hub.subscriber_count == 2
        assert hub.subscriber_count == 1
        hub.publish([make(1)])
        assert second.pending == 0
        assert first.pending == 1
        with pytest.raises(trio.ClosedResourceError):
            await second.receive()
    assert hub.subscriber_count == 0
    hub.publish([make(2)])  # no subscribers: a no-op


async def test_unsubscribing_wakes_a_parked_receiver() -> None:
    hub = EventHub()
    with pytest.RaisesGroup(trio.ClosedResourceError):
        async with trio.open_nursery() as nursery:
            with hub.subscribe() as subscription:
                nursery.start_soon(subscription.receive)
                await trio.testing.wait_all_tasks_blocked()


async def test_close_drains_then_ends_every_receiver() -> None:
    hub = EventHub()
    ends: list[list[str]] = []
    with hub.subscribe() as idle, hub.subscribe(user_id="u1") as busy:

        async def read_all(subscription: Subscription) -> None:
            ends.append([event["id"] async for event in subscription])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all, idle)
            await trio.testing.wait_all_tasks_blocked()
            hub.publish([make(1), make(2, user_id="u2")])
            hub.close()
            hub.close()  # idempotent
            assert hub.subscriber_count == 0
            hub.publish([make(3)])  # ignored after close
            nursery.start_soon(read_all, busy)
        assert sorted(ends) == [["n1"], ["n1", "n2"]]
        with pytest.raises(trio.EndOfChannel):
            await idle.receive()


async def test_subscribing_after_close_ends_at_once() -> None:
    hub = EventHub()
    hub.close()
    with hub.subscribe() as subscription:
        assert hub.subscriber_count == 0
        with pytest.raises(trio.EndOfChannel):
            await subscription.receive()


def test_event_filters_are_validated() -> None:
    assert parse_event_filter(None) is None
    assert parse_event_filter("") is None
    assert parse_event_filter(" , ") is None
    assert parse_event_filter("delivered,rate_limited") == frozenset(
        {OutcomeKind.DELIVERED, OutcomeKind.RATE_LIMITED}
    )
    assert parse_event_filter(["expired"]) == frozenset({OutcomeKind.EXPIRED})
    with pytest.raises(ValueError, match="unknown event 'sent'"):
        parse_event_filter("delivered,sent")
    hub = EventHub()
    with pytest.raises(ValueError, match="unknown event"), hub.subscribe(events="nope"):
        pass
    with pytest.raises(ValueError, match="capacity"), hub.subscribe(capacity=0):
        pass
    assert hub.subscriber_count == 0
