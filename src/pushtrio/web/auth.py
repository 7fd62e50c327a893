"""ADMIN_TOKEN: bearer-token access control for the admin endpoints and the feed.

When the token is set, every request except those of :data:`PUBLIC_ENDPOINTS`
(``GET /health`` and the dashboard page) must carry ``Authorization: Bearer
<token>``; a WebSocket handshake may pass it as the ``token`` query parameter
instead, since browsers cannot set headers on one. Anything else is answered
401 with a JSON error, but a method a public path does not serve (``TRACE
/health``) gets its 405. When the token is empty, everything is open.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from quart import Response, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .responses import json_error

PUBLIC_ENDPOINTS: Final = frozenset({"health", "dashboard"})
"""Endpoint names served without a token."""

_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="pushtrio"'}


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_matches(given: str | None, expected: str) -> bool:
    """Compare in constant time; digests first, so not even the length leaks."""
    if given is None:
        return False
    given_digest = hashlib.sha256(given.encode()).digest()
    expected_digest = hashlib.sha256(expected.encode()).digest()
    return hmac.compare_digest(given_digest, expected_digest)


def is_public(app: QuartTrio) -> bool:
    """Whether the current request is for a public endpoint (with any method)."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return True
    if not isinstance(request.routing_exception, MethodNotAllowed):
        return False
    # Routing found the path but not the method: find whose path it is.
    adapter = app.create_url_adapter(request)
    if adapter is None:
        return False
    try:
        endpoint, _ = adapter.match(method="GET")
    except HTTPException:
        return False
    return endpoint in PUBLIC_ENDPOINTS


def unauthorized() -> Response:
    return json_error(401, "missing or invalid admin token", headers=_CHALLENGE)


def install_auth(app: QuartTrio, token: str) -> None:
    """Require ``token`` on every request but the public ones (no-op when empty)."""
    if not token:
        return

    @app.before_request
    async def check_request() -> Response | None:
        if is_public(app):
            return None
        if token_matches(bearer_token(request.headers.get("Authorization")), token):
            return None
        return unauthorized()

    @app.before_websocket
    async def check_websocket() -> Response | None:
        given = bearer_token(websocket.headers.get("Authorization"))
        if given is None:
            given = websocket.args.get("token")
        if token_matches(given, token):
            return None
        return unauthorized()
