"""The HTTP API's bodies, declared once: what each endpoint takes and answers.

The web layer decodes requests into these structs (strictly, in one pass) and
answers with them; ``/openapi.json`` is generated from the same declarations. A
notification sent with ``POST /send`` is :class:`~.notification.NotificationDocument`,
the same struct a Kafka record is decoded with.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from .notification import ProviderName
from .schema import MAX_ID_CHARS, TOKEN_RULE, MessageId, UserId, text

MAX_REASON_CHARS: Final = 1024
MAX_LATENCY_MS: Final = 60_000.0
BreakerStateName = Literal["closed", "open", "half_open"]


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error answer: what went wrong and, for a bad input, the field at fault."""

    error: str
    field: str | UnsetType | None = UNSET
    """The offending field (null: the body as a whole); absent for errors of no input."""


class SendAccepted(msgspec.Struct):
    """``POST /send``: the broker (or embedded queue) has the notification."""

    id: str
    status: Literal["queued"] = "queued"


class RateLimitStatus(msgspec.Struct):
    """``GET`` and ``DELETE /ratelimit/{user_id}``."""

    user_id: str
    limit: int
    window_seconds: float
    used: int
    remaining: int
    reset_in_seconds: float


class DeviceRegistration(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /users/{user_id}/devices/{token}``: the provider the token belongs to."""

    provider: ProviderName


class Device(msgspec.Struct, omit_defaults=True):
    """One registered device (with ``user_id`` when a PUT answers it)."""

    provider: ProviderName
    token: Annotated[str, Meta(description=TOKEN_RULE)]
    user_id: str | UnsetType = UNSET


class Devices(msgspec.Struct):
    """``GET /users/{user_id}/devices``."""

    user_id: str
    devices: list[Device]


class ProviderChange(msgspec.Struct, forbid_unknown_fields=True):
    """``PATCH /providers/{name}``: a mock provider's simulation; null keeps a value."""

    success_rate: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    latency_ms: Annotated[float, Meta(ge=0.0, le=MAX_LATENCY_MS)] | None = None
    failure: Literal["mixed", "transient", "permanent"] | None = None


class BreakerView(msgspec.Struct):
    """A provider's circuit breaker."""

    state: BreakerStateName
    failure_rate: Annotated[float, Meta(description="over the window")]
    retry_in_s: Annotated[float, Meta(description="until an open breaker lets probes through")]
    transitions: int


class MockView(msgspec.Struct):
    """A mock provider's simulation."""

    success_rate: float
    latency_ms: float
    failure: str


class ProviderView(msgspec.Struct, omit_defaults=True):
    """One provider as ``GET /providers`` lists it."""

    stats: dict[str, Any]
    breaker: BreakerView | UnsetType = UNSET
    mock: MockView | UnsetType = UNSET


class Providers(msgspec.Struct):
    """``GET /providers``."""

    providers: dict[str, ProviderView]


DURATION_PATTERN: Final = r"[0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+"
"""A duration: plain seconds, or Go's form (``1h30m``, ``250ms``)."""


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /dlq/replay``: which dead letters to write back; every filter given must
    hold, none replays them all. null means absent; unknown fields are refused, so
    that a misspelt filter cannot widen a replay."""

    outcome: Literal["failed", "invalid"] | None = None
    reason: Annotated[str, text(MAX_REASON_CHARS, "part of the reason, ignoring case")] | None = (
        None
    )
    since: (
        Annotated[
            str,
            Meta(
                description="letters written since then: RFC 3339 with a zone, or a "
                "duration ago (30m, 24h, or plain seconds)",
                examples=["1h", "2030-01-01T00:00:00Z"],
                extra_json_schema={
                    "anyOf": [{"format": "date-time"}, {"pattern": f"^({DURATION_PATTERN})$"}]
                },
            ),
        ]
        | None
    ) = None
    ids: (
        Annotated[
            list[MessageId],
            Meta(min_length=1, description="only the letters of these notification ids"),
        ]
        | None
    ) = None
    limit: (
        Annotated[int, Meta(ge=1, description="at most this many")]
        | Annotated[float, Meta(ge=1, multiple_of=1)]
        | None
    ) = None
    dry_run: Annotated[bool, Meta(description="answer what would be replayed")] | None = None


REPLAY_RULES: Final = {
    "": "the body must be a JSON object of filters",
    "outcome": "outcome must be one of failed, invalid",
    "reason": "reason must be a string",
    "since": "since must be a string",
    "ids": "ids must be a non-empty list of ids (leave it out for every id)",
    "ids[]": f"ids must be strings of 1 to {MAX_ID_CHARS} characters",
    "limit": "limit must be an integer of at least 1",
    "dry_run": "dry_run must be true or false",
}


class DeadLetterView(msgspec.Struct, omit_defaults=True):
    """One dead letter as a replay report lists it."""

    partition: int
    offset: int
    time: Annotated[str, Meta(description="when the letter was written (UTC)")]
    outcome: str
    id: str
    reason: str
    attempts: int | None
    dropped_bytes: int | UnsetType | None = UNSET
    """Skipped letters: the size of the value left out."""


class ReplayReportBody(msgspec.Struct):
    """What a replay did (or, dry, would do)."""

    dry_run: bool
    dlq_topic: str
    topic: str
    scanned: Annotated[int, Meta(description="letters read")]
    matched: Annotated[int, Meta(description="replayed + skipped")]
    replayed: int
    skipped: Annotated[int, Meta(description="matching letters whose value was left out")]
    letters: list[DeadLetterView]
    skipped_letters: list[DeadLetterView]


class Health(msgspec.Struct):
    """``GET /health``: one entry per component (kafka, redis, workers, providers),
    each with ``healthy``; ``status`` is down when Kafka is, degraded when another is."""

    status: Literal["ok", "degraded", "down"]
    mode: Literal["kafka", "embedded"]
    version: str
    components: dict[str, dict[str, Any]]


class LatencyView(msgspec.Struct):
    p50: float
    p95: float
    p99: float
    max: float


class BreakerCount(msgspec.Struct):
    state: BreakerStateName
    transitions: int


class ProviderCount(msgspec.Struct):
    delivered: int
    failed: int


class LaneView(msgspec.Struct):
    """One priority lane in ``GET /metrics``: its backlog, and the outcomes of its
    priorities with their latency over the lane's own window."""

    backlog: Annotated[int, Meta(description="queued + unread")]
    queued: Annotated[int, Meta(description="records read and waiting for a worker")]
    unread: Annotated[int, Meta(description="records on this instance's partitions not read yet")]
    processed: Annotated[int, Meta(description="outcomes of the lane's priorities")]
    delivered: int
    latency_ms: LatencyView


class MetricsSnapshot(msgspec.Struct):
    """``GET /metrics``: processed = delivered + failed + invalid + rate_limited +
    expired + duplicate, at every read."""

    processed_messages: int
    delivered_messages: int
    failed_messages: int
    invalid_messages: int
    rate_limited_messages: int
    expired_messages: int
    duplicate_messages: int
    retried_attempts: int
    retry_scheduled_messages: int
    parked_messages: int
    deferred_messages: int
    pruned_tokens: int
    breakers: dict[str, BreakerCount]
    queue_size: int
    in_flight: int
    worker_count: int
    consumer_lag: int
    latency_ms: LatencyView
    lanes: Annotated[
        dict[str, LaneView],
        Meta(description="main always; urgent when the urgent lane is on (URGENT_TOPIC)"),
    ]
    providers: dict[str, ProviderCount]
    uptime_seconds: float


class FeedQuery(msgspec.Struct):
    """``WS /ws/events`` query: one user's events, and which kinds (comma-separated)."""

    user_id: UserId | UnsetType = UNSET
    event: Annotated[str, Meta(description="comma-separated event kinds")] | UnsetType = UNSET
    batch: (
        Annotated[
            Literal["0", "1"],
            Meta(description="1: each frame is a JSON array of every event waiting"),
        ]
        | UnsetType
    ) = UNSET


class DeviceCountsView(msgspec.Struct):
    """Outcomes with real providers: devices that accepted, failed, and were pruned."""

    accepted: int
    failed: int
    pruned: int


class EventFrame(msgspec.Struct, omit_defaults=True):
    """One frame of ``WS /ws/events``: an outcome; a step on the way (retry_scheduled,
    parked, deferred: written to a delay topic, due at ``due``); a provider's breaker
    changing state (``provider`` and ``state``, to subscribers of every user); a dead
    token pruned; or a notice that this subscriber lost its oldest ``count`` events."""

    event: str
    id: str | UnsetType = UNSET
    user_id: str | UnsetType = UNSET
    provider: str | UnsetType = UNSET
    priority: int | UnsetType = UNSET
    attempts: int | UnsetType = UNSET
    latency_ms: float | UnsetType = UNSET
    error: str | UnsetType | None = UNSET
    ts: Annotated[float, Meta(description="Unix time of the event")] | UnsetType = UNSET
    devices: DeviceCountsView | UnsetType = UNSET
    due: Annotated[float, Meta(description="steps: Unix time it is due")] | UnsetType = UNSET
    reason: str | UnsetType | None = UNSET
    state: BreakerStateName | UnsetType = UNSET
    token: Annotated[str, Meta(description="token_pruned: the dead token")] | UnsetType = UNSET
    count: Annotated[int, Meta(description="dropped: events lost")] | UnsetType = UNSET
