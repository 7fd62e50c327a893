"""``POST /dlq/replay``: dead letters written back to the topic, filtered as ``pushtrio replay``.

The body is a JSON object of filters, each optional (null means absent), all of
them to hold::

    {"outcome": "failed", "reason": "timeout", "since": "1h", "ids": ["order-42"],
     "limit": 100, "dry_run": false}

Unknown fields are refused, so that a misspelt filter cannot widen a replay. The
answer is the report (:meth:`~pushtrio.pipeline.replay.ReplayReport.to_json`): how many
letters were replayed, or with ``dry_run`` would be, and the first of them; 400
with ``{"error", "field"}`` for a bad filter; 409 while another replay runs on
this instance; 503 when the broker cannot be read or written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import trio
from quart import Response, jsonify
from quart_trio import QuartTrio

from ..contract.errors import BackendError
from ..contract.notification import MAX_ID_CHARS
from ..pipeline.replay import OUTCOMES, ReplayFilter, parse_since
from . import AppHandles
from .bodies import read_json_body
from .responses import json_error

MAX_REASON_CHARS: Final = 1024


def _outcome(value: object) -> str:
    if value not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
    return str(value)


def _reason(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("reason must be a string")
    if len(value) > MAX_REASON_CHARS:
        raise ValueError(f"reason is longer than {MAX_REASON_CHARS} characters")
    return value


def _ids(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        raise ValueError("ids must be a non-empty list of ids (leave it out for every id)")
    for item in value:
        if not isinstance(item, str) or not 1 <= len(item) <= MAX_ID_CHARS:
            raise ValueError(f"ids must be strings of 1 to {MAX_ID_CHARS} characters")
    return frozenset(value)


def _limit(value: object) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 2.0 is the integer 2 (JSON Schema too)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError("limit must be an integer of at least 1")
    return value


def _dry_run(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("dry_run must be true or false")
    return value


def _since(now_ms: int) -> Callable[[object], int]:
    def parse(value: object) -> int:
        if not isinstance(value, str):
            raise ValueError("since must be a string")
        try:
            return parse_since(value, now_ms)
        except ValueError as exc:
            raise ValueError(f"since: {exc}") from None

    return parse


def replay_filter(document: object, now_ms: int) -> ReplayFilter | Response:
    """The filter a request body asks for, or the 400 answer that says what is wrong."""
    if not isinstance(document, dict):
        return json_error(400, "the body must be a JSON object of filters", field=None)
    parsers: dict[str, Callable[[object], Any]] = {
        "outcome": _outcome,
        "reason": _reason,
        "since": _since(now_ms),
        "ids": _ids,
        "limit": _limit,
        "dry_run": _dry_run,
    }
    unknown = sorted(set(document) - set(parsers))
    if unknown:
        name, expected = unknown[0], ", ".join(parsers)
        return json_error(400, f"unknown field {name} (expected {expected})", field=name)
    values: dict[str, Any] = {}
    for name, parse in parsers.items():
        value = document.get(name)
        try:
            values[name] = None if value is None else parse(value)
        except ValueError as exc:
            return json_error(400, str(exc), field=name)
    return ReplayFilter(
        outcome=values["outcome"] or "",
        reason=values["reason"] or "",
        since_ms=values["since"],
        ids=values["ids"] or frozenset(),
        limit=values["limit"],
        dry_run=bool(values["dry_run"]),
    )


def add_dlq_routes(app: QuartTrio, handles: AppHandles) -> None:
    """Register ``POST /dlq/replay`` on ``app``, closing over ``handles``."""
    running = trio.Lock()

    @app.post("/dlq/replay")
    async def dlq_replay() -> Response:
        document = await read_json_body()
        if isinstance(document, Response):
            return document
        chosen = replay_filter(document, int(time.time() * 1000))
        if isinstance(chosen, Response):
            return chosen
        if running.locked():
            return json_error(409, "a replay is already running on this instance", field=None)
        try:
            async with running:
                report = await handles.replay(chosen)
        except BackendError as exc:
            return json_error(503, f"broker unavailable: {exc}")
        return jsonify(report.to_json())
