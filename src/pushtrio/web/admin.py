"""The admin endpoints: health, metrics, rate-limit status and ``POST /send``.

Every handler answers JSON (the Prometheus scrape excepted). Backend trouble is
answered 503 with ``{"error": ...}``; each backend call is bounded by a timeout.
"""

from __future__ import annotations

import uuid
from typing import Final

import msgspec
import trio
from quart import Response
from quart_schema import security_scheme, validate_response
from quart_trio import QuartTrio

from ..contract.api import Health, MetricsSnapshot, RateLimitStatus, SendAccepted
from ..contract.errors import BackendError, InvalidNotification
from ..contract.notification import MAX_RECORD_BYTES, RULES, NotificationDocument, checked
from ..contract.schema import USER_ID_PATTERN
from ..sinks.metrics import PROMETHEUS_CONTENT_TYPE
from ..stores.limiter import LimitStatus
from . import AppHandles
from .responses import bad_user_id, json_error
from .schema import answers, answers_raw, json_body

SEND_TIMEOUT_S: Final = 15.0
"""Limit on handing one notification to the broker (its own timeouts come first)."""
LIMITER_TIMEOUT_S: Final = 5.0
"""Limit on one rate-limit status or reset call."""


def limit_view(status: LimitStatus) -> RateLimitStatus:
    """What ``GET /ratelimit/<user_id>`` answers."""
    return RateLimitStatus(
        user_id=status.user_id,
        limit=status.limit,
        window_seconds=status.window_s,
        used=status.used,
        remaining=status.remaining,
        reset_in_seconds=round(status.reset_in_s, 3),
    )


def add_admin_routes(app: QuartTrio, handles: AppHandles) -> None:
    """Register the admin endpoints on ``app``, closing over ``handles``."""

    @app.get("/health")
    @security_scheme([])
    @validate_response(Health, 200)
    @validate_response(Health, 503)
    async def health() -> tuple[Health, int]:
        """Health of each component (public)

        ``status`` is ok, degraded (a component is down) or down (Kafka is); 503
        unless ok.
        """
        document = msgspec.convert(await handles.health(), Health)
        return document, 200 if document.status == "ok" else 503

    @app.get("/metrics")
    @validate_response(MetricsSnapshot)
    async def metrics() -> MetricsSnapshot:
        """Counters, gauges and latency percentiles of this instance"""
        return handles.metrics.view()

    @app.get("/metrics/prometheus")
    @answers_raw(200, "Prometheus text exposition format", PROMETHEUS_CONTENT_TYPE)
    async def metrics_prometheus() -> Response:
        """The same figures for Prometheus, with histograms and process metrics"""
        return Response(handles.metrics.prometheus_text(), content_type=PROMETHEUS_CONTENT_TYPE)

    @app.get("/ratelimit/<user_id>")
    @validate_response(RateLimitStatus)
    @answers(400, "user_id is malformed")
    @answers(503, "the rate-limit store is unavailable")
    async def ratelimit_status(user_id: str) -> RateLimitStatus | Response:
        """A user's sliding-window rate-limit status"""
        if not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            with trio.fail_after(LIMITER_TIMEOUT_S):
                status = await handles.limiter.status(user_id)
        except (BackendError, trio.TooSlowError) as exc:
            return json_error(503, f"rate-limit store unavailable: {exc or 'timeout'}")
        return limit_view(status)

    @app.delete("/ratelimit/<user_id>")
    @validate_response(RateLimitStatus)
    @answers(400, "user_id is malformed")
    @answers(503, "the rate-limit store is unavailable")
    async def ratelimit_reset(user_id: str) -> RateLimitStatus | Response:
        """Clear a user's window"""
        if not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            with trio.fail_after(LIMITER_TIMEOUT_S):
                await handles.limiter.reset(user_id)
                status = await handles.limiter.status(user_id)
        except (BackendError, trio.TooSlowError) as exc:
            return json_error(503, f"rate-limit store unavailable: {exc or 'timeout'}")
        return limit_view(status)

    @app.post("/send")
    @validate_response(SendAccepted, 202)
    @answers(400, "the notification breaks the message contract; field names the culprit")
    @answers(503, "the broker is unavailable")
    @json_body(NotificationDocument, RULES)
    async def send(data: NotificationDocument) -> tuple[SendAccepted, int] | Response:
        """Write a notification to the topic

        The same contract as a Kafka record; an absent id is made here (and returned).
        An urgent priority (URGENT_PRIORITY or more) goes to the urgent topic.
        """
        try:
            notification = checked(data, default_id=lambda: uuid.uuid4().hex)
        except InvalidNotification as exc:
            return json_error(400, exc.reason, field=exc.field)
        value = notification.to_json()
        if len(value) > MAX_RECORD_BYTES:
            return json_error(413, f"record is larger than {MAX_RECORD_BYTES} bytes", field=None)
        item = (notification.user_id.encode(), value, [("source", b"http")])
        try:
            with trio.fail_after(SEND_TIMEOUT_S):
                topic = handles.options.lanes.topic_for(notification.priority)
                await handles.publisher.publish_many(topic, [item])
        except (BackendError, trio.TooSlowError) as exc:
            return json_error(503, f"broker unavailable: {exc or 'timeout'}")
        return SendAccepted(id=notification.id), 202
