"""The reader's group membership: leave, join, and rejoin when nobody reads a partition."""

from __future__ import annotations

import pytest
from kafka import TopicPartition

from pushtrio.source.kafka.membership import (
    CHECK_EVERY_S,
    JOIN_STUCK_S,
    REBALANCE_AFTER_S,
    REBALANCE_EVERY_S,
    Membership,
)
from pushtrio.source.kafka.monitor import GroupMonitor, _Round


class _Consumer:
    """Records the reader's calls; holds ``held`` partitions of topic t."""

    def __init__(self, held: set[int], delay_held: set[int] | None = None) -> None:
        self.held = held
        self.delay_held = delay_held or set()
        self.calls: list[str] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("t", p) for p in self.held} | {
            TopicPartition("t.retry.1", p) for p in self.delay_held
        }

    def subscribe(self, topics: list[str], listener: object) -> None:
        assert topics == ["t"]
        assert listener == "listener"
        self.calls.append("subscribe")

    def unsubscribe(self) -> None:
        self.calls.append("unsubscribe")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr("pushtrio.source.kafka.monitor.time.monotonic", lambda: now[0])
    monkeypatch.setattr("pushtrio.source.kafka.membership.time.monotonic", lambda: now[0])
    return now


def _membership(monitor: GroupMonitor) -> Membership:
    return Membership(["t"], "g", monitor, lambda: "listener")


def test_release_leaves_and_rejoin_joins_again(clock: list[float]) -> None:
    monitor = GroupMonitor(["127.0.0.1:1"], "t", "g")
    membership, consumer = _membership(monitor), _Consumer({0})
    assert not membership.update(consumer)
    membership.release()
    assert membership.update(consumer)
    assert membership.released
    assert not membership.update(consumer)  # stays out, no repeated unsubscribe
    membership.rejoin()
    assert membership.update(consumer)
    assert not membership.released
    assert consumer.calls == ["unsubscribe", "subscribe"]


def test_a_missing_topic_leaves_the_group_until_it_exists(clock: list[float]) -> None:
    monitor = GroupMonitor(["127.0.0.1:1"], "t", "g")
    membership, consumer = _membership(monitor), _Consumer(set())
    monitor._apply(_Round({}, topic_exists=False))
    assert membership.update(consumer)
    assert membership.released
    monitor._apply(_Round({0: (0, 0)}, topic_exists=True))
    assert membership.update(consumer)
    assert not membership.released
    assert consumer.calls == ["unsubscribe", "subscribe"]


def test_partitions_nobody_reads_make_the_member_rejoin_once_a_while(
    clock: list[float],
) -> None:
    monitor = GroupMonitor(["127.0.0.1:1"], "t", "g")
    # Partition 2 of a delay topic held here says nothing of the topic's partition 2.
    membership, consumer = _membership(monitor), _Consumer({0, 1}, delay_held={2, 3})
    # Partitions 2 and 3 were just added, with records; this member holds 0 and 1.
    monitor._apply(_Round({0: (5, 5), 1: (5, 5), 2: (10, 0), 3: (0, 0)}, topic_exists=True))
    clock[0] += REBALANCE_AFTER_S - 1
    monitor._apply(_Round({0: (5, 5), 1: (5, 5), 2: (10, 0), 3: (0, 0)}, topic_exists=True))
    assert not membership.update(consumer)  # not long enough yet
    clock[0] += 2
    monitor._apply(_Round({0: (5, 5), 1: (5, 5), 2: (10, 0), 3: (0, 0)}, topic_exists=True))
    assert membership.update(consumer)
    assert consumer.calls == ["unsubscribe", "subscribe"]
    assert not membership.released
    # Still unread right after: no second rebalance within REBALANCE_EVERY_S.
    clock[0] += REBALANCE_EVERY_S - 5
    monitor._apply(_Round({0: (5, 5), 1: (5, 5), 2: (10, 0), 3: (0, 0)}, topic_exists=True))
    assert not membership.update(consumer)
    clock[0] += 5
    monitor._apply(_Round({0: (5, 5), 1: (5, 5), 2: (10, 0), 3: (0, 0)}, topic_exists=True))
    assert membership.update(consumer)


def test_partitions_held_here_or_read_elsewhere_cause_no_rebalance(clock: list[float]) -> None:
    monitor = GroupMonitor(["127.0.0.1:1"], "t", "g")
    membership, consumer = _membership(monitor), _Consumer({0})
    monitor._apply(_Round({0: (10, 0), 1: (10, 0)}, topic_exists=True))
    for committed in range(1, 5):  # partition 1's owner (another member) commits
        clock[0] += REBALANCE_AFTER_S
        monitor._apply(_Round({0: (10, 0), 1: (10, committed)}, topic_exists=True))
        assert not membership.update(consumer)
    assert consumer.calls == []


def test_old_figures_from_the_monitor_cause_no_rebalance(clock: list[float]) -> None:
    monitor = GroupMonitor(["127.0.0.1:1"], "t", "g")
    membership, consumer = _membership(monitor), _Consumer(set())
    monitor._apply(_Round({0: (10, 0)}, topic_exists=True))
    clock[0] += REBALANCE_AFTER_S * 3  # no round since: the brokers are unreachable
    assert not membership.update(consumer)
    clock[0] += CHECK_EVERY_S  # it looks again only this often
    monitor._apply(_Round({0: (10, 0)}, topic_exists=True))
    assert membership.update(consumer)


def test_a_member_whose_assignment_just_changed_is_left_to_finish(clock: list[float]) -> None:
    """Partitions this member just lost (a rebalance, a session the broker expired)
    are kafka-python's to win back: leaving then would only delay the group."""
    monitor = GroupMonitor(["127.0.0.1:1"], "t", "g")
    membership, consumer = _membership(monitor), _Consumer(set())
    monitor._apply(_Round({0: (10, 0)}, topic_exists=True))
    clock[0] += REBALANCE_AFTER_S
    membership.assignment_changed()  # partition 0 was just lost
    monitor._apply(_Round({0: (10, 0)}, topic_exists=True))
    assert not membership.update(consumer)
    clock[0] += REBALANCE_AFTER_S - 1
    monitor._apply(_Round({0: (10, 0)}, topic_exists=True))
    assert not membership.update(consumer)
    clock[0] += CHECK_EVERY_S  # unchanged for REBALANCE_AFTER_S, partition 0 unread: act
    monitor._apply(_Round({0: (10, 0)}, topic_exists=True))
    assert membership.update(consumer)
    assert consumer.calls == ["unsubscribe", "subscribe"]


class _Coordinator:
    def __init__(self) -> None:
        self.is_stable = False

    def stable(self) -> bool:
        return self.is_stable


def test_a_join_that_never_completes_is_started_over(clock: list[float]) -> None:
    """kafka-python holding a member out of the group (joining, nothing assigned)
    for JOIN_STUCK_S: the member starts over, at most once per REBALANCE_EVERY_S."""
    monitor = GroupMonitor(["127.0.0.1:1"], "t", "g")
    membership, consumer = _membership(monitor), _Consumer(set())
    coordinator = _Coordinator()
    consumer._coordinator = coordinator  # type: ignore[attr-defined]
    assert not membership.update(consumer)  # joining: the clock starts
    clock[0] += JOIN_STUCK_S - 1
    assert not membership.update(consumer)
    clock[0] += 1
    assert membership.update(consumer)
    assert consumer.calls == ["unsubscribe", "subscribe"]
    clock[0] += JOIN_STUCK_S  # still stuck, but it started over less than a minute ago
    assert not membership.update(consumer)
    coordinator.is_stable = True  # joined: the count ends
    clock[0] += REBALANCE_EVERY_S
    assert not membership.update(consumer)
    assert consumer.calls == ["unsubscribe", "subscribe"]
