"""One provider attempt for many notifications, and the back-off between attempts.

:func:`first_attempts` makes attempt n of a batch in one provider call, bounded by
a timeout, and says per notification whether it went out and, if not, why and
whether for good. The wait before retry n is
:func:`pushtrio.contract.delays.backoff_delay_s`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..contract.errors import PermanentProviderError, ProviderError
from ..contract.outcome import DeviceCounts

if TYPE_CHECKING:
    from ..contract.notification import Notification
    from ..providers.base import Provider


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
