"""``WS /ws/events``: the live outcome feed, one JSON text frame per outcome.

Query parameters (all optional): ``user_id`` keeps one user's outcomes;
``event`` keeps some kinds (``delivered,failed``; may be repeated); ``batch=1``
asks for frames carrying a JSON array of every event waiting (at most
:data:`BATCH_FEED_CAPACITY`), which is how a client keeps up with a burst: a frame costs
far more to send than an event in it. An invalid value is refused before the
handshake with 400 and a JSON error.

Each connection reads from its own bounded :class:`~pushtrio.sinks.events.Subscription`,
so a client that reads slowly costs the pipeline nothing: its oldest events are
dropped and the next frame it gets is ``{"event": "dropped", "count": N}``. When
the service shuts down, the buffered events are sent and the connection is
closed with code 1001.

A client that stops reading altogether is cut off after
:data:`FEED_SEND_TIMEOUT_S`. Once its TCP window is shut no frame can reach it,
a close frame included, and Hypercorn's write cannot be cancelled: the kernel
drops the connection when the data written to it has made no progress for that
long (``TCP_USER_TIMEOUT``, set by :mod:`pushtrio.web.server`), the write fails
and the handler ends; the client gets a reset when it next reads or writes. A
frame that did go out, but took longer than that, ends the feed with
:data:`TOO_SLOW_CODE` and :data:`TOO_SLOW_REASON`.
"""

from __future__ import annotations

import logging
from typing import Final

import trio
from quart import Response, websocket
from quart_schema import document_querystring
from quart_trio import QuartTrio

from ..contract.api import EventFrame, FeedQuery
from ..contract.schema import USER_ID_PATTERN
from ..sinks.events import DEFAULT_CAPACITY, EventHub, Subscription, parse_event_filter
from .responses import bad_user_id, json_error
from .schema import answers

log = logging.getLogger(__name__)

FEED_CAPACITY: Final = DEFAULT_CAPACITY
BATCH_FEED_CAPACITY: Final = 5 * DEFAULT_CAPACITY
"""The same for a ``batch=1`` subscriber, who takes them all at once: what arrives
while one frame goes out must fit (5,000 events are about 1.5 MB)."""
"""Events one connection may fall behind by before its oldest are dropped."""

FEED_SEND_TIMEOUT_S: Final = 5.0
"""Longest one frame may take to go out before its subscriber is cut off as too slow."""

TOO_SLOW_CODE: Final = 1008
"""Close code for a subscriber cut off as too slow (1008: policy violation)."""

TOO_SLOW_REASON: Final = "subscriber too slow"

SHUTDOWN_CODE: Final = 1001
"""Close code when the service shuts down (1001: going away)."""


def add_feed_route(app: QuartTrio, hub: EventHub) -> None:
    """Register ``WS /ws/events`` on ``app``, fed by ``hub``."""

    @app.websocket("/ws/events")
    @document_querystring(FeedQuery)
    @answers(
        101,
        "switching protocols; frames follow: one EventFrame each, an array with batch=1",
        EventFrame,
    )
    @answers(400, "not a WebSocket handshake, an unknown event kind or a malformed user_id")
    async def events() -> Response | None:
        """Live feed of outcomes (WebSocket): one EventFrame per text frame

        A client that falls behind loses its oldest events and is sent
        {"event": "dropped", "count": N}. A plain GET, without the WebSocket
        handshake, is answered 400.
        """
        user_id = websocket.args.get("user_id", "").strip()
        if user_id and not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            kinds = parse_event_filter(",".join(websocket.args.getlist("event")))
        except ValueError as exc:
            return json_error(400, str(exc), field="event")
        batch = websocket.args.get("batch", "0")
        if batch not in ("0", "1"):
            return json_error(400, "batch must be 0 or 1", field="batch")
        # Subscribe before accepting: whatever happens once the client is
        # connected reaches it.
        capacity = BATCH_FEED_CAPACITY if batch == "1" else FEED_CAPACITY
        with hub.subscribe(user_id=user_id, events=kinds, capacity=capacity) as subscription:
            await websocket.accept()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_discard_incoming)
                kept_up = await _send_events(subscription, batch == "1")
                nursery.cancel_scope.cancel()
        # Unsubscribed before closing: the close frame may wait for the client too.
        if kept_up:
            await websocket.close(SHUTDOWN_CODE, "service shutting down")
        else:
            log.info("feed subscriber %s cut off: %s", _peer(), TOO_SLOW_REASON)
            await websocket.close(TOO_SLOW_CODE, TOO_SLOW_REASON)
        return None


async def _send_events(subscription: Subscription, batch: bool) -> bool:
    """Send the events until the feed ends, one per frame or (``batch``) every one
    waiting in a JSON array per frame; False once a frame took too long.

    Measured rather than cancelled: Hypercorn writes in a shielded scope, so a
    deadline could not interrupt the write anyway (see the module docstring).
    """
    limit = BATCH_FEED_CAPACITY if batch else 1
    while True:
        try:
            frames = await subscription.receive_frames(limit)
        except trio.EndOfChannel:
            return True
        started = trio.current_time()
        await websocket.send("[" + ",".join(frames) + "]" if batch else frames[0])
        if trio.current_time() - started > FEED_SEND_TIMEOUT_S:
            return False


def _peer() -> str:
    client = websocket.scope.get("client")
    return "unknown" if client is None else f"{client[0]}:{client[1]}"


async def _discard_incoming() -> None:
    """Read and ignore what the client sends.

    Quart-Trio notices a disconnect only while it can queue incoming messages, so
    someone has to take them; the feed has no commands.
    """
    while True:
        await websocket.receive()
