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

import trio
from quart import Response
from quart_schema import validate_response
from quart_trio import QuartTrio

from ..contract.api import REPLAY_RULES, ReplayReportBody, ReplayRequest
from ..contract.errors import BackendError
from ..pipeline.replay import ReplayFilter, parse_since
from . import AppHandles
from .responses import json_error
from .schema import answers, json_body


def replay_filter(request: ReplayRequest, now_ms: int) -> ReplayFilter:
    """The filter a request asks for; ValueError names a ``since`` it cannot read."""
    return ReplayFilter(
        outcome=request.outcome or "",
        reason=request.reason or "",
        since_ms=None if request.since is None else parse_since(request.since, now_ms),
        ids=frozenset(request.ids or ()),
        limit=None if request.limit is None else int(request.limit),
        dry_run=bool(request.dry_run),
    )


def add_dlq_routes(app: QuartTrio, handles: AppHandles) -> None:
    """Register ``POST /dlq/replay`` on ``app``, closing over ``handles``."""
    running = trio.Lock()

    @app.post("/dlq/replay")
    @validate_response(ReplayReportBody)
    @answers(400, "a filter is malformed or unknown; field names it")
    @answers(409, "another replay is running on this instance")
    @answers(503, "the broker cannot be read or written")
    @json_body(ReplayRequest, REPLAY_RULES)
    async def dlq_replay(data: ReplayRequest) -> ReplayReportBody | Response:
        """Write dead letters back to the topic

        Filtered as ``pushtrio replay`` filters; with dry_run, answer what would be
        replayed and write nothing.
        """
        try:
            chosen = replay_filter(data, int(time.time() * 1000))
        except ValueError as exc:
            return json_error(400, f"since: {exc}", field="since")
        if running.locked():
            return json_error(409, "a replay is already running on this instance", field=None)
        try:
            async with running:
                report = await handles.replay(chosen)
        except BackendError as exc:
            return json_error(503, f"broker unavailable: {exc}")
        return report.view()
