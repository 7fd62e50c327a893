"""JSON error bodies: every error the app answers, routing errors included, is JSON.

The shape is ``{"error": "<what went wrong>"}``, plus ``"field"`` for invalid
notifications (``POST /send``) and for bad query or path parameters.
"""

from __future__ import annotations

from typing import Any

from quart import Response, has_websocket_context, jsonify, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed, NotFound
from werkzeug.routing import WebsocketMismatch

from ..contract.schema import USER_ID_RULE

_NO_FIELD: Any = object()


def json_error(
    status: int,
    message: str,
    *,
    field: str | None = _NO_FIELD,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON error response: ``{"error": message}`` (and ``"field"`` when one is given)."""
    document: dict[str, Any] = {"error": message}
    if field is not _NO_FIELD:
        document["field"] = field
    response = jsonify(document)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def bad_user_id() -> Response:
    """400 for a ``user_id`` (path or query) outside the message contract's pattern."""
    return json_error(400, USER_ID_RULE, field="user_id")


def _target() -> str:
    if has_websocket_context():
        return f"WEBSOCKET {websocket.path}"
    return f"{request.method} {request.path}"


def install_error_handlers(app: QuartTrio) -> None:
    """Answer routing and server errors with JSON instead of Werkzeug's HTML pages."""

    @app.errorhandler(NotFound)
    async def not_found(_: NotFound) -> Response:
        return json_error(404, f"no such endpoint: {_target()}")

    @app.errorhandler(MethodNotAllowed)
    async def method_not_allowed(error: MethodNotAllowed) -> Response:
        allowed = sorted(error.valid_methods or ())
        return json_error(
            405,
            f"method not allowed: {_target()} (allowed: {', '.join(allowed)})",
            headers={"Allow": ", ".join(allowed)},
        )

    @app.errorhandler(WebsocketMismatch)
    async def websocket_mismatch(_: WebsocketMismatch) -> Response:
        if has_websocket_context():
            return json_error(400, f"not a WebSocket endpoint: {_target()}")
        return json_error(400, f"a WebSocket endpoint; open it with a handshake: {_target()}")

    @app.errorhandler(InternalServerError)
    async def internal_error(_: InternalServerError) -> Response:
        return json_error(500, "internal server error")

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        name = (error.name or "error").lower()
        return json_error(error.code or 500, name)
