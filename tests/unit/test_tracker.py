"""OffsetTracker: low-watermark commit points, epochs, revocation, thread safety."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pushtrio.source.tracker import OffsetTracker

TP = ("notifications", 0)
OTHER = ("notifications", 1)


def assigned(offsets: Sequence[int] = ()) -> tuple[OffsetTracker, int]:
    tracker = OffsetTracker()
    epoch = tracker.assign(TP)
    if offsets:
        assert tracker.hand_out(TP, epoch, offsets)
    return tracker, epoch


def test_unassigned_partition_has_no_epoch_and_no_commit_point() -> None:
    tracker = OffsetTracker()
    assert tracker.epoch(TP) is None
    assert not tracker.is_current(TP, 1)
    assert tracker.committed(TP) is None
    assert tracker.committable() == {}
    assert tracker.assigned() == []
    assert tracker.in_flight() == 0


def test_assign_starts_a_new_epoch_each_time() -> None:
    tracker = OffsetTracker()
    first = tracker.assign(TP)
    second = tracker.assign(TP)
    assert second > first
    assert tracker.epoch(TP) == second
    assert tracker.is_current(TP, second)
    assert not tracker.is_current(TP, first)
    assert tracker.assign(OTHER) == 1  # epochs count per partition
    assert sorted(tracker.assigned()) == [TP, OTHER]


def test_nothing_handed_out_nothing_to_commit() -> None:
    tracker, _ = assigned()
    assert tracker.committable() == {}


def test_out_of_order_completions_commit_up_to_first_unsettled() -> None:
    tracker, epoch = assigned(range(5))
    assert tracker.in_flight() == 5
    assert tracker.committable() == {TP: 0}  # nothing settled: point still at 0

    tracker.settle(TP, epoch, [3, 1])
    assert tracker.committable() == {TP: 0}
    assert tracker.in_flight() == 3

    tracker.settle(TP, epoch, [0])
    assert tracker.committable() == {TP: 2}  # 0 and 1 settled, 2 is not

    tracker.settle(TP, epoch, [4])
    assert tracker.committable() == {TP: 2}

    tracker.settle(TP, epoch, [2])
    assert tracker.committable() == {TP: 5}  # all settled: one past the last
    assert tracker.in_flight() == 0


def test_gaps_in_offsets_are_not_waited_for() -> None:
    # Compacted topics and transaction markers leave holes: 2-4 and 6-8 never come.
    tracker, epoch = assigned([0, 1, 5, 9])
    tracker.settle(TP, epoch, [0, 1])
    assert tracker.committable() == {TP: 5}
    tracker.settle(TP, epoch, [9])
    assert tracker.committable() == {TP: 5}
    tracker.settle(TP, epoch, [5])
    assert tracker.committable() == {TP: 10}
    assert tracker.in_flight() == 0


def test_hand_out_in_several_calls_extends_the_same_partition() -> None:
    tracker, epoch = assigned(range(3))
    assert tracker.hand_out(TP, epoch, range(3, 6))
    tracker.settle(TP, epoch, range(6))
    assert tracker.committable() == {TP: 6}


def test_committable_only_reports_points_that_moved() -> None:
    tracker, epoch = assigned(range(4))
    tracker.settle(TP, epoch, [0, 1])
    assert tracker.committable() == {TP: 2}
    tracker.mark_committed({TP: 2})
    assert tracker.committed(TP) == 2
    assert tracker.committable() == {}

    tracker.settle(TP, epoch, [3])  # out of order: the point does not move
    assert tracker.committable() == {}

    tracker.settle(TP, epoch, [2])
    assert tracker.committable() == {TP: 4}


def test_committable_reports_each_partition_independently() -> None:
    tracker = OffsetTracker()
    first = tracker.assign(TP)
    second = tracker.assign(OTHER)
    tracker.hand_out(TP, first, range(3))
    tracker.hand_out(OTHER, second, range(10, 12))
    tracker.settle(TP, first, [0, 1, 2])
    tracker.settle(OTHER, second, [11])
    assert tracker.committable() == {TP: 3, OTHER: 10}
    tracker.mark_committed({TP: 3, OTHER: 10})
    assert tracker.committable() == {}


def test_mark_committed_ignores_unassigned_partitions() -> None:
    tracker, _ = assigned(range(2))
    tracker.mark_committed({OTHER: 7})
    assert tracker.committed(OTHER) is None
    assert tracker.assigned() == [TP]


def test_stale_epoch_hand_out_is_refused() -> None:
    tracker, old = assigned()
    new = tracker.assign(TP)
    assert not tracker.hand_out(TP, old, [0])
    assert tracker.in_flight() == 0
    assert tracker.hand_out(TP, new, [0])
    assert not tracker.hand_out(OTHER, 1, [0])  # never assigned


def test_stale_epoch_settle_is_ignored_after_revoke_and_reassign() -> None:
    tracker, old = assigned(range(5))
    tracker.settle(TP, old, [0])
    assert tracker.revoke([TP]) == {TP: 1}
    assert tracker.epoch(TP) is None

    new = tracker.assign(TP)
    assert new != old
    assert tracker.hand_out(TP, new, range(1, 5))
    # Late results of the old assignment must not move the new owner's commits.
    tracker.settle(TP, old, [1, 2, 3, 4])
    assert tracker.committable() == {TP: 1}
    assert tracker.in_flight() == 4

    tracker.settle(TP, new, [1, 2])
    assert tracker.committable() == {TP: 3}


def test_settle_after_revoke_without_reassign_is_ignored() -> None:
    tracker, epoch = assigned(range(2))
    tracker.revoke([TP])
    tracker.settle(TP, epoch, [0, 1])
    assert tracker.committable() == {}
    assert tracker.in_flight() == 0


def test_revoke_returns_uncommitted_commit_points_only() -> None:
    tracker = OffsetTracker()
    first = tracker.assign(TP)
    second = tracker.assign(OTHER)
    tracker.hand_out(TP, first, range(4))
    tracker.hand_out(OTHER, second, range(4))
    tracker.settle(TP, first, [0, 1, 3])
    tracker.settle(OTHER, second, [0, 1])
    tracker.mark_committed({OTHER: 2})  # OTHER's point is already committed

    assert tracker.revoke([TP, OTHER, ("unknown", 0)]) == {TP: 2}
    assert tracker.assigned() == []
    assert tracker.committable() == {}


def test_revoke_with_nothing_handed_out_returns_nothing() -> None:
    tracker, _ = assigned()
    assert tracker.revoke([TP]) == {}


def test_assign_forgets_the_previous_state() -> None:
    tracker, epoch = assigned(range(3))
    tracker.settle(TP, epoch, [0])
    tracker.mark_committed({TP: 1})
    tracker.assign(TP)
    assert tracker.committed(TP) is None
    assert tracker.committable() == {}
    assert tracker.in_flight() == 0


def test_settle_is_idempotent_before_the_watermark_passes() -> None:
    tracker, epoch = assigned(range(3))
    tracker.settle(TP, epoch, [1])
    tracker.settle(TP, epoch, [1])
    assert tracker.in_flight() == 2
    assert tracker.committable() == {TP: 0}


def test_settling_an_offset_twice_after_the_watermark_keeps_in_flight_right() -> None:
    tracker, epoch = assigned(range(3))
    tracker.settle(TP, epoch, [0])
    tracker.settle(TP, epoch, [0])  # e.g. a redelivered record settled a second time
    assert tracker.committable() == {TP: 1}
    assert tracker.in_flight() == 2


def test_threads_settling_disjoint_offsets_reach_the_right_commit_point() -> None:
    tracker, epoch = assigned(range(8000))
    threads_n = 8
    barrier = threading.Barrier(threads_n)

    def settle_share(i: int) -> None:
        barrier.wait()
        # Offsets i, i + n, i + 2n, ...: every thread keeps moving the same watermark.
        for offset in range(i, 8000, threads_n):
            tracker.settle(TP, epoch, [offset])
            tracker.committable()

    threads = [threading.Thread(target=settle_share, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert tracker.committable() == {TP: 8000}
    assert tracker.in_flight() == 0
