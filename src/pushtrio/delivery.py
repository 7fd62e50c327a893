"""One provider attempt for many notifications, and the back-off between attempts.

:func:`first_attempts` makes attempt n of a batch in one provider call, bounded by
a timeout, and says per notification whether it went out and, if not, why and
whether for good. :func:`backoff_delay_s` is the wait before retry n: the delay of
retry tier n (see :mod:`pushtrio.schedule`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .device_counts import DeviceCounts
from .errors import PermanentProviderError, ProviderError

if TYPE_CHECKING:
    from .model import Notification
    from .providers.base import Provider

MAX_BACKOFF_S = 30.0
"""Upper bound of one backoff delay before jitter, however many retries came before."""

_unseeded = random.Random()


def backoff_delay_s(retry: int, retry_delay_s: float, rng: random.Random | None = None) -> float:
    """The wait before retry number ``retry`` (1 for the first retry).

    Exponential with "equal jitter": the base ``retry_delay_s * 2**(retry - 1)``,
    capped at :data:`MAX_BACKOFF_S`, is scaled by a uniform factor in [0.5, 1.0].
    Half the base is kept so that a retry never comes right back at a provider
    that just failed; the random half spreads the retries of many workers that
    failed together (for instance on a 503 burst) so they do not return in lockstep.
    """
    if retry < 1:
        raise ValueError(f"retry counts from 1, not {retry}")
    # Clamp the exponent so that hundreds of retries cannot overflow the float.
    base_s = min(retry_delay_s * 2.0 ** min(retry - 1, 64), MAX_BACKOFF_S)
    return base_s * (rng if rng is not None else _unseeded).uniform(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt of one notification came to."""

    error: str = ""
    """Empty when it went out."""
    permanent: bool = False
    devices: DeviceCounts | None = None
    """Per-device counts, from a provider that delivers to device tokens."""
    retry_after_s: float | None = None
    """The provider's Retry-After, with a transient failure."""

    @property
    def delivered(self) -> bool:
        return not self.error


DELIVERED = Answer()


def answer_of(result: ProviderError | DeviceCounts | None) -> Answer:
    """A provider's per-notification result as an :class:`Answer`."""
    if result is None:
        return DELIVERED
    if isinstance(result, ProviderError):
        return Answer(
            result.reason or "failed",
            isinstance(result, PermanentProviderError),
            result.devices,
            result.retry_after_s,
        )
    return Answer(devices=result)


async def first_attempts(
    provider: Provider,
    notifications: Sequence[Notification],
    *,
    timeout_s: float,
    attempt: int = 1,
) -> list[Answer]:
    """Attempt number ``attempt`` of many notifications in one provider call.

    Per notification, an :class:`Answer`. Running out of ``timeout_s`` fails them all
    transiently. Cancellation propagates.
    """
    with trio.move_on_after(timeout_s):
        results = await provider.send_many(notifications, attempt)
        return [answer_of(result) for result in results]
    return [Answer(f"timeout after {timeout_s:g}s")] * len(notifications)
