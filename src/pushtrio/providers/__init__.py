"""Push providers: one small interface, mock twins for FCM, APNs and Firebase."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import ProviderError
from ..model import Notification
from .mock import FAILURE_MIX, MockProvider, ProviderStats, build_providers, provider_seed


class Provider(Protocol):
    """Delivers one notification or raises a ProviderError.

    Raises TransientProviderError for failures worth retrying and
    PermanentProviderError for those that will never pass.
    """

    name: str

    async def send(self, notification: Notification, attempt: int) -> None: ...

    async def send_many(
        self, notifications: Sequence[Notification], attempt: int
    ) -> list[ProviderError | None]:
        """Deliver many in one call; per notification, None on success or its error.

        Real providers batch (FCM's batch send, APNs streams multiplexed on one
        HTTP/2 connection), so the pipeline makes every first attempt this way.
        """
        ...


@runtime_checkable
class ReportsStats(Protocol):
    """A provider that keeps counters and a health flag (the mock providers do)."""

    def stats(self) -> ProviderStats: ...


def provider_stats(provider: Provider) -> ProviderStats:
    """Counters of ``provider``; zeros and healthy for one that keeps none."""
    if isinstance(provider, ReportsStats):
        return provider.stats()
    return ProviderStats(name=provider.name)


__all__ = [
    "FAILURE_MIX",
    "MockProvider",
    "Provider",
    "ProviderStats",
    "ReportsStats",
    "build_providers",
    "provider_seed",
    "provider_stats",
]
