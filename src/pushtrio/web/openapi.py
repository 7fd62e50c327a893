"""The OpenAPI 3.1 document served at ``/openapi.json``, written by hand.

A test compares its paths and methods with the app's URL map, so it cannot drift
from what is really served. The WebSocket feed is described as the ``GET`` of its
handshake, marked ``x-websocket: true``.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import __version__
from ..model import (
    MAX_BODY_CHARS,
    MAX_DATA_BYTES,
    MAX_ID_CHARS,
    MAX_RECORD_BYTES,
    MAX_TITLE_CHARS,
    MAX_TYPE_CHARS,
    PROVIDERS,
    USER_ID_PATTERN,
    OutcomeKind,
)

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_UNAUTHORIZED = _error("ADMIN_TOKEN is set and the bearer token is missing or wrong")
_PUBLIC: list[dict[str, list[str]]] = []
_USER_ID_PARAMETER = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": _ref("UserId"),
}

_SCHEMAS: dict[str, Any] = {
    "UserId": {"type": "string", "pattern": f"^{USER_ID_PATTERN.pattern}$"},
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": ["string", "null"], "description": "the offending field"},
        },
    },
    "Notification": {
        "type": "object",
        "required": ["user_id"],
        "description": "At least one of title and body. Unknown fields are ignored; "
        f"the whole body is at most {MAX_RECORD_BYTES} bytes.",
        "properties": {
            "id": {"type": "string", "maxLength": MAX_ID_CHARS, "description": "made if absent"},
            "user_id": _ref("UserId"),
            "type": {"type": "string", "maxLength": MAX_TYPE_CHARS, "default": "push"},
            "title": {"type": "string", "maxLength": MAX_TITLE_CHARS},
            "body": {"type": "string", "maxLength": MAX_BODY_CHARS},
            "data": {"type": "object", "description": f"at most {MAX_DATA_BYTES} bytes as JSON"},
            "priority": {"type": "integer", "minimum": 0, "maximum": 3, "default": 1},
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": {"type": "string", "format": "date-time"},
            "provider": {"enum": list(PROVIDERS), "description": "chosen from user_id if absent"},
        },
    },
    "SendAccepted": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"const": "queued"}},
    },
    "RateLimitStatus": {
        "type": "object",
        "required": ["user_id", "limit", "window_seconds", "used", "remaining", "reset_in_seconds"],
        "properties": {
            "user_id": {"type": "string"},
            "limit": {"type": "integer"},
            "window_seconds": {"type": "number"},
            "used": {"type": "integer"},
            "remaining": {"type": "integer"},
            "reset_in_seconds": {"type": "number"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "mode", "components"],
        "properties": {
            "status": {"enum": ["ok", "degraded", "down"]},
            "mode": {"enum": ["kafka", "embedded"]},
            "version": {"type": "string"},
            "components": {
                "type": "object",
                "required": ["kafka", "redis", "workers", "providers"],
                "additionalProperties": {
                    "type": "object",
                    "required": ["healthy"],
                    "properties": {"healthy": {"type": "boolean"}},
                },
            },
        },
    },
    "Metrics": {
        "type": "object",
        "description": "processed = delivered + failed + invalid + rate_limited + expired "
        "+ duplicate, at every read.",
        "required": [
            "processed_messages",
            "delivered_messages",
            "failed_messages",
            "invalid_messages",
            "rate_limited_messages",
            "expired_messages",
            "duplicate_messages",
            "retried_attempts",
            "queue_size",
            "in_flight",
            "worker_count",
            "consumer_lag",
            "latency_ms",
            "providers",
            "uptime_seconds",
        ],
        "additionalProperties": {"type": ["integer", "number", "object"]},
    },
    "Event": {
        "type": "object",
        "description": "One outcome, or a notice that this subscriber lost its oldest events.",
        "required": ["event"],
        "properties": {
            "event": {"enum": [*(kind.value for kind in OutcomeKind), "dropped"]},
            "count": {"type": "integer", "description": "dropped notices only"},
            "id": {"type": "string"},
            "user_id": {"type": "string"},
            "provider": {"type": "string"},
            "priority": {"type": "integer"},
            "attempts": {"type": "integer"},
            "latency_ms": {"type": "number"},
            "error": {"type": ["string", "null"]},
            "ts": {"type": "number", "description": "Unix time of the outcome"},
        },
    },
}

_PATHS: dict[str, Any] = {
    "/": {
        "get": {
            "summary": "The dashboard page (no token needed; it asks for one)",
            "security": _PUBLIC,
            "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
        }
    },
    "/health": {
        "get": {
            "summary": "Health of every component (no token needed)",
            "security": _PUBLIC,
            "responses": {
                "200": _json(_ref("Health"), "every component is healthy"),
                "503": _json(_ref("Health"), "a component is down"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Counters, gauges and latency percentiles",
            "responses": {"200": _json(_ref("Metrics"), "the figures"), "401": _UNAUTHORIZED},
        }
    },
    "/metrics/prometheus": {
        "get": {
            "summary": "The same figures in the Prometheus text format",
            "responses": {
                "200": {
                    "description": "Prometheus exposition format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": _UNAUTHORIZED,
            },
        }
    },
    "/ratelimit/{user_id}": {
        "parameters": [_USER_ID_PARAMETER],
        "get": {
            "summary": "A user's sliding-window rate-limit status",
            "responses": {
                "200": _json(_ref("RateLimitStatus"), "the status"),
                "400": _error("user_id is malformed"),
                "401": _UNAUTHORIZED,
                "503": _error("the rate-limit store is unavailable"),
            },
        },
        "delete": {
            "summary": "Clear a user's window; answers the status after clearing",
            "responses": {
                "200": _json(_ref("RateLimitStatus"), "the cleared status"),
                "400": _error("user_id is malformed"),
                "401": _UNAUTHORIZED,
                "503": _error("the rate-limit store is unavailable"),
            },
        },
    },
    "/send": {
        "post": {
            "summary": "Validate a notification and write it to the topic",
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Notification")}}},
            "responses": {
                "202": _json(_ref("SendAccepted"), "the broker (or embedded queue) has it"),
                "400": _error("the notification breaks the message contract"),
                "401": _UNAUTHORIZED,
                "413": _error(f"the body (or a field) is over its limit ({MAX_RECORD_BYTES} B)"),
                "415": _error("the body is not JSON, or not sent as application/json"),
                "503": _error("the broker is unavailable"),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {JSON: {}}},
                "401": _UNAUTHORIZED,
            },
        }
    },
    "/ws/events": {
        "get": {
            "summary": "Live feed of outcomes (WebSocket): one Event per text frame",
            "x-websocket": True,
            "description": "A client that falls behind loses its oldest events and is sent "
            '{"event": "dropped", "count": N}. With ADMIN_TOKEN, the token may also be '
            "given as the token query parameter.",
            "parameters": [
                {"name": "user_id", "in": "query", "schema": _ref("UserId")},
                {
                    "name": "event",
                    "in": "query",
                    "description": "comma-separated outcome kinds",
                    "schema": {"type": "string"},
                    "example": "delivered,failed",
                },
                {"name": "token", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {
                "101": _json(_ref("Event"), "switching protocols; frames follow"),
                "400": _error("an unknown event kind or a malformed user_id"),
                "401": _UNAUTHORIZED,
            },
        }
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI 3.1 document."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "pushtrio",
                "version": __version__,
                "description": "Admin API and live feed of the pushtrio notification service. "
                "When ADMIN_TOKEN is set, every endpoint but /health and / needs "
                "`Authorization: Bearer <token>`.",
            },
            "paths": _PATHS,
            "components": {
                "schemas": _SCHEMAS,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
            "security": [{"bearer": []}],
        }
    )
