"""The reader's membership of the consumer group: when to leave, join and rebalance.

All of it runs in the reader thread, the only caller of the consumer:

- leave while asked to (:meth:`Membership.release`: a backend keeps refusing us) or
  while the topic does not exist (kafka-python spins on a deleted topic); join again
  once both are over;
- ask the group to rebalance when partitions with records waiting have seen no commit
  for REBALANCE_AFTER_S and this member does not hold them. Nobody is reading them:
  partitions added to the topic that the group has not noticed (kafka-python normally
  notices within METADATA_MAX_AGE_MS, but not always), or a member that is gone
  without the group knowing. Leaving and joining again makes the group recompute
  the assignment from fresh metadata. At most once per REBALANCE_EVERY_S, and only
  once this member's assignment has been unchanged for REBALANCE_AFTER_S: a member
  that just lost its partitions (a rebalance, a session the broker expired) is
  rejoining on its own, and leaving in the middle of that only makes the group wait
  for it again. A member whose join never completes (no assignment at all) is still
  made to start over after REBALANCE_AFTER_S;
- start its join over when kafka-python has held it out of the group (not stable,
  nothing assigned) for JOIN_STUCK_S. Seen on a freshly started broker: a member
  that never got past joining while the others took every partition, so no unread
  partition ever showed for the check above. At most once per REBALANCE_EVERY_S.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .monitor import GroupMonitor

log = logging.getLogger(__name__)

REBALANCE_AFTER_S = 20.0
REBALANCE_EVERY_S = 60.0
CHECK_EVERY_S = 2.0
"""How often the reader looks for unread partitions (the monitor measures every 2 s)."""
JOIN_STUCK_S = 30.0
"""A member out of the group (joining, nothing assigned) this long starts over."""
MONITOR_FRESH_S = 10.0
"""Older figures from the group monitor are not acted on."""


class Membership:
    """Decides, round by round, whether the reader subscribes, unsubscribes or rejoins."""

    def __init__(
        self,
        topics: Sequence[str],
        group: str,
        monitor: GroupMonitor,
        listener: Callable[[], Any],
    ) -> None:
        self._topics = list(topics)
        """The main topic first, then its delay topics."""
        self._group = group
        self._monitor = monitor
        self._listener = listener
        self._wanted = threading.Event()  # cleared: stay out of the group until set again
        self._wanted.set()
        self.released = False
        """Whether the reader is out of the group (read by /health)."""
        self._rebalanced_at = -REBALANCE_EVERY_S
        self._checked_at = -CHECK_EVERY_S
        self._assignment_changed_at = time.monotonic()
        self._joining_since: float | None = None

    def assignment_changed(self) -> None:
        """Note that partitions were assigned, revoked or lost (any thread)."""
        self._assignment_changed_at = time.monotonic()

    def release(self) -> None:
        """Leave the group at the reader's next round (thread-safe)."""
        self._wanted.clear()

    def rejoin(self) -> None:
        """Join again after :meth:`release` (thread-safe)."""
        self._wanted.set()

    def update(self, consumer: Any) -> bool:
        """One round's decision, in the reader thread; True if the subscription changed.

        After a change the records the reader still holds are stale: their partitions
        are revoked (and what is settled committed) through the listener.
        """
        wanted = self._wanted.is_set() and self._monitor.topic_exists
        if wanted == self.released:
            if self.released:
                self._subscribe(consumer)
                log.warning("joined the consumer group %s", self._group)
            else:
                consumer.unsubscribe()  # revokes (and commits) through the listener
                self.released = True
                why = (
                    "a backend refuses us" if self._monitor.topic_exists else "its topic is missing"
                )
                log.error(
                    "left the consumer group %s (%s): other members take over", self._group, why
                )
            return True
        if self.released:
            return False
        if self._join_stuck(consumer):
            log.warning(
                "this member has not completed joining the consumer group %s for %.0fs: "
                "starting its join over",
                self._group,
                JOIN_STUCK_S,
            )
            consumer.unsubscribe()
            self._subscribe(consumer)
            return True
        unread = self._unread_elsewhere(consumer)
        if not unread:
            return False
        log.warning(
            "partitions %s have records waiting and no commit for %.0fs, and this member "
            "does not hold them: rejoining the group %s so that it reassigns them",
            unread,
            REBALANCE_AFTER_S,
            self._group,
        )
        consumer.unsubscribe()
        self._subscribe(consumer)
        return True

    @property
    def topics(self) -> list[str]:
        """What the reader subscribes to: the main topic first, then its delay topics."""
        return list(self._topics)

    def add_topics(self, topics: Sequence[str]) -> None:
        """Subscribe to ``topics`` too, from the next (re)join on."""
        self._topics += [t for t in topics if t not in self._topics]

    def _subscribe(self, consumer: Any) -> None:
        consumer.subscribe(self._topics, listener=self._listener())
        self.released = False

    def _join_stuck(self, consumer: Any) -> bool:
        now = time.monotonic()
        if _stable(consumer) or consumer.assignment():
            self._joining_since = None
            return False
        if self._joining_since is None:
            self._joining_since = now
            return False
        if (
            now - self._joining_since < JOIN_STUCK_S
            or now - self._rebalanced_at < REBALANCE_EVERY_S
        ):
            return False
        self._joining_since = None
        self._rebalanced_at = now
        return True

    def _unread_elsewhere(self, consumer: Any) -> list[int]:
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY_S:
            return []
        self._checked_at = now
        measured_at = self._monitor.updated_at
        if now - self._rebalanced_at < REBALANCE_EVERY_S or self._monitor.error:
            return []
        if measured_at is None or now - measured_at > MONITOR_FRESH_S:
            return []  # the figures are old: the monitor cannot reach the brokers
        if now - self._assignment_changed_at < REBALANCE_AFTER_S:
            return []  # the group just reassigned this member: let it finish
        main = self._topics[0]
        held = {tp.partition for tp in consumer.assignment() if tp.topic == main}
        unread = self._monitor.stalled(self._monitor.partitions() - held, REBALANCE_AFTER_S)
        if unread:
            self._rebalanced_at = now
        return sorted(unread)


def _stable(consumer: Any) -> bool:
    """Whether kafka-python holds this member as joined and not rebalancing.

    Reads the coordinator's state (kafka-python 3.0 has no public accessor); a
    consumer without one (a test double) counts as stable.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    stable = getattr(coordinator, "stable", None)
    return True if stable is None else bool(stable())
