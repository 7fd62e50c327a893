"""``WS /ws/events``: the live outcome feed, one JSON text frame per outcome.

Query parameters (both optional): ``user_id`` keeps one user's outcomes;
``event`` keeps some kinds (``delivered,failed``; may be repeated). An invalid
value is refused before the handshake with 400 and a JSON error.

Each connection reads from its own bounded :class:`~pushtrio.events.Subscription`,
so a client that reads slowly (or not at all) costs the pipeline nothing: its
oldest events are dropped and the next frame it gets is ``{"event": "dropped",
"count": N}``. When the service shuts down, the buffered events are sent and the
connection is closed with code 1001.
"""

from __future__ import annotations

from typing import Final

import orjson
import trio
from quart import Response, websocket
from quart_trio import QuartTrio

from ..events import DEFAULT_CAPACITY, EventHub, parse_event_filter
from ..model import USER_ID_PATTERN
from .responses import bad_user_id, json_error

FEED_CAPACITY: Final = DEFAULT_CAPACITY
"""Events one connection may fall behind by before its oldest are dropped."""


def add_feed_route(app: QuartTrio, hub: EventHub) -> None:
    """Register ``WS /ws/events`` on ``app``, fed by ``hub``."""

    @app.websocket("/ws/events")
    async def events() -> Response | None:
        user_id = websocket.args.get("user_id", "").strip()
        if user_id and not USER_ID_PATTERN.fullmatch(user_id):
            return bad_user_id()
        try:
            kinds = parse_event_filter(",".join(websocket.args.getlist("event")))
        except ValueError as exc:
            return json_error(400, str(exc), field="event")
        # Subscribe before accepting: whatever happens once the client is
        # connected reaches it.
        with hub.subscribe(user_id=user_id, events=kinds, capacity=FEED_CAPACITY) as subscription:
            await websocket.accept()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_discard_incoming)
                async for event in subscription:
                    await websocket.send(orjson.dumps(event).decode())
                nursery.cancel_scope.cancel()
        await websocket.close(1001, "service shutting down")
        return None


async def _discard_incoming() -> None:
    """Read and ignore what the client sends.

    Quart-Trio notices a disconnect only while it can queue incoming messages, so
    someone has to take them; the feed has no commands.
    """
    while True:
        await websocket.receive()
