"""The in-process limiter: the Redis limiter's semantics without a server.

Used by the embedded mode (``REDIS_ADDR=memory://``) and by unit tests, where
trio's autojump clock makes the window edges exact to test. The rules are those
of :mod:`.redis`: a sliding log per user, an entry leaves the window once it is
strictly older than the window, a message id already in the window is
allowed again without a second slot, and a refused request learns how long until
its user's window frees a slot (see :meth:`MemoryLimiter.decide_many`). The clock
is trio's (or the one given), in seconds.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from . import LimitStatus, check_window

_MICROSECOND = 1e-6
"""The step past the window that makes an entry strictly older (Redis's unit)."""


@dataclass(slots=True)
class _Window:
    """One user's slots: (taken_at, message_id), oldest first, and the ids."""

    entries: deque[tuple[float, str]] = field(default_factory=deque)
    members: set[str] = field(default_factory=set)

    def prune(self, oldest_allowed: float) -> None:
        entries = self.entries
        while entries and entries[0][0] < oldest_allowed:
            _, message_id = entries.popleft()
            self.members.discard(message_id)


class MemoryLimiter:
    """Per-user sliding-window limiter in process memory; exact, no I/O.

    Memory stays bounded: a user whose newest entry has left the window is
    forgotten (as the Redis key expires). Each method is a trio checkpoint: when
    cancelled there, it raises ``trio.Cancelled`` before deciding anything. It
    never raises BackendError.
    """

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = trio.current_time
    ) -> None:
        check_window(limit, window_s)
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        # Ordered by each user's newest entry (moved to the end on every add), so
        # users whose whole window has passed are found at the front.
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    async def acquire_many(self, requests: Sequence[tuple[str, str]]) -> list[bool]:
        """Decide ``(user_id, message_id)`` requests in order; True means allowed.

        A message id already holding a slot in its user's window is allowed
        without a second slot. Raises ``trio.Cancelled`` (deciding nothing) when
        cancelled. The decisions of :meth:`decide_many`, without the waits.
        """
        return [wait == 0.0 for wait in await self.decide_many(requests)]

    async def decide_many(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Decide requests in order; 0.0 means allowed, else seconds until a slot frees.

        The wait, at least one microsecond, runs until the entry whose leaving
        brings the user's window below the limit (the oldest, unless the limit
        was lowered) is strictly older than the window: its time plus the window
        plus one microsecond, minus now, by this limiter's clock. Every request of
        one call is decided at the same "now". Raises ``trio.Cancelled``
        (deciding nothing) when cancelled.
        """
        await trio.lowlevel.checkpoint()
        now = self._clock()
        self._forget_idle(now)
        return [self._decide(user_id, message_id, now) for user_id, message_id in requests]

    async def status(self, user_id: str) -> LimitStatus:
        """Slots used and left in ``user_id``'s window now.

        ``reset_in_s`` is the time until the oldest entry leaves the window (0
        when the window is empty).
        """
        await trio.lowlevel.checkpoint()
        now = self._clock()
        window = self._windows.get(user_id)
        used = 0
        reset_in_s = 0.0
        if window is not None:
            window.prune(now - self.window_s)
            used = len(window.entries)
            if window.entries:
                reset_in_s = max(0.0, window.entries[0][0] + self.window_s - now)
        return LimitStatus(
            user_id=user_id,
            limit=self.limit,
            window_s=self.window_s,
            used=used,
            remaining=max(0, self.limit - used),
            reset_in_s=reset_in_s,
        )

    async def reset(self, user_id: str) -> None:
        """Forget ``user_id``'s window."""
        await trio.lowlevel.checkpoint()
        self._windows.pop(user_id, None)

    async def check(self) -> None:
        """Always healthy: there is nothing to reach."""
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Drop every window."""
        await trio.lowlevel.checkpoint()
        self._windows.clear()

    def _decide(self, user_id: str, message_id: str, now: float) -> float:
        window = self._windows.get(user_id)
        if window is None:
            window = self._windows[user_id] = _Window()
        window.prune(now - self.window_s)
        if message_id in window.members:
            return 0.0
        if len(window.entries) >= self.limit:
            return self._wait(window, now)
        window.entries.append((now, message_id))
        window.members.add(message_id)
        self._windows.move_to_end(user_id)
        return 0.0

    def _wait(self, window: _Window, now: float) -> float:
        """Seconds until the full, pruned ``window`` drops below the limit."""
        # Once this entry has left, limit - 1 remain (all those after it).
        taken_at, _ = window.entries[len(window.entries) - self.limit]
        return max(_MICROSECOND, taken_at + self.window_s + _MICROSECOND - now)

    def _forget_idle(self, now: float) -> None:
        # Amortised O(1) per call: each user is removed at most once per visit.
        oldest_allowed = now - self.window_s
        windows = self._windows
        while windows:
            user_id, window = next(iter(windows.items()))
            if window.entries and window.entries[-1][0] >= oldest_allowed:
                break
            del windows[user_id]


__all__ = ["MemoryLimiter"]
