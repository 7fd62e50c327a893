"""The admin endpoints: health, metrics, rate-limit status and ``POST /send``.

Every handler answers JSON (the Prometheus scrape excepted). Backend trouble is
answered 503 with ``{"error": ...}``; each backend call is bounded by a timeout.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import trio
from quart import Response, jsonify
from quart_trio import QuartTrio

from ..contract.errors import BackendError, InvalidNotification, NotificationTooLarge
from ..contract.notification import (
    MAX_RECORD_BYTES,
    USER_ID_PATTERN,
    Notification,
    validate_document,
)
from ..sinks.metrics import PROMETHEUS_CONTENT_TYPE
from ..stores.limiter import LimitStatus
from . import AppHandles
from .bodies import read_json_body
from .responses import bad_user_id, json_error

SEND_TIMEOUT_S: Final = 15.0
"""Limit on handing one notification to the broker (its own timeouts come first)."""
LIMITER_TIMEOUT_S: Final = 5.0
"""Limit on one rate-limit status or reset call."""


def limit_document(status: LimitStatus) -> dict[str, Any]:
    """The JSON of ``GET /ratelimit/<user_id>``."""
    return {
        "user_id": status.user_id,
        "limit": status.limit,
        "window_seconds": status.window_s,
        "used": status.used,
        "remaining": status.remaining,
        "reset_in_seconds": round(status.reset_in_s, 3),
    }


def add_admin_routes(app: QuartTrio, handles: AppHandles) -> None:
    """Register the admin endpoints on ``app``, closing over ``handles``."""

    @app.get("/health")
    async def health() -> tuple[Response, int]:
        document: dict[str, Any] = await handles.health()
        return jsonify(document), 200 if document["status"] == "ok" else 503

    @app.get("/metrics")
    async def metrics() -> Response:
        return jsonify(handles.metrics.snapshot())

    @app.get("/metrics/prometheus")
    async def metrics_prometheus() -> Response:
        return Response(handles.metrics.prometheus_text(), content_type=PROMETHEUS_CONTENT_TYPE)

    @app.get("/ratelimit/<user_id>")
    async def ratelimit_status(user_id: str) -> Response:
        if not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            with trio.fail_after(LIMITER_TIMEOUT_S):
                status = await handles.limiter.status(user_id)
        except (BackendError, trio.TooSlowError) as exc:
            return json_error(503, f"rate-limit store unavailable: {exc or 'timeout'}")
        return jsonify(limit_document(status))

    @app.delete("/ratelimit/<user_id>")
    async def ratelimit_reset(user_id: str) -> Response:
        if not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            with trio.fail_after(LIMITER_TIMEOUT_S):
                await handles.limiter.reset(user_id)
                status = await handles.limiter.status(user_id)
        except (BackendError, trio.TooSlowError) as exc:
            return json_error(503, f"rate-limit store unavailable: {exc or 'timeout'}")
        return jsonify(limit_document(status))

    @app.post("/send")
    async def send() -> Response:
        parsed = await _read_notification()
        if isinstance(parsed, Response):
            return parsed
        value = parsed.to_json()
        if len(value) > MAX_RECORD_BYTES:
            return json_error(413, f"record is larger than {MAX_RECORD_BYTES} bytes", field=None)
        item = (parsed.user_id.encode(), value, [("source", b"http")])
        try:
            with trio.fail_after(SEND_TIMEOUT_S):
                await handles.publisher.publish_many(handles.options.topic, [item])
        except (BackendError, trio.TooSlowError) as exc:
            return json_error(503, f"broker unavailable: {exc or 'timeout'}")
        response = jsonify(id=parsed.id, status="queued")
        response.status_code = 202
        return response


async def _read_notification() -> Notification | Response:
    """The request's notification, or the error response to answer instead."""
    document = await read_json_body()
    if isinstance(document, Response):
        return document
    try:
        return validate_document(document, default_id=lambda: uuid.uuid4().hex)
    except NotificationTooLarge as exc:
        # 413 is for the body as a whole; a field over its limit is a bad field.
        return json_error(400 if exc.field else 413, exc.reason, field=exc.field)
    except InvalidNotification as exc:
        return json_error(400, exc.reason, field=exc.field)
