"""The contract of a real provider's wire client: one notification to some device tokens.

A :class:`PushClient` speaks one provider's documented protocol (FCM HTTP v1 in
:mod:`.fcm`, APNs over HTTP/2 in :mod:`.apns`) and nothing else: it knows no device
registry, no retries across calls, no breaker. It answers, per token, what the
provider said, classified into a :class:`TokenState`. :mod:`.devices` turns those
answers into one result per notification, prunes dead tokens and feeds the breakers.
"""

from __future__ import annotations

import email.utils
import enum
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Protocol

from ..contract.notification import Notification


class TokenState(enum.StrEnum):
    """What a provider said about one device token."""

    ACCEPTED = "accepted"
    DEAD = "dead"
    """The token will never work again (APNs 410 Unregistered or 400 BadDeviceToken;
    FCM UNREGISTERED, or INVALID_ARGUMENT about the token): remove it."""
    PERMANENT = "permanent"
    """This notification will never pass (a bad payload, a wrong topic): do not retry."""
    TRANSIENT = "transient"
    """Worth retrying later (429, 5xx, a timeout, a connection that broke)."""


@dataclass(frozen=True, slots=True)
class TokenResult:
    """The provider's answer for one token."""

    token: str
    state: TokenState
    reason: str = ""
    """The provider's own word for a failure: ``Unregistered``, ``UNAVAILABLE``, ``timeout``."""
    retry_after_s: float | None = None
    """The provider's Retry-After, when it sent one with a transient failure."""


class PushClient(Protocol):
    """One provider's wire protocol; built by the service, closed at shutdown."""

    name: str
    """The provider name notifications use: ``fcm``, ``firebase`` or ``apns``."""

    async def push(
        self, notification: Notification, tokens: Sequence[str], *, attempt: int = 1
    ) -> list[TokenResult]:
        """Send ``notification`` to each of ``tokens`` (concurrently); one result per token,
        in order. ``attempt`` counts from 1 (a mock's seeded draw depends on it). Never
        raises for what the provider answers; cancellation propagates."""
        ...

    async def aclose(self) -> None:
        """Close connections; the client is not used afterwards."""
        ...


MAX_COLLAPSE_ID_BYTES = 64
"""APNs' limit on ``apns-collapse-id`` (sent directly, or through FCM's ``apns`` block)."""


def collapse_id(notification_id: str) -> str:
    """The ``apns-collapse-id`` of a notification: the id itself when it is at most 64
    bytes of printable ASCII (a header value sent as is), else the first 64 hex digits
    of its SHA-256; stable either way, so a notification collapses onto itself."""
    raw = notification_id.encode()
    fits = len(raw) <= MAX_COLLAPSE_ID_BYTES and notification_id.isascii()
    if fits and notification_id.isprintable() and notification_id == notification_id.strip():
        return notification_id
    return hashlib.sha256(raw).hexdigest()[:MAX_COLLAPSE_ID_BYTES]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None
