"""Per-user sliding-window rate limiting: the interface and its status record.

Two backends share these exact semantics: :mod:`.redis` (one atomic Lua script per
decision, Redis server time, many decisions per round trip) and :mod:`.memory`
(the in-process twin used by the embedded mode and unit tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """What ``GET /ratelimit/<user_id>`` reports."""

    user_id: str
    limit: int
    window_s: float
    used: int
    remaining: int
    reset_in_s: float


def check_window(limit: int, window_s: float) -> None:
    """Raise ValueError unless ``limit`` >= 1 and ``window_s`` > 0 (both backends use it)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if not window_s > 0:
        raise ValueError(f"window_s must be above zero, got {window_s}")


class Limiter(Protocol):
    """Decides whether a user may receive one more notification now."""

    limit: int
    window_s: float

    async def acquire_many(self, requests: Sequence[tuple[str, str]]) -> list[bool]:
        """Decide ``(user_id, message_id)`` requests in order; True means allowed.

        A request whose message id already holds a slot in the user's window is
        allowed again without taking a second slot (re-reads after a crash are
        idempotent). Raises BackendError when the store cannot be reached. The
        same decisions as :meth:`decide_many` (allowed is a wait of 0.0).
        """
        ...

    async def decide_many(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        """Decide requests as :meth:`acquire_many` does; say when refused ones may retry.

        Each result is 0.0 when the request is allowed (a slot taken, or its
        message id already holding one), else the seconds, at least one
        microsecond, until the user's window frees a slot by the store's clock:
        until the entry whose leaving brings the window below the limit (the
        oldest one, unless the limit was lowered) is strictly older than the
        window, i.e. its time plus the window plus one microsecond, minus now.
        Asking again after that wait is allowed unless other requests took the
        slot first. Raises BackendError when the store cannot be reached.
        """
        ...

    async def status(self, user_id: str) -> LimitStatus: ...

    async def reset(self, user_id: str) -> None: ...

    async def check(self) -> None:
        """Raise BackendError unless the store answers (health probe)."""
        ...

    async def aclose(self) -> None: ...
