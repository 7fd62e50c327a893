"""The Prometheus families of ``/metrics/prometheus``, built from :class:`~.metrics.Metrics`
on each scrape (nothing is kept here: a scrape reads the figures once, then formats)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from ..contract.outcome import OutcomeKind
from ..pipeline.breaker import BreakerState

PROMETHEUS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""Content type of the scrape (the classic text format that ``generate_latest``
writes; newer prometheus-client names another as LATEST)."""
BREAKER_STATES: Final = tuple(state.value for state in BreakerState)
QUANTILES: Final = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"), ("1", "max"))
"""A summary's quantile labels and the percentiles they read (1 is the max)."""


class Scraped(Protocol):
    """What a scrape reads of the metrics."""

    def snapshot(self) -> dict[str, Any]: ...

    def count(self, kind: OutcomeKind) -> int: ...

    def histogram_buckets(self) -> tuple[list[tuple[str, float]], float]: ...

    def lane_latency_sums_s(self) -> dict[str, float]: ...


class PrometheusCollector:
    """Builds this instance's metric families on each scrape."""

    def __init__(self, metrics: Scraped) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        # Read everything first, in one synchronous step, so a scrape is consistent.
        metrics = self._metrics
        snapshot = metrics.snapshot()
        counts = {kind: metrics.count(kind) for kind in OutcomeKind}
        buckets, latency_sum_s = metrics.histogram_buckets()
        lane_sums_s = metrics.lane_latency_sums_s()

        yield CounterMetricFamily(
            "pushtrio_processed_messages",
            "Messages that reached a final outcome.",
            value=snapshot["processed_messages"],
        )
        outcomes = CounterMetricFamily(
            "pushtrio_outcomes", "Messages by final outcome.", labels=["outcome"]
        )
        for kind, n in counts.items():
            outcomes.add_metric([kind.value], n)
        yield outcomes
        yield CounterMetricFamily(
            "pushtrio_retried_attempts",
            "Provider attempts that were retries of a transient failure.",
            value=snapshot["retried_attempts"],
        )
        for step, documentation in (
            ("retry_scheduled", "Notifications written to a retry tier."),
            ("parked", "Notifications parked while their provider's breaker was open."),
            ("deferred", "Notifications deferred until their user's window had room."),
        ):
            yield CounterMetricFamily(
                f"pushtrio_{step}_messages",
                documentation,
                value=snapshot[f"{step}_messages"],
            )
        yield CounterMetricFamily(
            "pushtrio_pruned_tokens",
            "Dead device tokens removed from the registry.",
            value=snapshot["pruned_tokens"],
        )
        breaker_state = GaugeMetricFamily(
            "pushtrio_breaker_state",
            "1 for the state each provider's circuit breaker is in, 0 for the others.",
            labels=["provider", "state"],
        )
        breaker_changes = CounterMetricFamily(
            "pushtrio_breaker_transitions",
            "State changes of each provider's circuit breaker.",
            labels=["provider"],
        )
        for name, breaker in snapshot["breakers"].items():
            for state in BREAKER_STATES:
                breaker_state.add_metric([name, state], float(breaker["state"] == state))
            breaker_changes.add_metric([name], breaker["transitions"])
        yield breaker_state
        yield breaker_changes
        per_provider = CounterMetricFamily(
            "pushtrio_provider_outcomes",
            "Deliveries and permanent failures per provider.",
            labels=["provider", "outcome"],
        )
        for name, provider_counts in snapshot["providers"].items():
            for outcome, n in provider_counts.items():
                per_provider.add_metric([name, outcome], n)
        yield per_provider

        for name, documentation, value in (
            ("pushtrio_queue_size", "Messages waiting for a worker.", snapshot["queue_size"]),
            ("pushtrio_in_flight", "Messages being processed.", snapshot["in_flight"]),
            ("pushtrio_consumer_lag", "Records not yet consumed.", snapshot["consumer_lag"]),
            ("pushtrio_workers", "Worker tasks.", snapshot["worker_count"]),
            ("pushtrio_uptime_seconds", "Seconds since start.", snapshot["uptime_seconds"]),
        ):
            yield GaugeMetricFamily(name, documentation, value=value)

        yield HistogramMetricFamily(
            "pushtrio_latency_seconds",
            "Processing latency of each outcome.",
            buckets=buckets,
            sum_value=latency_sum_s,
        )
        # A summary in the Go client's sense: quantiles over the latest outcomes
        # (quantile 1 is their max), count and sum over all of them.
        window = SummaryMetricFamily(
            "pushtrio_latency_window_seconds",
            "Latency quantiles over the latest outcomes; count and sum over all.",
            count_value=int(buckets[-1][1]),
            sum_value=latency_sum_s,
        )
        for quantile, name in QUANTILES:
            window.add_sample(
                window.name, {"quantile": quantile}, snapshot["latency_ms"][name] / 1000.0
            )
        yield window
        yield from _lane_families(snapshot["lanes"], lane_sums_s)


def _lane_families(lanes: dict[str, Any], sums_s: Mapping[str, float]) -> Iterator[Metric]:
    """The per-lane series, from the ``lanes`` of a snapshot and each lane's latency sum."""
    gauges = {
        field: GaugeMetricFamily(f"pushtrio_lane_{field}", documentation, labels=["lane"])
        for field, documentation in (
            ("backlog", "Records of each lane waiting for a worker or not read yet."),
            ("queued", "Records of each lane read and waiting for a worker."),
            ("unread", "Records of each lane on this instance's partitions not read yet."),
        )
    }
    delivered = CounterMetricFamily(
        "pushtrio_lane_delivered_messages", "Deliveries per lane.", labels=["lane"]
    )
    latency = SummaryMetricFamily(
        "pushtrio_lane_latency_seconds",
        "Latency quantiles over each lane's latest outcomes; count and sum over all.",
        labels=["lane"],
    )
    for lane, view in lanes.items():
        for field, family in gauges.items():
            family.add_metric([lane], view[field])
        delivered.add_metric([lane], view["delivered"])
        latency.add_metric([lane], count_value=view["processed"], sum_value=sums_s[lane])
        percentiles = view["latency_ms"]
        for quantile, name in QUANTILES:
            latency.add_sample(
                latency.name, {"lane": lane, "quantile": quantile}, percentiles[name] / 1000.0
            )
    yield from gauges.values()
    yield delivered
    yield latency
