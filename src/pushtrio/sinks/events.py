"""The event hub: every outcome and intermediate event, live, to each WebSocket subscriber.

Events are final outcomes (``delivered``...), intermediate steps of a notification
(``retry_scheduled``, ``parked``, ``deferred``), provider breaker changes
(``{"event": "breaker", "provider", "state"}``, which carry no user) and device tokens
pruned (``{"event": "token_pruned", "user_id", "provider", "token"}``).

Delivery never waits for a subscriber. :meth:`EventHub.publish` is synchronous:
it appends to each matching subscriber's own bounded buffer and returns. When a
buffer is full, its oldest events are dropped and counted; the subscriber's next
event is then ``{"event": "dropped", "count": N}``, followed by the newer events.

With no subscribers, publishing costs one truth test. An event some subscriber
wants is encoded to its JSON text once, for all of them; buffers hold that text.

Typical use in the feed handler::

    with hub.subscribe(user_id="u1", events="delivered,failed") as subscription:
        while frames := await subscription.receive_frames():
            await ws.send("[" + ",".join(frames) + "]")
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

import orjson
import trio

from ..contract.delays import StepKind
from ..contract.outcome import OutcomeKind

__all__ = [
    "DEFAULT_CAPACITY",
    "EVENT_KINDS",
    "BreakerEvent",
    "EventHub",
    "FeedEvent",
    "Subscription",
    "TokenPrunedEvent",
    "parse_event_filter",
]

T = TypeVar("T")

DEFAULT_CAPACITY: Final = 1000
"""Events a subscriber may fall behind by before its oldest are dropped."""
EVENT_KINDS: Final = (
    *(kind.value for kind in OutcomeKind),
    *(kind.value for kind in StepKind),
    "breaker",
    "token_pruned",
)
"""Every event name a subscriber may ask for."""


class FeedEvent(Protocol):
    """What the hub carries: an outcome, a step or a breaker change."""

    @property
    def event(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    def to_event(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """A provider's circuit breaker changed state; seen by subscribers of every user."""

    provider: str
    state: str
    ts: float = field(default_factory=time.time)
    event: str = "breaker"
    user_id: str = ""

    def to_event(self) -> dict[str, Any]:
        return {"event": "breaker", "provider": self.provider, "state": self.state, "ts": self.ts}


@dataclass(frozen=True, slots=True)
class TokenPrunedEvent:
    """A provider called a device token dead: removed from the registry (a token the
    message named itself is announced too, so that its sender can forget it)."""

    user_id: str
    provider: str
    token: str
    ts: float = field(default_factory=time.time)
    event: str = "token_pruned"

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "token_pruned",
            "user_id": self.user_id,
            "provider": self.provider,
            "token": self.token,
            "ts": self.ts,
        }


def parse_event_filter(events: str | Iterable[str] | None) -> frozenset[str] | None:
    """Normalise an event filter: ``None``, ``"delivered,failed"`` or an iterable of kinds.

    Returns None (no filter) when nothing is named. Raises ValueError naming the
    first unknown kind, so a handler can answer 400.
    """
    if events is None:
        return None
    names = events.split(",") if isinstance(events, str) else events
    kinds: set[str] = set()
    for name in names:
        name = name.strip()
        if not name:
            continue
        if name not in EVENT_KINDS:
            known = ", ".join(EVENT_KINDS)
            raise ValueError(f"unknown event {name!r} (known: {known})")
        kinds.add(name)
    return frozenset(kinds) or None


class Subscription:
    """One subscriber's view of the feed: a bounded buffer and a drop counter.

    Made by :meth:`EventHub.subscribe`; read with :meth:`receive` or ``async for``.
    """

    def __init__(
        self,
        *,
        user_id: str | None,
        events: frozenset[str] | None,
        capacity: int,
    ) -> None:
        self.user_id = user_id
        self.events = events
        self.capacity = capacity
        self.dropped_total = 0
        """Events this subscriber lost to overflow, over its whole life."""
        self._buffer: deque[str] = deque(maxlen=capacity)
        self._dropped = 0
        self._lot = trio.lowlevel.ParkingLot()
        self._ended = False  # the hub closed: drain the buffer, then EndOfChannel
        self._closed = False  # unsubscribed: ClosedResourceError

    def matches(self, event: FeedEvent) -> bool:
        """Whether ``event`` passes this subscriber's filters (a breaker change has no
        user: only subscribers of every user see it)."""
        return (self.user_id is None or event.user_id == self.user_id) and (
            self.events is None or event.event in self.events
        )

    @property
    def pending(self) -> int:
        """Events buffered and not yet received (a dropped notice not included)."""
        return len(self._buffer)

    def frame_nowait(self) -> str:
        """The next event's JSON text without waiting.

        A pending dropped notice comes before any buffered event. Raises
        trio.WouldBlock when there is nothing, trio.EndOfChannel once the hub is
        closed and the buffer is drained, trio.ClosedResourceError after
        unsubscribing.
        """
        if self._closed:
            raise trio.ClosedResourceError("this subscription has ended")
        if self._dropped:
            count, self._dropped = self._dropped, 0
            return orjson.dumps({"event": "dropped", "count": count}).decode()
        if self._buffer:
            return self._buffer.popleft()
        if self._ended:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    def frames_nowait(self, limit: int) -> list[str]:
        """Every waiting event's JSON text, up to ``limit`` (at least one); raises as
        :meth:`frame_nowait` when there is none."""
        frames = [self.frame_nowait()]
        take = self.frame_nowait
        while len(frames) < limit and (self._dropped or self._buffer):
            frames.append(take())
        return frames

    def receive_nowait(self) -> dict[str, Any]:
        """The next event as a fresh dict (see :meth:`frame_nowait`)."""
        event: dict[str, Any] = orjson.loads(self.frame_nowait())
        return event

    async def receive(self) -> dict[str, Any]:
        """Wait for the next event and return it (see :meth:`frame_nowait`).

        Cancellation loses nothing: what arrived stays buffered for the next call.
        Raises trio.EndOfChannel when the hub has closed and everything buffered
        was received, trio.ClosedResourceError if the subscription has ended.
        """
        event: dict[str, Any] = orjson.loads(await self._wait(self.frame_nowait))
        return event

    async def receive_frames(self, limit: int = DEFAULT_CAPACITY) -> list[str]:
        """Wait for at least one event; return the JSON text of all waiting, up to
        ``limit``. Raises as :meth:`receive`."""
        return await self._wait(lambda: self.frames_nowait(limit))

    async def _wait(self, take: Callable[[], T]) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            taken = take()
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return taken
        while True:
            await self._lot.park()
            try:
                return take()
            except trio.WouldBlock:
                continue

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        """Like :meth:`receive`; the iteration stops at end of stream."""
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def _push(self, frame: str) -> None:
        if len(self._buffer) == self.capacity:
            self._dropped += 1
            self.dropped_total += 1
        self._buffer.append(frame)  # maxlen: the oldest falls out
        if len(self._lot):
            self._lot.unpark_all()

    def _end(self) -> None:
        self._ended = True
        self._lot.unpark_all()

    def _close(self) -> None:
        self._closed = True
        self._buffer.clear()
        self._lot.unpark_all()


class EventHub:
    """Fans outcomes out to subscribers, each with its own bounded buffer.

    Use it from the trio thread only. It owns no task: the service creates it,
    hands it to the pipeline (publish) and the web layer (subscribe), and calls
    :meth:`close` at shutdown so that open feeds end.
    """

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, outcomes: Iterable[FeedEvent]) -> None:
        """Offer outcomes to every subscriber whose filters match, in order.

        Never blocks and never awaits; a full buffer drops its oldest event. With
        no subscribers (or after :meth:`close`) the outcomes are not even
        iterated.
        """
        subscriptions = self._subscriptions
        if not subscriptions:
            return
        for outcome in outcomes:
            frame = None
            for subscription in subscriptions:
                if subscription.matches(outcome):
                    if frame is None:  # encoded once, for every subscriber that wants it
                        frame = orjson.dumps(outcome.to_event()).decode()
                    subscription._push(frame)

    @contextmanager
    def subscribe(
        self,
        *,
        user_id: str | None = None,
        events: str | Iterable[str] | None = None,
        capacity: int = DEFAULT_CAPACITY,
    ) -> Iterator[Subscription]:
        """Subscribe for the duration of the ``with`` block.

        ``user_id`` keeps only that user's outcomes (empty means all); ``events``
        keeps only those kinds (``"delivered,failed"`` or an iterable; empty
        means all). Events published after entry are buffered, up to
        ``capacity``. On exit (normal, error or cancellation) the subscriber is
        removed and its buffer discarded.

        Raises ValueError for an unknown event kind or a capacity below 1. After
        :meth:`close`, the subscription yielded is already at end of stream.
        """
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        subscription = Subscription(
            user_id=user_id or None, events=parse_event_filter(events), capacity=capacity
        )
        if self._closed:
            subscription._end()
        else:
            self._subscriptions.append(subscription)
        try:
            yield subscription
        finally:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
            subscription._close()

    def close(self) -> None:
        """End every feed: receivers get their buffered events, then EndOfChannel.

        Idempotent. Later publishes are ignored; later subscriptions end at once.
        """
        self._closed = True
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription._end()
