"""Priority lanes: which topic a notification is written to, and its rank in memory.

No I/O here. A notification whose ``priority`` is at least the urgent priority goes
to the urgent topic; the others to the main topic. The service reads both, the
urgent lane first (see ``source/kafka/lanes.py``), and among the records read and
waiting for a worker a higher priority is taken first (``source/intake.py``).

The rank of a record is read before it is decoded (:func:`peek_priority`): a record
whose value is not a notification ranks as the default priority, and its outcome
(``invalid``) says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

PRIORITIES = 4
"""Priorities 0 (lowest) to 3."""
DEFAULT_PRIORITY = 1
"""The priority of a notification that names none."""
URGENT = "urgent"
MAIN = "main"
LANES = (URGENT, MAIN)


class _Priority(msgspec.Struct):
    priority: int | float | None = None


_decode_priority = msgspec.json.Decoder(_Priority).decode
_PRIORITY_KEY = b'"priority"'


def peek_priority(value: bytes | None) -> int:
    """The priority of a record's value, 0-3; DEFAULT_PRIORITY when it names none or
    is not a notification (its decode reports that later)."""
    if not value or _PRIORITY_KEY not in value:
        return DEFAULT_PRIORITY
    try:
        priority = _decode_priority(value).priority
    except msgspec.DecodeError:
        return DEFAULT_PRIORITY
    if priority is None or not 0 <= priority < PRIORITIES or priority != int(priority):
        return DEFAULT_PRIORITY
    return int(priority)


@dataclass(frozen=True, slots=True)
class LaneTopics:
    """Where each lane's records are written and read."""

    main: str
    urgent: str
    """Empty: no urgent lane (everything goes to ``main``)."""
    urgent_priority: int = 3

    @property
    def enabled(self) -> bool:
        return bool(self.urgent)

    def lane_of(self, priority: int) -> str:
        """URGENT or MAIN: the lane of a notification of ``priority``."""
        return URGENT if self.urgent and priority >= self.urgent_priority else MAIN

    def topic_for(self, priority: int) -> str:
        """The topic a notification of ``priority`` is written to."""
        return self.urgent if self.lane_of(priority) == URGENT else self.main


DEFAULT_LANES = LaneTopics("notifications", "notifications.urgent")
"""The lanes of the default settings."""
