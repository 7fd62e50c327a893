"""The live feed under a burst: do reading subscribers get every event?

Five subscribers read ``WS /ws/events`` as fast as they can while a burst of
records (pre-produced into a topic the service then reads flat out) goes through
``pushtrio serve``. Each counts the events it received and the drops it was told
of (``{"event": "dropped", "count": N}``); the phase runs once with ``batch=1``
(a JSON array of every waiting event per frame, what ``pushtrio watch`` and the
dashboard use) and once with one event per frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import trio
from rich.progress import TaskID
from trio_websocket import ConnectionClosed, open_websocket_url

from .context import Bench
from .kafka_io import Record

SUBSCRIBERS = 5
BURST = 20_000
WAIT_S = 120.0


@dataclass(frozen=True, slots=True)
class FeedRun:
    batch: bool
    received: list[int]
    """Events each subscriber received."""
    dropped: list[int]
    """Events each subscriber was told it lost."""
    frames: list[int]


@dataclass(frozen=True, slots=True)
class FeedResult:
    burst: int
    subscribers: int
    runs: list[FeedRun]


def run_feed(bench: Bench, records: Sequence[Record]) -> FeedResult:
    """Both runs (batch frames, then one event a frame), each on a fresh topic."""
    runs = [_run(bench, records, batch) for batch in (True, False)]
    return FeedResult(len(records), SUBSCRIBERS, runs)


def _run(bench: Bench, records: Sequence[Record], batch: bool) -> FeedRun:
    """Start the service on an empty topic, connect the subscribers, then produce
    the burst into the topic flat out."""
    label = "feed-batch" if batch else "feed-single"
    topic, group = bench.new_topic(label)
    task = bench.progress.add_task(f"{label}: events", total=len(records) * SUBSCRIBERS)
    with bench.start_serve(label, topic, group, {"LOG_LEVEL": "info"}) as serve:
        url = serve.wait_ready(60)
        counts = trio.run(_subscribe_and_burst, bench, url, topic, records, batch, task)
    return FeedRun(batch, *counts)


async def _subscribe_and_burst(
    bench: Bench, url: str, topic: str, records: Sequence[Record], batch: bool, task: TaskID
) -> tuple[list[int], list[int], list[int]]:
    received = [0] * SUBSCRIBERS
    dropped = [0] * SUBSCRIBERS
    frames = [0] * SUBSCRIBERS
    connected = trio.Semaphore(0)
    feed = url.replace("http://", "ws://") + "/ws/events" + ("?batch=1" if batch else "")

    async def subscriber(i: int) -> None:
        async with open_websocket_url(feed) as ws:
            connected.release()
            with contextlib.suppress(ConnectionClosed):
                while received[i] + dropped[i] < len(records):
                    message = orjson.loads(await ws.get_message())
                    frames[i] += 1
                    for event in message if isinstance(message, list) else [message]:
                        if event["event"] == "dropped":
                            dropped[i] += event["count"]
                        else:
                            received[i] += 1
                    bench.progress.update(task, completed=sum(received) + sum(dropped))

    with trio.move_on_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            for i in range(SUBSCRIBERS):
                nursery.start_soon(subscriber, i)
            for _ in range(SUBSCRIBERS):
                await connected.acquire()
            await trio.to_thread.run_sync(bench.produce, topic, records, "feed: burst")
    return received, dropped, frames
