"""Outcomes: what finally happened to one notification, exactly one per record.

:class:`DeviceCounts` (what a notification did on a user's devices) is carried by
the outcome and by provider errors alike.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class DeviceCounts:
    """What one notification did on the user's devices (real providers only)."""

    accepted: int = 0
    failed: int = 0
    pruned: int = 0
    """Tokens the provider called dead, removed from the registry."""

    def to_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "failed": self.failed, "pruned": self.pruned}


class OutcomeKind(enum.StrEnum):
    """What finally happened to one notification; exactly one per message."""

    DELIVERED = "delivered"
    RATE_LIMITED = "rate_limited"
    EXPIRED = "expired"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    INVALID = "invalid"

    @property
    def dead_letter(self) -> bool:
        """Whether this outcome is written to the dead-letter topic."""
        return self in (OutcomeKind.FAILED, OutcomeKind.INVALID)


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """The single result of processing one record, published as a live event."""

    event: OutcomeKind
    id: str
    user_id: str = ""
    provider: str = ""
    priority: int = 1
    attempts: int = 0
    latency_ms: float = 0.0
    error: str = ""
    ts: float = 0.0
    partition: int = -1
    offset: int = -1
    devices: DeviceCounts | None = None
    """With real providers: how many of the user's devices accepted, failed, were pruned."""

    def to_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {
            "event": self.event.value,
            "id": self.id,
            "user_id": self.user_id,
            "provider": self.provider,
            "priority": self.priority,
            "attempts": self.attempts,
            "latency_ms": round(self.latency_ms, 3),
            "error": self.error or None,
            "ts": self.ts,
        }
        if self.devices is not None:
            event["devices"] = self.devices.to_dict()
        return event
