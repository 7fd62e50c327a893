"""The provider contract: what the pipeline calls, and what a provider reports.

The mock providers (:mod:`.mock`) and any real provider implement :class:`Provider`;
the pipeline and the service import this module, never an implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..contract.errors import ProviderError
from ..contract.notification import Notification
from ..contract.outcome import DeviceCounts


class Provider(Protocol):
    """Delivers one notification or raises a ProviderError.

    Raises TransientProviderError for failures worth retrying and
    PermanentProviderError for those that will never pass.
    """

    name: str

    async def send(self, notification: Notification, attempt: int) -> None: ...

    async def send_many(
        self, notifications: Sequence[Notification], attempt: int
    ) -> list[ProviderError | DeviceCounts | None]:
        """Deliver many in one call; per notification, None or DeviceCounts (what
        reached the user's devices) on success, or its error.

        Real providers batch (FCM's batch send, APNs streams multiplexed on one
        HTTP/2 connection), so the pipeline makes every first attempt this way.
        """
        ...


@dataclass(frozen=True, slots=True)
class ProviderStats:
    """A snapshot of one provider's counters (per call, not per notification)."""

    name: str
    sent: int = 0
    failed_transient: int = 0
    failed_permanent: int = 0
    consecutive_failures: int = 0
    healthy: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed_transient": self.failed_transient,
            "failed_permanent": self.failed_permanent,
            "consecutive_failures": self.consecutive_failures,
            "healthy": self.healthy,
        }


UNHEALTHY_AFTER_FAILURES = 50
"""A provider whose last this-many calls all failed reports itself unhealthy."""


class Counters:
    """A provider's running counts, behind :meth:`ReportsStats.stats`."""

    def __init__(self) -> None:
        self.sent = self.failed_transient = self.failed_permanent = 0
        self.consecutive_failures = 0

    def ok(self) -> None:
        self.sent += 1
        self.consecutive_failures = 0

    def failed(self, *, permanent: bool) -> None:
        self.consecutive_failures += 1
        if permanent:
            self.failed_permanent += 1
        else:
            self.failed_transient += 1

    @property
    def healthy(self) -> bool:
        """False once the last :data:`UNHEALTHY_AFTER_FAILURES` calls all failed."""
        return self.consecutive_failures < UNHEALTHY_AFTER_FAILURES

    def snapshot(self, name: str) -> ProviderStats:
        return ProviderStats(
            name=name,
            sent=self.sent,
            failed_transient=self.failed_transient,
            failed_permanent=self.failed_permanent,
            consecutive_failures=self.consecutive_failures,
            healthy=self.healthy,
        )


@runtime_checkable
class ReportsStats(Protocol):
    """A provider that keeps counters and a health flag (the mock providers do)."""

    def stats(self) -> ProviderStats: ...


@runtime_checkable
class Configurable(Protocol):
    """A provider whose simulation can be changed at run time (the mock providers)."""

    def describe(self) -> dict[str, float | str]: ...

    def configure(
        self,
        *,
        success_rate: float | None = None,
        latency_s: float | None = None,
        failure: str | None = None,
    ) -> None: ...


def provider_stats(provider: Provider) -> ProviderStats:
    """Counters of ``provider``; zeros and healthy for one that keeps none."""
    if isinstance(provider, ReportsStats):
        return provider.stats()
    return ProviderStats(name=provider.name)
