"""Counters, gauges and delivery latency: the figures of ``/metrics``.

:class:`Metrics` is the one place where the pipeline counts what happened. Workers
call :meth:`Metrics.record_outcomes` on the hot path, so recording is plain integer
arithmetic (about a microsecond per outcome); the costly work (sorting the latency
window, building the Prometheus families) happens only when someone reads.

Everything runs in the trio thread and no method awaits, so a read never sees
half of a record: ``processed = delivered + failed + invalid + rate_limited +
expired + duplicate`` holds at every read.

Each priority lane (``contract/lanes.py``) has its own latency window and backlog
(:meth:`Metrics.bind_lanes`): the urgent lane's figures are not drowned in the main
lane's.

The web layer only needs the read side, :class:`MetricsView`; the Prometheus families
are built from it in :mod:`.prometheus`.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol

import msgspec
from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from ..contract.api import BreakerCount, LaneView, LatencyView, MetricsSnapshot, ProviderCount
from ..contract.delays import Step, StepKind
from ..contract.lanes import DEFAULT_PRIORITY, LANES, MAIN, PRIORITIES, LaneTopics
from ..contract.outcome import Outcome, OutcomeKind
from .prometheus import PROMETHEUS_CONTENT_TYPE, PrometheusCollector

__all__ = [
    "LATENCY_BUCKETS_S",
    "PROMETHEUS_CONTENT_TYPE",
    "Metrics",
    "MetricsView",
]

LATENCY_BUCKETS_S: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds (seconds) of the Prometheus latency histogram; +Inf is implied.
They reach past PROVIDER_TIMEOUT because retries with backoff add up."""

DEFAULT_LATENCY_WINDOW: Final = 10_000
"""How many of the latest outcomes the percentiles are computed over (overall, and
in each lane)."""

_PERCENTILES: Final = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
_BUCKET_BOUNDS_MS: Final = tuple(bound * 1000.0 for bound in LATENCY_BUCKETS_S)
_DELIVERED: Final = OutcomeKind.DELIVERED
_FAILED: Final = OutcomeKind.FAILED


def _zero() -> int:
    return 0


def _nothing_queued() -> list[int]:
    return [0] * PRIORITIES


def _nothing_unread() -> Mapping[str, int]:
    return {}


class _LatencyWindow:
    """The latest latencies (ms) of some outcomes, with the count, deliveries and
    latency sum of all of them: what a Prometheus summary reads. The hot path
    appends and adds to the attributes directly. (The overall window counts
    nothing: the per-kind counters and the histogram do.)"""

    __slots__ = ("count", "delivered", "latencies_ms", "sum_ms")

    def __init__(self, size: int) -> None:
        self.latencies_ms: deque[float] = deque(maxlen=size)
        self.count = 0
        self.delivered = 0
        self.sum_ms = 0.0

    def percentiles_ms(self) -> dict[str, float]:
        """p50, p95, p99 and max (nearest rank, ms) over the window; all zero while
        it is empty. Sorts the window: meant for reads, not for the hot path."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return {name: 0.0 for name, _ in _PERCENTILES} | {"max": 0.0}
        n = len(ordered)
        summary = {
            name: round(ordered[max(0, math.ceil(q * n) - 1)], 3) for name, q in _PERCENTILES
        }
        summary["max"] = round(ordered[-1], 3)
        return summary


class MetricsView(Protocol):
    """What the web layer may do with the metrics: read them."""

    def view(self) -> MetricsSnapshot: ...

    def prometheus_text(self) -> bytes: ...


class Metrics:
    """Counters and latency of one service instance.

    ``worker_count`` is reported as is (the service may update the attribute);
    ``providers`` are listed with zero counts before their first outcome;
    ``latency_window`` bounds the ring of latencies the percentiles read;
    ``clock`` (seconds, monotonic) measures uptime from construction.

    Not thread-safe: use it from the trio thread only (workers and web handlers).
    Each instance has its own Prometheus registry, so instances never clash.
    """

    def __init__(
        self,
        *,
        worker_count: int = 0,
        providers: Iterable[str] = (),
        latency_window: int = DEFAULT_LATENCY_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if latency_window < 1:
            raise ValueError(f"latency_window must be at least 1, not {latency_window}")
        self.worker_count = worker_count
        self.started_at = clock()
        self._clock = clock
        self._counts: dict[OutcomeKind, int] = dict.fromkeys(OutcomeKind, 0)
        # provider -> [delivered, failed]; lists so the hot path mutates in place.
        self._providers: dict[str, list[int]] = {name: [0, 0] for name in providers}
        self._retries = 0
        self._steps: dict[StepKind, int] = dict.fromkeys(StepKind, 0)
        self._pruned = 0
        self._breakers: Callable[[], Mapping[str, tuple[str, int]]] = dict
        self._latency_window = latency_window
        # Overall: its count is the histogram's, its sum is kept in the window.
        self._latency = _LatencyWindow(latency_window)
        # Per-bucket (not yet cumulative) counts; the last slot is +Inf.
        self._bucket_counts = [0] * (len(_BUCKET_BOUNDS_MS) + 1)
        # Lane -> its window; and each priority's window, so that the hot path
        # indexes a list instead of asking the lanes. One lane (main) until bound.
        self._lanes = LaneTopics(MAIN, "")
        self._lane_windows: dict[str, _LatencyWindow] = {MAIN: _LatencyWindow(latency_window)}
        self._window_of_priority = [self._lane_windows[MAIN]] * PRIORITIES
        self._lane_queued: Callable[[], list[int]] = _nothing_queued
        self._lane_unread: Callable[[], Mapping[str, int]] = _nothing_unread
        self._queue_size: Callable[[], int] = _zero
        self._in_flight: Callable[[], int] = _zero
        self._consumer_lag: Callable[[], int] = _zero
        self.registry = CollectorRegistry(auto_describe=False)
        """This instance's own Prometheus registry (never the global one)."""
        self.registry.register(PrometheusCollector(self))
        # The collectors of prometheus-client's default registry: process_* (memory,
        # CPU seconds, open fds; read from /proc, absent where there is none),
        # python_info and python_gc_*.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    # -- recording (hot path) -------------------------------------------------

    def record_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Count each outcome: its kind, its provider, its latency and its retries
        (``attempts`` beyond the first), overall and in the lane of its priority (a
        priority outside 0-3 ranks as DEFAULT_PRIORITY, as in the intake).

        Synchronous and never awaits, so every read sees whole records. If the
        iterable raises part-way, the outcomes already taken stay counted.
        """
        counts = self._counts
        providers = self._providers
        latencies = self._latency.latencies_ms
        lane_windows = self._window_of_priority
        buckets = self._bucket_counts
        bounds = _BUCKET_BOUNDS_MS
        latency_sum = 0.0
        retries = 0
        try:
            for outcome in outcomes:
                kind = outcome.event
                counts[kind] += 1
                if outcome.attempts > 1:
                    retries += outcome.attempts - 1
                provider = outcome.provider
                if provider:
                    per_provider = providers.get(provider)
                    if per_provider is None:
                        per_provider = providers[provider] = [0, 0]
                    if kind is _DELIVERED:
                        per_provider[0] += 1
                    elif kind is _FAILED:
                        per_provider[1] += 1
                latency_ms = outcome.latency_ms
                latencies.append(latency_ms)
                buckets[bisect_left(bounds, latency_ms)] += 1
                latency_sum += latency_ms
                priority = outcome.priority
                lane = lane_windows[priority if 0 <= priority < PRIORITIES else DEFAULT_PRIORITY]
                lane.latencies_ms.append(latency_ms)
                lane.count += 1
                lane.sum_ms += latency_ms
                if kind is _DELIVERED:
                    lane.delivered += 1
        finally:
            self._latency.sum_ms += latency_sum
            self._retries += retries

    def record_steps(self, steps: Iterable[Step]) -> None:
        """Count notifications written to a delay topic (retry tiers, park, defer)."""
        counts = self._steps
        for step in steps:
            counts[step.kind] += 1

    def record_pruned(self) -> None:
        """Count a dead device token removed from the registry."""
        self._pruned += 1

    def steps(self, kind: StepKind) -> int:
        """How many steps of ``kind`` were recorded."""
        return self._steps[kind]

    def bind_breakers(self, states: Callable[[], Mapping[str, tuple[str, int]]]) -> None:
        """Register what reports each provider's breaker: its state and transitions."""
        self._breakers = states

    def record_outcome(self, outcome: Outcome) -> None:
        """Count one outcome (see :meth:`record_outcomes`)."""
        self.record_outcomes((outcome,))

    def add_retries(self, n: int = 1) -> None:
        """Count ``n`` retried provider attempts; a negative ``n`` is a ValueError."""
        if n < 0:
            raise ValueError(f"retries cannot decrease (n={n})")
        self._retries += n

    def bind_gauges(
        self,
        *,
        queue_size: Callable[[], int],
        in_flight: Callable[[], int],
        consumer_lag: Callable[[], int],
    ) -> None:
        """Register the callables that report the live gauges; each read calls them.

        Until bound, the gauges read 0. Binding again replaces the callables. They
        run inside :meth:`snapshot` and :meth:`prometheus_text`, so they must be
        cheap and must not block; an exception from one propagates to the reader.
        """
        self._queue_size = queue_size
        self._in_flight = in_flight
        self._consumer_lag = consumer_lag

    def bind_lanes(
        self,
        lanes: LaneTopics,
        queued: Callable[[], list[int]],
        unread: Callable[[], Mapping[str, int]],
    ) -> None:
        """Report per lane: ``main`` always, ``urgent`` when ``lanes`` has it.

        Outcomes from now on count in ``lanes.lane_of(outcome.priority)``. A lane's
        backlog is what ``queued()`` (records waiting for a worker, by priority 0-3)
        holds of its priorities plus ``unread()[lane]`` (records not read yet; a
        lane it leaves out has 0). Until bound there is one lane, main, with no
        backlog. Binding again keeps the windows of the lanes that remain. The
        callables run on each read, like :meth:`bind_gauges`'.
        """
        names = [lane for lane in LANES if lane == MAIN or lanes.enabled]
        self._lane_windows = {
            lane: self._lane_windows.get(lane) or _LatencyWindow(self._latency_window)
            for lane in names
        }
        self._window_of_priority = [
            self._lane_windows[lanes.lane_of(priority)] for priority in range(PRIORITIES)
        ]
        self._lanes = lanes
        self._lane_queued = queued
        self._lane_unread = unread

    # -- reading ----------------------------------------------------------------

    @property
    def processed(self) -> int:
        """All outcomes recorded: the sum of the per-kind counters."""
        return sum(self._counts.values())

    def count(self, kind: OutcomeKind) -> int:
        """How many outcomes of ``kind`` were recorded."""
        return self._counts[kind]

    @property
    def retried_attempts(self) -> int:
        return self._retries

    @property
    def uptime_seconds(self) -> float:
        return max(0.0, self._clock() - self.started_at)

    def latency_percentiles_ms(self) -> dict[str, float]:
        """p50, p95, p99 and max (nearest rank, ms) over the latency window.

        All zero before the first outcome. Sorts the window: meant for reads,
        not for the hot path.
        """
        return self._latency.percentiles_ms()

    def lane_views(self) -> dict[str, LaneView]:
        """Each lane's backlog, counts and latency percentiles (over its own window).

        Calls the bound lane callables; their exceptions propagate.
        """
        lane_of = self._lanes.lane_of
        queued = dict.fromkeys(self._lane_windows, 0)
        for priority, n in enumerate(self._lane_queued()):
            queued[lane_of(priority)] += n
        unread = self._lane_unread()
        views = {}
        for lane, window in self._lane_windows.items():
            waiting = unread.get(lane, 0)
            views[lane] = LaneView(
                backlog=queued[lane] + waiting,
                queued=queued[lane],
                unread=waiting,
                processed=window.count,
                delivered=window.delivered,
                latency_ms=LatencyView(**window.percentiles_ms()),
            )
        return views

    def lane_latency_sums_s(self) -> dict[str, float]:
        """Each lane's latency sum over all its outcomes, in seconds."""
        return {lane: window.sum_ms / 1000.0 for lane, window in self._lane_windows.items()}

    def snapshot(self) -> dict[str, Any]:
        """The JSON document of ``GET /metrics`` (:meth:`view` as plain values)."""
        return msgspec.to_builtins(self.view())  # type: ignore[no-any-return]

    def view(self) -> MetricsSnapshot:
        """The figures of ``GET /metrics``.

        Calls the bound gauge callables; their exceptions propagate.
        """
        counts = self._counts
        return MetricsSnapshot(
            processed_messages=self.processed,
            delivered_messages=counts[OutcomeKind.DELIVERED],
            failed_messages=counts[OutcomeKind.FAILED],
            invalid_messages=counts[OutcomeKind.INVALID],
            rate_limited_messages=counts[OutcomeKind.RATE_LIMITED],
            expired_messages=counts[OutcomeKind.EXPIRED],
            duplicate_messages=counts[OutcomeKind.DUPLICATE],
            retried_attempts=self._retries,
            retry_scheduled_messages=self._steps[StepKind.RETRY_SCHEDULED],
            parked_messages=self._steps[StepKind.PARKED],
            deferred_messages=self._steps[StepKind.DEFERRED],
            pruned_tokens=self._pruned,
            breakers={
                name: BreakerCount(state, transitions)  # type: ignore[arg-type]
                for name, (state, transitions) in sorted(self._breakers().items())
            },
            queue_size=self._queue_size(),
            in_flight=self._in_flight(),
            worker_count=self.worker_count,
            consumer_lag=self._consumer_lag(),
            latency_ms=LatencyView(**self.latency_percentiles_ms()),
            lanes=self.lane_views(),
            providers={
                name: ProviderCount(delivered, failed)
                for name, (delivered, failed) in sorted(self._providers.items())
            },
            uptime_seconds=round(self.uptime_seconds, 3),
        )

    def prometheus_text(self) -> bytes:
        """The same figures in the Prometheus text format (:data:`PROMETHEUS_CONTENT_TYPE`),
        with the standard ``process_*`` and ``python_*`` metrics of this process.

        Calls the bound gauge callables; their exceptions propagate.
        """
        return generate_latest(self.registry)

    def histogram_buckets(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (le, count) pairs ending with +Inf, and the sum in seconds."""
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*LATENCY_BUCKETS_S, math.inf), self._bucket_counts, strict=True):
            running += n
            cumulative.append(("+Inf" if math.isinf(bound) else repr(bound), running))
        return cumulative, self._latency.sum_ms / 1000.0
