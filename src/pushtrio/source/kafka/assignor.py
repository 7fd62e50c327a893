"""A cooperative assignor that balances every topic on its own.

The service subscribes its topic and its delay topics (``.retry.<n>``, ``.park``,
``.defer``) in one group. kafka-python's cooperative-sticky assignor balances the
*total* number of partitions per member, so two instances may each get whole
topics: one all of the main topic, the other all of the delay topics, which
leaves one doing all the work. :class:`TopicBalancedAssignor` gives each member
of a topic's subscribers ``n // m`` or ``n // m + 1`` of its partitions, keeping
partitions where they are when that is balanced (sticky), and keeps the
cooperative protocol of KIP-429 from its parent: a partition that changes owner
is first revoked by the old one and given to the new one in the next round.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment
from kafka.structs import TopicPartition

Assignment = dict[str, set[TopicPartition]]


def balanced_assignment(
    partitions: Mapping[str, Sequence[int]],
    subscriptions: Mapping[str, Iterable[str]],
    owned: Mapping[str, Iterable[TopicPartition]],
) -> Assignment:
    """Each topic's partitions over its subscribers, sticky and balanced per topic.

    ``partitions``: topic -> its partition numbers; ``subscriptions``: member ->
    topics; ``owned``: member -> what it holds now. The members given one partition
    more than others (when a topic does not divide evenly) are the least loaded so
    far, so the surplus spreads over the members, then those holding most of it now.
    """
    result: Assignment = {member: set() for member in subscriptions}
    load: dict[str, int] = dict.fromkeys(subscriptions, 0)
    holder: dict[TopicPartition, str] = {}
    for member, holding in sorted(owned.items()):
        for tp in holding:
            holder.setdefault(tp, member)
    for topic in sorted(partitions):
        members = sorted(m for m, topics in subscriptions.items() if topic in set(topics))
        if not members:
            continue
        tps = [TopicPartition(topic, p) for p in sorted(partitions[topic])]
        held: dict[str, list[TopicPartition]] = defaultdict(list)
        for tp in tps:
            if holder.get(tp) in members:
                held[holder[tp]].append(tp)
        base, extra = divmod(len(tps), len(members))
        ranked = sorted(members, key=lambda m: (load[m], -len(held[m]), m))
        quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(ranked)}
        free: list[TopicPartition] = []
        for member in members:
            keep = held[member][: quota[member]]
            result[member].update(keep)
            free += held[member][quota[member] :]
        taken = {tp for member in members for tp in result[member]}
        free += [tp for tp in tps if tp not in taken and tp not in free]
        free.sort()
        for member in sorted(members, key=lambda m: (load[m], m)):
            mine = [tp for tp in result[member] if tp.topic == topic]
            while len(mine) < quota[member] and free:
                tp = free.pop(0)
                result[member].add(tp)
                mine.append(tp)
        for member in members:
            load[member] += quota[member]
    return result


class TopicBalancedAssignor(CooperativeStickyAssignor):  # type: ignore[misc]
    """Cooperative, sticky, and balanced per topic (see the module)."""

    name = "pushtrio-topic-balanced"

    def assign(self, cluster: Any, members: Sequence[Any]) -> dict[str, Any]:
        parsed = {m.member_id: self.parse_member_metadata(m.metadata) for m in members}
        topics = {t for p in parsed.values() for t in p.subscription}
        partitions = {t: sorted(cluster.partitions_for_topic(t) or ()) for t in topics}
        target = balanced_assignment(
            partitions,
            {member: p.subscription for member, p in parsed.items()},
            {member: p.partitions for member, p in parsed.items()},
        )
        owner = {tp: member for member, p in parsed.items() for tp in p.partitions}
        assignment = {}
        for member in parsed:
            # A partition another member still holds is left out this round: that
            # member revokes it, rejoins, and the next round gives it here.
            now = [tp for tp in target[member] if owner.get(tp) in (None, member)]
            by_topic: dict[str, list[int]] = defaultdict(list)
            for tp in now:
                by_topic[tp.topic].append(tp.partition)
            assignment[member] = ConsumerProtocolAssignment(
                self.version, sorted((t, sorted(ps)) for t, ps in by_topic.items()), b""
            )
        return assignment
