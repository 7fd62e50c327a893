"""The per-topic balanced, sticky assignment behind the cooperative assignor."""

from __future__ import annotations

from collections import Counter

import pytest
from kafka.structs import TopicPartition

from pushtrio.source.kafka.assignor import balanced_assignment

TOPICS = ["t", "t.retry.1", "t.retry.2", "t.retry.3", "t.park", "t.defer"]


def per_topic(assignment: dict[str, set[TopicPartition]]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for member, tps in assignment.items():
        for tp in tps:
            counts.setdefault(tp.topic, Counter())[member] += 1
    return counts


@pytest.mark.parametrize(("members", "partitions"), [(2, 6), (3, 6), (4, 6), (2, 3), (5, 2)])
def test_every_topic_is_shared_out_on_its_own(members: int, partitions: int) -> None:
    names = [f"m{i}" for i in range(members)]
    assignment = balanced_assignment(
        dict.fromkeys(TOPICS, range(partitions)), dict.fromkeys(names, TOPICS), {}
    )
    every = [tp for tps in assignment.values() for tp in tps]
    assert len(every) == len(set(every)) == len(TOPICS) * partitions
    for topic, counts in per_topic(assignment).items():
        shares = [counts[name] for name in names]
        assert max(shares) - min(shares) <= 1, (topic, shares)
    # The one-more shares spread over the members, not always the same one.
    totals = [len(assignment[name]) for name in names]
    assert max(totals) - min(totals) <= 1 + (len(TOPICS) * partitions % members > 0)


def test_a_balanced_assignment_stays_where_it_is() -> None:
    first = balanced_assignment(dict.fromkeys(TOPICS, range(6)), dict.fromkeys("ab", TOPICS), {})
    again = balanced_assignment(dict.fromkeys(TOPICS, range(6)), dict.fromkeys("ab", TOPICS), first)
    assert again == first


def test_a_new_member_takes_a_share_of_each_topic_and_only_that_moves() -> None:
    before = balanced_assignment(dict.fromkeys(TOPICS, range(6)), dict.fromkeys("ab", TOPICS), {})
    after = balanced_assignment(
        dict.fromkeys(TOPICS, range(6)), dict.fromkeys("abc", TOPICS), before
    )
    assert all(counts["c"] == 2 for counts in per_topic(after).values())
    for member in "ab":
        assert after[member] <= before[member]  # nothing moves between a and b


def test_only_subscribers_of_a_topic_get_it() -> None:
    assignment = balanced_assignment(
        {"t": range(4), "t.park": range(4)},
        {"a": ["t", "t.park"], "b": ["t"]},
        {},
    )
    assert {tp.topic for tp in assignment["b"]} == {"t"}
    assert Counter(tp.topic for tp in assignment["a"]) == {"t": 2, "t.park": 4}


def test_the_surplus_of_odd_topics_spreads_over_the_members() -> None:
    assignment = balanced_assignment(
        dict.fromkeys(TOPICS, range(3)), dict.fromkeys("ab", TOPICS), {}
    )
    assert sorted(len(tps) for tps in assignment.values()) == [9, 9]
    again = balanced_assignment(
        dict.fromkeys(TOPICS, range(3)), dict.fromkeys("ab", TOPICS), assignment
    )
    assert again == assignment
