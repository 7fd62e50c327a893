"""The urgent lane first: when the reader holds the main topic back for the urgent one.

Among records already read, the intake puts the higher priorities first. What is
not read yet is the broker's business: kafka-python returns what it fetched in its
own order, and with a backlog on the main topic it holds thousands of main records
in its fetch buffers. So while the urgent topic has records the reader has not
polled yet (its **unread**: the partition's last known high watermark minus the
consumer's position, both from kafka-python's fetch state, no network call), the
reader pauses the main topic's partitions; the next polls return the urgent records,
and the main topic resumes once they are all read.

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
    total = 0
    for tp in partitions:
        state = states.get(tp)
        if state is None:
            continue
        highwater, position = state.highwater, state.position
        if highwater is not None and position is not None:
            total += max(0, highwater - position.offset)
    return total


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
