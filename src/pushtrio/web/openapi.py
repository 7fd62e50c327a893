"""The OpenAPI 3.1 document served at ``/openapi.json``, written by hand.

A test compares its paths and methods with the app's URL map, and a schemathesis
run (tests/web/test_schemathesis.py) checks the service against the document, so
it cannot drift from what is really served. The WebSocket feed is described as the
``GET`` of its handshake, marked ``x-websocket: true``.

Bearer security (and the 401 answers that come with it) is declared only when
ADMIN_TOKEN is set, since only then is it enforced.
"""

from __future__ import annotations

import copy
from typing import Any

from .. import __version__
from ..contract.notification import (
    MAX_BODY_CHARS,
    MAX_DATA_BYTES,
    MAX_ID_CHARS,
    MAX_RECORD_BYTES,
    MAX_TITLE_CHARS,
    MAX_TOKENS,
    MAX_TYPE_CHARS,
    PROVIDERS,
    TOKEN_PATTERN,
    USER_ID_PATTERN,
)
from ..pipeline.replay import DURATION_PATTERN, LISTED_MAX, OUTCOMES
from ..sinks.events import EVENT_KINDS
from ..stores.devices import MAX_DEVICES_PER_USER

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_UNAUTHORIZED = _error("the bearer token is missing or wrong")
_PUBLIC: list[dict[str, list[str]]] = []
"""The ``security`` of the operations served without a token (``/`` and ``/health``)."""
_TOKEN_PARAMETER = {
    "name": "token",
    "in": "query",
    "description": "the admin token, for clients that cannot set headers (browsers)",
    "schema": {"type": "string"},
}
_USER_ID_PARAMETER = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": _ref("UserId"),
}


def _timestamp_pattern() -> str:
    """The timestamps the message contract takes, as one regular expression.

    model._time reads RFC 3339 with a zone (``T``, ``t`` or a space between date and
    time) into a datetime, so the date must exist: the days of each month, 29
    February in leap years only, years 0001-9999. ``format: date-time`` would not
    say it: it is an annotation in OpenAPI 3.1, and it refuses the space.
    """
    year = r"(000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})"
    leap_year = r"(\d\d(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
    day = (
        rf"({year}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])"
        rf"|{year}-(0[13-9]|1[0-2])-(29|30)"
        rf"|{year}-(0[13578]|1[02])-31"
        rf"|{leap_year}-02-29)"
    )
    time = r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?"
    zone = r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
    return f"^{day}[Tt ]{time}{zone}$"


_LETTER: dict[str, Any] = {
    "type": "object",
    "required": ["partition", "offset", "time", "outcome", "id", "reason", "attempts"],
    "properties": {
        "partition": {"type": "integer"},
        "offset": {"type": "integer"},
        "time": {"type": "string", "description": "when the letter was written (UTC)"},
        "outcome": {"type": "string"},
        "id": {"type": "string"},
        "reason": {"type": "string"},
        "attempts": {"type": ["integer", "null"]},
        "dropped_bytes": {
            "type": ["integer", "null"],
            "description": "skipped letters: the size of the value left out",
        },
    },
}

_REPLAY_FILTER: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "Which dead letters to replay: every filter given must hold; none "
    "replays them all. null means absent. Unknown fields are refused.",
    "properties": {
        "outcome": {"enum": [*OUTCOMES, None]},
        "reason": {
            "type": ["string", "null"],
            "maxLength": 1024,
            "description": "part of the reason, ignoring case",
        },
        "since": {
            "anyOf": [
                {"type": "null"},
                {"type": "string", "pattern": _timestamp_pattern()},
                {"type": "string", "pattern": f"^({DURATION_PATTERN})$"},
            ],
            "description": "letters written since then: RFC 3339 with a zone, or a "
            "duration ago (30m, 24h, or plain seconds)",
            "examples": ["1h", "2030-01-01T00:00:00Z"],
        },
        "ids": {
            "type": ["array", "null"],
            "minItems": 1,
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
            "description": "only the letters of these notification ids",
        },
        "limit": {"type": ["integer", "null"], "minimum": 1, "description": "at most this many"},
        "dry_run": {
            "type": ["boolean", "null"],
            "default": False,
            "description": "answer what would be replayed; write nothing",
        },
    },
}

_SCHEMAS: dict[str, Any] = {
    "UserId": {"type": "string", "pattern": f"^{USER_ID_PATTERN.pattern}$"},
    "Timestamp": {
        "type": ["string", "null"],
        "pattern": _timestamp_pattern(),
        "description": "RFC 3339 date and time with a zone (2030-01-01T00:00:00Z)",
        "examples": ["2030-01-01T00:00:00Z"],
    },
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
        "description": "At least one of title and body (non-empty). Types are strict (no "
        "coercion); null, and an empty id, type or provider, mean absent. Unknown fields "
        f"are ignored; the whole body is at most {MAX_RECORD_BYTES} bytes.",
        "properties": {
            "id": {
                "type": ["string", "null"],
                "maxLength": MAX_ID_CHARS,
                "description": "made if absent",
            },
            "user_id": _ref("UserId"),
            "type": {"type": ["string", "null"], "maxLength": MAX_TYPE_CHARS, "default": "push"},
            "title": {"type": ["string", "null"], "maxLength": MAX_TITLE_CHARS},
            "body": {"type": ["string", "null"], "maxLength": MAX_BODY_CHARS},
            "data": {
                "type": ["object", "null"],
                "description": f"at most {MAX_DATA_BYTES} bytes as compact JSON",
            },
            "priority": {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": 3,
                "default": 1,
                "description": "3 is most urgent",
            },
            "created_at": _ref("Timestamp"),
            "expires_at": {
                **_ref("Timestamp"),
                "description": "a past expires_at makes the outcome expired",
            },
            "provider": {
                "enum": [*PROVIDERS, "", None],
                "description": "chosen stably from user_id if absent; with real providers, "
                "absent means every registered device of the user",
            },
            "tokens": {
                "type": ["array", "null"],
                "items": {"type": "string", "pattern": f"^{TOKEN_PATTERN.pattern}$"},
                "maxItems": MAX_TOKENS,
                "description": "device tokens to push to instead of the user's registered "
                "devices (real providers); they need a provider",
            },
        },
        "dependentSchemas": {
            "tokens": {
                "anyOf": [
                    {"properties": {"tokens": {"type": ["null"]}}},
                    {"properties": {"tokens": {"maxItems": 0}}},
                    {
                        "required": ["provider"],
                        "properties": {"provider": {"enum": list(PROVIDERS)}},
                    },
                ]
            }
        },
        "anyOf": [
            {"required": ["title"], "properties": {"title": {"type": "string", "minLength": 1}}},
            {"required": ["body"], "properties": {"body": {"type": "string", "minLength": 1}}},
        ],
    },
    "DeviceIn": {
        "type": "object",
        "required": ["provider"],
        "additionalProperties": False,
        "properties": {"provider": {"enum": list(PROVIDERS)}},
    },
    "Device": {
        "type": "object",
        "required": ["provider", "token"],
        "properties": {
            "user_id": _ref("UserId"),
            "provider": {"enum": list(PROVIDERS)},
            "token": {"type": "string"},
        },
    },
    "Devices": {
        "type": "object",
        "required": ["user_id", "devices"],
        "properties": {
            "user_id": _ref("UserId"),
            "devices": {"type": "array", "items": _ref("Device")},
        },
    },
    "SendAccepted": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"const": "queued"}},
    },
    "ProviderChange": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "success_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "latency_ms": {"type": ["number", "null"], "minimum": 0, "maximum": 60000},
            "failure": {"enum": ["mixed", "transient", "permanent", None]},
        },
    },
    "Provider": {
        "type": "object",
        "required": ["stats"],
        "properties": {
            "stats": {"type": "object"},
            "breaker": {
                "type": "object",
                "required": ["state", "failure_rate", "retry_in_s", "transitions"],
                "properties": {
                    "state": {"enum": ["closed", "open", "half_open"]},
                    "failure_rate": {"type": "number", "description": "over the window"},
                    "retry_in_s": {
                        "type": "number",
                        "description": "until an open breaker lets probe calls through",
                    },
                    "transitions": {"type": "integer"},
                },
            },
            "mock": {
                "type": "object",
                "properties": {
                    "success_rate": {"type": "number"},
                    "latency_ms": {"type": "number"},
                    "failure": {"type": "string"},
                },
            },
        },
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
            "retry_scheduled_messages",
            "parked_messages",
            "deferred_messages",
            "pruned_tokens",
            "breakers",
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
    "ReplayFilter": _REPLAY_FILTER,
    "DeadLetter": _LETTER,
    "ReplayReport": {
        "type": "object",
        "required": [
            "dry_run",
            "dlq_topic",
            "topic",
            "scanned",
            "matched",
            "replayed",
            "skipped",
            "letters",
            "skipped_letters",
        ],
        "properties": {
            "dry_run": {"type": "boolean"},
            "dlq_topic": {"type": "string"},
            "topic": {"type": "string"},
            "scanned": {"type": "integer", "description": "letters read"},
            "matched": {"type": "integer", "description": "replayed + skipped"},
            "replayed": {
                "type": "integer",
                "description": "letters written back (with dry_run: that would be)",
            },
            "skipped": {
                "type": "integer",
                "description": "matching letters whose value was left out (over 512 KiB): "
                "they cannot be replayed",
            },
            "letters": {
                "type": "array",
                "items": _ref("DeadLetter"),
                "description": f"the first {LISTED_MAX} letters replayed",
            },
            "skipped_letters": {
                "type": "array",
                "items": _ref("DeadLetter"),
                "description": f"the first {LISTED_MAX} letters skipped",
            },
        },
    },
    "Event": {
        "type": "object",
        "description": "One outcome; a step on the way (retry_scheduled, parked, deferred: "
        "written to a delay topic, due at ``due``); a provider's breaker changing state "
        "(breaker: ``provider`` and ``state``, to subscribers of every user); or a notice "
        "that this subscriber lost its oldest events.",
        "required": ["event"],
        "properties": {
            "event": {"enum": [*EVENT_KINDS, "dropped"]},
            "count": {"type": "integer", "description": "dropped notices only"},
            "due": {"type": "number", "description": "steps only: Unix time it is due"},
            "reason": {"type": ["string", "null"], "description": "steps only"},
            "state": {"enum": ["closed", "open", "half_open"], "description": "breaker only"},
            "token": {"type": "string", "description": "token_pruned only: the dead token"},
            "devices": {
                "type": "object",
                "description": "outcomes with real providers: devices that accepted, "
                "failed, and were pruned (their token dead)",
                "properties": {
                    "accepted": {"type": "integer"},
                    "failed": {"type": "integer"},
                    "pruned": {"type": "integer"},
                },
            },
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
            "responses": {"200": _json(_ref("Metrics"), "the figures")},
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
                "503": _error("the rate-limit store is unavailable"),
            },
        },
        "delete": {
            "summary": "Clear a user's window; answers the status after clearing",
            "responses": {
                "200": _json(_ref("RateLimitStatus"), "the cleared status"),
                "400": _error("user_id is malformed"),
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
                "400": _error(
                    "the notification breaks the message contract (a field over its "
                    "size limit included); field names it"
                ),
                "413": _error(f"the body is larger than {MAX_RECORD_BYTES} bytes"),
                "415": _error("the body is not JSON, or not sent as application/json"),
                "503": _error("the broker is unavailable"),
            },
        }
    },
    "/dlq/replay": {
        "post": {
            "summary": "Write dead letters back to the topic (as `pushtrio replay`)",
            "description": "The original key, value and headers of each letter, plus "
            "`pushtrio-replayed-from` ([dlq_topic, partition, offset]). A notification "
            "delivered meanwhile comes out as `duplicate`, not as a second send. Reads "
            "the dead-letter topic up to its end when the request arrives.",
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("ReplayFilter")}}},
            "responses": {
                "200": _json(_ref("ReplayReport"), "what was replayed (or would be)"),
                "400": _error("a filter is malformed or unknown; field names it"),
                "409": _error("another replay is running on this instance"),
                "413": _error(f"the body is larger than {MAX_RECORD_BYTES} bytes"),
                "415": _error("the body is not JSON, or not sent as application/json"),
                "503": _error("the broker cannot be read or written"),
            },
        }
    },
    "/providers": {
        "get": {
            "summary": "The providers: counters and, for a mock, its simulation",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["providers"],
                        "properties": {
                            "providers": {
                                "type": "object",
                                "additionalProperties": _ref("Provider"),
                            }
                        },
                    },
                    "every provider by name",
                )
            },
        }
    },
    "/providers/{name}": {
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "patch": {
            "summary": "Change a mock provider's simulation (this instance, in memory)",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("ProviderChange")}},
            },
            "responses": {
                "200": _json(_ref("Provider"), "the provider as changed"),
                "400": _error("a field is malformed or unknown; field names it"),
                "404": _error("no such provider"),
                "409": _error("the provider is not a mock"),
                "413": _error(f"the body is larger than {MAX_RECORD_BYTES} bytes"),
                "415": _error("the body is not JSON, or not sent as application/json"),
            },
        },
    },
    "/users/{user_id}/devices": {
        "parameters": [_USER_ID_PARAMETER],
        "get": {
            "summary": "The user's registered devices",
            "responses": {
                "200": _json(_ref("Devices"), "the devices (none: an empty list)"),
                "400": _error("a malformed user_id"),
                "503": _error("the device registry (Redis) does not answer"),
            },
        },
    },
    "/users/{user_id}/devices/{token}": {
        "parameters": [
            _USER_ID_PARAMETER,
            {
                "name": "token",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": f"^{TOKEN_PATTERN.pattern}$"},
            },
        ],
        "put": {
            "summary": "Register a device (or move a known token to another provider)",
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("DeviceIn")}}},
            "responses": {
                "200": _json(_ref("Device"), "the token was known; now with this provider"),
                "201": _json(_ref("Device"), "registered"),
                "400": _error("a malformed user_id, token or body; field names it"),
                "409": _error(f"the user has {MAX_DEVICES_PER_USER} devices already"),
                "413": _error(f"the body is larger than {MAX_RECORD_BYTES} bytes"),
                "415": _error("the body is not JSON, or not sent as application/json"),
                "503": _error("the device registry (Redis) does not answer"),
            },
        },
        "delete": {
            "summary": "Forget a device",
            "responses": {
                "204": {"description": "forgotten"},
                "400": _error("a malformed user_id"),
                "404": _error("the user has no such device"),
                "503": _error("the device registry (Redis) does not answer"),
            },
        },
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {JSON: {}}},
            },
        }
    },
    "/ws/events": {
        "get": {
            "summary": "Live feed of outcomes (WebSocket): one Event per text frame",
            "x-websocket": True,
            "description": "A client that falls behind loses its oldest events and is sent "
            '{"event": "dropped", "count": N}. A plain GET, without the WebSocket '
            "handshake, is answered 400.",
            "parameters": [
                {"name": "user_id", "in": "query", "schema": _ref("UserId")},
                {
                    "name": "event",
                    "in": "query",
                    "description": "comma-separated event kinds",
                    "schema": {"type": "string"},
                    "example": "delivered,failed",
                },
            ],
            "responses": {
                "101": _json(_ref("Event"), "switching protocols; frames follow"),
                "400": _error(
                    "not a WebSocket handshake, an unknown event kind or a malformed user_id"
                ),
            },
        }
    },
}


def openapi_document(*, secured: bool = False) -> dict[str, Any]:
    """A fresh copy of the OpenAPI 3.1 document.

    ``secured`` (ADMIN_TOKEN is set) declares bearer security on every operation but
    ``/`` and ``/health``, their 401 answers, and the feed's ``token`` parameter.
    """
    document: dict[str, Any] = copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "pushtrio",
                "version": __version__,
                "description": "Admin API and live feed of the pushtrio notification service.",
            },
            "paths": _PATHS,
            "components": {"schemas": _SCHEMAS},
        }
    )
    if secured:
        _secure(document)
    return document


def _secure(document: dict[str, Any]) -> None:
    document["info"]["description"] += (
        " ADMIN_TOKEN is set: every endpoint but /health and / needs "
        "`Authorization: Bearer <token>`."
    )
    document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    document["security"] = [{"bearer": []}]
    for item in document["paths"].values():
        for operation in item.values():
            if not isinstance(operation, dict) or operation.get("security") == _PUBLIC:
                continue
            operation["responses"]["401"] = copy.deepcopy(_UNAUTHORIZED)
            if operation.get("x-websocket"):
                operation["parameters"].append(copy.deepcopy(_TOKEN_PARAMETER))
