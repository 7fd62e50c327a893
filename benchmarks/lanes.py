"""Phase 9: priority lanes, urgent notifications sent while a backlog drains.

A backlog of priority-0 records is pre-produced on the main topic and ``pushtrio
serve`` (PROVIDER_LATENCY=5ms) drains it three times, each on a fresh topic and group:

    no urgent   the backlog alone: its throughput without urgent traffic
    lanes on    the backlog, and URGENT priority-3 notifications through ``POST
                /send``, one every ``interval`` from the first backlog outcome on;
                they go to the urgent topic (``<KAFKA_TOPIC>.urgent``)
    lanes off   the same with ``URGENT_TOPIC=`` (blank): they queue on the main
                topic behind what is left of the backlog

An urgent notification's latency is its outcome's ``ts`` (the service's wall clock)
minus the wall clock just before its POST (same machine). The backlog's throughput
is its records over the time from its first outcome to its last. The sends are
spread over SEND_SPREAD of the drain measured without urgent traffic (one every
SEND_INTERVAL_S at most), so they all fall while the backlog drains; each POST runs in
a task of its own, so a slow answer does not hold up the next send, and its round
trip is reported too (the record is in Kafka when it answers).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from .context import Bench, reported_settings
from .kafka_io import Record
from .serve import BenchmarkError, MeasuredServe, OutcomeTail
from .stats import LatencySummary, rate, summarise_latency

BACKLOG = 50_000
"""Also with --quick: 20,000 records drain in under a second on 2 cores, and 100 sends
squeezed into that are a load of their own (one every 5 ms), not the same test."""
URGENT = 100
URGENT_PRIORITY = 3
SEND_INTERVAL_S = 0.025
SEND_SPREAD = 0.6
"""The share of the drain without urgent traffic that the sends are spread over."""
SEND_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.2
FIRST_OUTCOME_POLL_S = 0.01
SETTINGS = {
    "PROVIDER_LATENCY": "5ms",
    "PROVIDER_SUCCESS_RATE": "1",
    "LOG_LEVEL": "info",  # the ready line gives the address of POST /send
}
LANES_OFF = {**SETTINGS, "URGENT_TOPIC": ""}


@dataclass(frozen=True, slots=True)
class Send:
    """One urgent ``POST /send``: wall clock just before it and when it was answered."""

    sent_wall: float
    accepted_wall: float


@dataclass(frozen=True, slots=True)
class BacklogFigures:
    records: int
    seconds: float
    """First backlog outcome to the last."""
    rate: float


@dataclass(frozen=True, slots=True)
class LanesRun:
    """One ``pushtrio serve`` through the backlog, with or without urgent traffic."""

    label: str
    backlog: BacklogFigures
    urgent: LatencySummary | None
    """Send to outcome; None when no urgent notification was sent."""
    post: LatencySummary | None
    """``POST /send`` round trip (the urgent record is in Kafka when it answers)."""
    urgent_sent: int
    accepted_during_drain: int
    """Urgent notifications accepted by ``POST /send`` before the last backlog outcome."""
    startup_s: float
    """Process start to the first outcome."""
    outcomes: dict[str, int]
    settings: dict[str, str]


@dataclass(frozen=True, slots=True)
class LanesResult:
    backlog: int
    urgent: int
    send_interval_ms: float
    no_urgent: LanesRun
    lanes_on: LanesRun
    lanes_off: LanesRun
    throughput_ratio: float
    """Backlog throughput with urgent traffic (lanes on) / without."""
    settings: dict[str, str]


def send_interval_s(drain_s: float, count: int) -> float:
    """Time between two urgent sends: SEND_INTERVAL_S, or less so that ``count`` sends
    fit in SEND_SPREAD of a drain of ``drain_s``."""
    if count < 1:
        return SEND_INTERVAL_S
    return min(SEND_INTERVAL_S, SEND_SPREAD * drain_s / count)


def run_figures(
    label: str,
    outcomes: Sequence[Mapping[str, Any]],
    sends: Mapping[str, Send],
    started_wall: float,
    settings: Mapping[str, str],
) -> LanesRun:
    """A run's figures from its outcome log and the wall clock of each urgent send.

    The first outcome of an id counts; every outcome whose id was not sent is the
    backlog's. Raises BenchmarkError when an urgent notification has no outcome.
    """
    first_ts: dict[str, float] = {}
    for outcome in outcomes:
        first_ts.setdefault(str(outcome["id"]), float(outcome["ts"]))
    missing = [key for key in sends if key not in first_ts]
    if missing:
        raise BenchmarkError(f"{label}: {len(missing)} urgent notifications had no outcome")
    backlog_ts = [ts for key, ts in first_ts.items() if key not in sends]
    if not backlog_ts:
        raise BenchmarkError(f"{label}: no backlog outcome was logged")
    first, last = min(backlog_ts), max(backlog_ts)
    latencies_ms = [(first_ts[key] - send.sent_wall) * 1000.0 for key, send in sends.items()]
    posts_ms = [(send.accepted_wall - send.sent_wall) * 1000.0 for send in sends.values()]
    return LanesRun(
        label=label,
        backlog=BacklogFigures(len(backlog_ts), last - first, rate(len(backlog_ts), last - first)),
        urgent=summarise_latency(latencies_ms) if latencies_ms else None,
        post=summarise_latency(posts_ms) if posts_ms else None,
        urgent_sent=len(sends),
        accepted_during_drain=sum(1 for send in sends.values() if send.accepted_wall < last),
        startup_s=min(first_ts.values()) - started_wall,
        outcomes=dict(Counter(str(o["event"]) for o in outcomes).most_common()),
        settings=dict(settings),
    )


def run_lanes(bench: Bench, records: Sequence[Record], timeout_s: float) -> LanesResult:
    """The three runs (no urgent traffic first: its drain sets the pace of the sends).

    Raises BenchmarkError if a service exits, is not ready, or an outcome does not
    arrive within ``timeout_s``. Every service is stopped however this returns.
    """
    backlog = len(records)
    no_urgent = _run(bench, "lanes-no-urgent", records, SETTINGS, 0, 0.0, timeout_s)
    interval_s = send_interval_s(no_urgent.backlog.seconds, URGENT)
    lanes_on = _run(bench, "lanes-on", records, SETTINGS, URGENT, interval_s, timeout_s)
    lanes_off = _run(bench, "lanes-off", records, LANES_OFF, URGENT, interval_s, timeout_s)
    baseline = no_urgent.backlog.rate
    return LanesResult(
        backlog=backlog,
        urgent=URGENT,
        send_interval_ms=interval_s * 1000.0,
        no_urgent=no_urgent,
        lanes_on=lanes_on,
        lanes_off=lanes_off,
        throughput_ratio=lanes_on.backlog.rate / baseline if baseline else 0.0,
        settings=lanes_on.settings,
    )


def _run(
    bench: Bench,
    label: str,
    records: Sequence[Record],
    overrides: Mapping[str, str],
    urgent: int,
    interval_s: float,
    timeout_s: float,
) -> LanesRun:
    """Produce the backlog to a fresh topic, start the service, send ``urgent``
    notifications from its first outcome on, and wait for every outcome."""
    topic, group = bench.new_topic(label)
    bench.flush_redis()
    bench.produce(topic, records, f"{label}: backlog")
    total = len(records) + urgent
    task = bench.progress.add_task(f"{label}: outcomes", total=total)
    with bench.start_serve(label, topic, group, overrides) as serve:
        deadline = time.perf_counter() + timeout_s
        try:
            url = serve.wait_ready(60)
        except AssertionError as exc:
            raise BenchmarkError(f"{label}: {exc}") from exc
        lines = _LineCounter(serve.outcome_log)
        _wait(serve, lambda: lines.count() > 0, deadline, f"{label}: no outcome")
        sends = trio.run(_send_urgent, url, label, urgent, interval_s)

        def done() -> bool:
            seen = lines.count()
            bench.progress.update(task, completed=min(seen, total))
            return seen >= total

        _wait(serve, done, deadline, f"{label}: fewer than {total:,} outcomes", POLL_INTERVAL_S)
        settings = reported_settings(serve.env)
    outcomes = OutcomeTail(serve.outcome_log).read_new()
    return run_figures(label, outcomes, sends, serve.started_wall, settings)


def urgent_document(label: str, i: int) -> dict[str, Any]:
    """The ``i``-th urgent notification of run ``label`` (its id names both)."""
    return {
        "id": f"{label}-urgent-{i}",
        "user_id": f"urgent-{i % 10}",
        "title": "Urgent",
        "body": "Your flight boards now",
        "priority": URGENT_PRIORITY,
    }


async def _send_urgent(url: str, label: str, count: int, interval_s: float) -> dict[str, Send]:
    """POST ``count`` urgent notifications on a steady schedule, each in its own task
    (a slow answer does not delay the next send); return each id's :class:`Send`.

    Raises BenchmarkError unless every one was accepted.
    """
    sends: dict[str, Send] = {}
    failures: list[str] = []
    documents = [urgent_document(label, i) for i in range(count)]

    async def post(client: httpx.AsyncClient, document: dict[str, Any]) -> None:
        sent_wall = time.time()
        try:
            response = await client.post("/send", json=document)
        except httpx.HTTPError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
            return
        if response.status_code == 202:
            sends[document["id"]] = Send(sent_wall, time.time())
        else:
            failures.append(f"answered {response.status_code}: {response.text}")

    async with httpx.AsyncClient(base_url=url, timeout=SEND_TIMEOUT_S) as client:
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i, document in enumerate(documents):
                await trio.sleep_until(started + i * interval_s)
                nursery.start_soon(post, client, document)
    if failures:
        raise BenchmarkError(
            f"{label}: {len(failures)} of {count} POST /send failed, the first {failures[0]}"
        )
    return sends


def _wait(
    serve: MeasuredServe,
    condition: Callable[[], bool],
    deadline: float,
    failure: str,
    poll_s: float = FIRST_OUTCOME_POLL_S,
) -> None:
    """Poll ``condition`` until true; BenchmarkError if the service exits or past ``deadline``."""
    while not condition():
        serve.check_alive()
        if time.perf_counter() > deadline:
            raise BenchmarkError(f"{failure} before the timeout")
        time.sleep(poll_s)


class _LineCounter:
    """Whole lines of a growing file, counted from where the last call stopped reading
    (re-reading a 10 MB outcome log at every poll would take CPU from the service)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._lines = 0

    def count(self) -> int:
        try:
            with open(self._path, "rb") as stream:
                stream.seek(self._offset)
                chunk = stream.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        self._lines += chunk.count(b"\n")
        return self._lines
