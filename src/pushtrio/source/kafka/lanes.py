"""The urgent lane first: when the reader holds the main topic back for the urgent one.

Among records already read, the intake puts the higher priorities first. What is
not read yet is kafka-python's business, and it has two habits that would keep an
urgent record behind the main topic's backlog (measured on kafka-python 3.0.12: a
50,000-record backlog left urgent records unfetched for 1-2 s):

- it sends no fetch request while it still holds fetched records (``fetch_records``
  fetches again only once its buffers are drained, a few MB of the main topic), so
  :func:`fetch_idle_partitions` asks it to fetch the partitions that hold nothing,
  the urgent topic's among them, every round;
- it returns buffered records in the order they were fetched, so while the urgent
  topic, or a delay topic whose head is due, has records poll has not returned (its
  **unread**: the high watermark of its last fetch, parsed or still queued, minus
  the consumer's position; no network call) the reader pauses the main topic's
  partitions, and kafka-python parks what it fetched of them until they resume.
  Delay topics count because they hold what is due now: an urgent retry must not
  wait behind the backlog either.

Starvation bound: the main topic is held at most ``HOLD_MAX_S`` at a time, then
read for ``OPEN_S`` whatever the urgent lane holds, before it may be held again. Under
a steady urgent flood the main topic is read a fifth of the time, and the intake's
fair share (a quarter of each batch, oldest first) delivers what it read.

Each instance decides for its own partitions: an urgent record on a partition that
another instance owns pauses that instance's main partitions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

HOLD_MAX_S = 1.0
"""Longest the main topic is held back for the urgent one at a time."""
OPEN_S = 0.25
"""How long the main topic is then read before it may be held again."""


def unread(consumer: Any, partitions: Iterable[Any]) -> int:
    """Records of ``partitions`` (assigned) that the brokers have and poll has not
    returned yet, as kafka-python last heard; 0 for a partition it knows nothing of."""
    states = getattr(getattr(consumer, "_subscription", None), "assignment", None)
    if states is None:
        return 0
    wanted = set(partitions)
    highwaters = {tp: states[tp].highwater for tp in wanted if tp in states}
    # A fetch response still queued, not parsed yet, knows a newer high watermark.
    queued = getattr(getattr(consumer, "_fetcher", None), "_completed_fetches", ())
    for fetch in list(queued):
        tp = getattr(fetch, "topic_partition", None)
        if tp in highwaters:
            known = highwaters[tp]
            mark = getattr(fetch.partition_data, "high_watermark", -1)
            highwaters[tp] = mark if known is None else max(known, mark)
    total = 0
    for tp, highwater in highwaters.items():
        position = states[tp].position
        if highwater is not None and position is not None:
            total += max(0, highwater - position.offset)
    return total


def fetch_idle_partitions(consumer: Any) -> None:
    """Have kafka-python send fetch requests for the partitions holding no fetched
    records (no-op for a node with a fetch in flight); only the thread that polls may
    call it."""
    send = getattr(getattr(consumer, "_fetcher", None), "send_fetches", None)
    if send is not None:
        send()


class LaneGate:
    """Whether the main topic waits for the urgent one, round by round."""

    def __init__(
        self,
        hold_max_s: float = HOLD_MAX_S,
        open_s: float = OPEN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hold_max_s = hold_max_s
        self._open_s = open_s
        self._clock = clock
        self._since: float | None = None
        self._open_until = 0.0
        self.holds = 0
        """How many times the main topic was held back (for /health and tests)."""

    @property
    def holding(self) -> bool:
        return self._since is not None

    def hold_main(self, urgent_unread: int) -> bool:
        """True while the main topic should stay paused for ``urgent_unread`` records."""
        if urgent_unread <= 0:
            self._since = None
            return False
        now = self._clock()
        if self._since is None:
            if now < self._open_until:
                return False  # the main topic's turn after a full hold
            self._since = now
            self.holds += 1
            return True
        if now - self._since < self._hold_max_s:
            return True
        self._since = None  # held long enough: the main topic's turn
        self._open_until = now + self._open_s
        return False
