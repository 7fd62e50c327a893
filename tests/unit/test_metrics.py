"""Metrics: counters, the /metrics invariant, percentiles and the Prometheus text."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pushtrio.contract.api import MetricsSnapshot
from pushtrio.contract.delays import Step, StepKind
from pushtrio.contract.outcome import Outcome, OutcomeKind
from pushtrio.sinks.metrics import LATENCY_BUCKETS_S, Metrics

KINDS = list(OutcomeKind)
SNAPSHOT_KEYS = {field.name for field in msgspec.structs.fields(MetricsSnapshot)}


def outcome(kind: OutcomeKind, provider: str = "fcm", latency_ms: float = 1.0) -> Outcome:
    return Outcome(event=kind, id="n", user_id="u1", provider=provider, latency_ms=latency_ms)


def families(metrics: Metrics) -> dict[str, prometheus_client.Metric]:
    text = metrics.prometheus_text().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(
    family: prometheus_client.Metric,
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for s in family.samples}


def invariant_holds(snapshot: dict[str, Any]) -> bool:
    parts = (
        "delivered_messages",
        "failed_messages",
        "invalid_messages",
        "rate_limited_messages",
        "expired_messages",
        "duplicate_messages",
    )
    return bool(snapshot["processed_messages"] == sum(snapshot[name] for name in parts))


def test_empty_snapshot_has_exactly_the_documented_fields() -> None:
    snapshot = Metrics(worker_count=3).snapshot()
    assert set(snapshot) == SNAPSHOT_KEYS
    assert snapshot["processed_messages"] == 0
    assert snapshot["worker_count"] == 3
    assert snapshot["latency_ms"] == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    assert snapshot["providers"] == {}
    assert invariant_holds(snapshot)


def test_invariant_holds_after_every_batch_of_mixed_outcomes() -> None:
    metrics = Metrics()
    expected = dict.fromkeys(OutcomeKind, 0)
    for batch in range(50):
        kinds = [KINDS[(batch * 7 + i) % len(KINDS)] for i in range(batch % 5 + 1)]
        metrics.record_outcomes(outcome(kind) for kind in kinds)
        for kind in kinds:
            expected[kind] += 1
        assert invariant_holds(metrics.snapshot())
    snapshot = metrics.snapshot()
    assert snapshot["processed_messages"] == sum(expected.values()) == metrics.processed
    for kind, n in expected.items():
        assert snapshot[f"{kind.value}_messages"] == n
        assert metrics.count(kind) == n


def test_retries_and_gauges() -> None:
    metrics = Metrics(worker_count=10)
    metrics.add_retries(2)
    metrics.add_retries()
    with pytest.raises(ValueError, match="cannot decrease"):
        metrics.add_retries(-1)
    depth = [5]
    metrics.bind_gauges(queue_size=lambda: depth[0], in_flight=lambda: 7, consumer_lag=lambda: 42)
    snapshot = metrics.snapshot()
    assert snapshot["retried_attempts"] == 3
    assert (snapshot["queue_size"], snapshot["in_flight"], snapshot["consumer_lag"]) == (5, 7, 42)
    depth[0] = 9
    assert metrics.snapshot()["queue_size"] == 9
    assert snapshot["worker_count"] == 10


def test_uptime_follows_the_clock() -> None:
    now = [100.0]
    metrics = Metrics(clock=lambda: now[0])
    assert metrics.snapshot()["uptime_seconds"] == 0.0
    now[0] = 112.5
    assert metrics.snapshot()["uptime_seconds"] == 12.5


def test_percentiles_on_known_latencies() -> None:
    metrics = Metrics()
    # 1..100 ms, shuffled order must not matter.
    metrics.record_outcomes(
        outcome(OutcomeKind.DELIVERED, latency_ms=float((i * 37) % 100 + 1)) for i in range(100)
    )
    assert metrics.snapshot()["latency_ms"] == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}


def test_percentiles_cover_only_the_latest_window() -> None:
    metrics = Metrics(latency_window=10)
    metrics.record_outcomes(
        outcome(OutcomeKind.DELIVERED, latency_ms=float(i)) for i in range(1, 21)
    )
    # Only 11..20 remain.
    assert metrics.latency_percentiles_ms() == {"p50": 15.0, "p95": 20.0, "p99": 20.0, "max": 20.0}
    with pytest.raises(ValueError, match="latency_window"):
        Metrics(latency_window=0)


def test_per_provider_counters() -> None:
    metrics = Metrics(providers=["apns"])
    metrics.record_outcomes(
        [
            outcome(OutcomeKind.DELIVERED, "fcm"),
            outcome(OutcomeKind.DELIVERED, "fcm"),
            outcome(OutcomeKind.FAILED, "fcm"),
            outcome(OutcomeKind.DELIVERED, "firebase"),
            outcome(OutcomeKind.RATE_LIMITED, "firebase"),
            outcome(OutcomeKind.INVALID, ""),
        ]
    )
    metrics.record_outcome(outcome(OutcomeKind.FAILED, "firebase"))
    assert metrics.snapshot()["providers"] == {
        "apns": {"delivered": 0, "failed": 0},
        "fcm": {"delivered": 2, "failed": 1},
        "firebase": {"delivered": 1, "failed": 1},
    }


def test_prometheus_text_parses_and_carries_the_figures() -> None:
    metrics = Metrics(worker_count=4)
    metrics.bind_gauges(queue_size=lambda: 3, in_flight=lambda: 2, consumer_lag=lambda: 11)
    latencies = [0.5, 0.5, 3.0, 40.0, 2_000.0, 120_000.0]  # ms; the last is beyond every bucket
    metrics.record_outcomes(
        outcome(kind, latency_ms=ms) for kind, ms in zip(KINDS, latencies, strict=True)
    )
    metrics.record_outcome(outcome(OutcomeKind.DELIVERED, "apns", latency_ms=1.0))
    metrics.add_retries(5)
    found = families(metrics)

    outcomes = samples(found["pushtrio_outcomes"])
    assert found["pushtrio_outcomes"].type == "counter"
    assert outcomes[("pushtrio_outcomes_total", frozenset({("outcome", "delivered")}))] == 2
    for kind in KINDS[1:]:
        assert outcomes[("pushtrio_outcomes_total", frozenset({("outcome", kind.value)}))] == 1
    assert found["pushtrio_processed_messages"].samples[0].value == 7
    assert found["pushtrio_retried_attempts"].samples[0].value == 5
    providers = samples(found["pushtrio_provider_outcomes"])
    assert (
        providers[
            (
                "pushtrio_provider_outcomes_total",
                frozenset({("provider", "fcm"), ("outcome", "delivered")}),
            )
        ]
        == 1
    )
    assert (
        providers[
            (
                "pushtrio_provider_outcomes_total",
                frozenset({("provider", "fcm"), ("outcome", "failed")}),
            )
        ]
        == 1
    )
    for name, value in (
        ("pushtrio_queue_size", 3),
        ("pushtrio_in_flight", 2),
        ("pushtrio_consumer_lag", 11),
        ("pushtrio_workers", 4),
    ):
        assert found[name].type == "gauge"
        assert found[name].samples[0].value == value

    histogram = found["pushtrio_latency_seconds"]
    assert histogram.type == "histogram"
    buckets = {
        float(s.labels["le"]): s.value for s in histogram.samples if s.name.endswith("_bucket")
    }
    assert list(buckets) == [*LATENCY_BUCKETS_S, math.inf]
    assert buckets[0.001] == 3  # 0.5, 0.5, 1.0 ms (le is inclusive)
    assert buckets[0.005] == 4
    assert buckets[0.05] == 5
    assert buckets[2.5] == 6
    assert buckets[60.0] == 6
    assert buckets[math.inf] == 7
    values = list(buckets.values())
    assert values == sorted(values)  # cumulative
    by_name = {s.name: s.value for s in histogram.samples}
    assert by_name["pushtrio_latency_seconds_count"] == 7
    assert by_name["pushtrio_latency_seconds_sum"] == pytest.approx(sum(latencies, 1.0) / 1000)


def test_latency_window_is_a_summary_with_quantiles_over_the_window() -> None:
    metrics = Metrics(latency_window=10)
    metrics.record_outcomes(
        outcome(OutcomeKind.DELIVERED, latency_ms=float(i)) for i in range(1, 21)
    )
    family = families(metrics)["pushtrio_latency_window_seconds"]
    assert family.type == "summary"
    quantiles = {s.labels["quantile"]: s.value for s in family.samples if "quantile" in s.labels}
    # Over the window (11..20 ms); quantile 1 is its max.
    assert quantiles == {"0.5": 0.015, "0.95": 0.02, "0.99": 0.02, "1": 0.02}
    by_name = {s.name: s.value for s in family.samples if "quantile" not in s.labels}
    # Count and sum over every outcome, like the histogram's.
    assert by_name["pushtrio_latency_window_seconds_count"] == 20
    assert by_name["pushtrio_latency_window_seconds_sum"] == pytest.approx(0.21)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process metrics read /proc")
def test_the_standard_process_metrics_are_exposed() -> None:
    found = families(Metrics())
    for name in (
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ):
        assert name in found, name
        assert found[name].samples[0].value > 0, name
    assert found["process_cpu_seconds"].type == "counter"
    assert "python_info" in found


def test_two_instances_do_not_clash() -> None:
    first, second = Metrics(), Metrics()
    first.record_outcomes([outcome(OutcomeKind.DELIVERED)] * 3)
    second.record_outcome(outcome(OutcomeKind.EXPIRED))
    assert first.registry is not second.registry
    first_outcomes = samples(families(first)["pushtrio_outcomes"])
    second_outcomes = samples(families(second)["pushtrio_outcomes"])
    delivered = ("pushtrio_outcomes_total", frozenset({("outcome", "delivered")}))
    assert (first_outcomes[delivered], second_outcomes[delivered]) == (3, 0)
    assert second.snapshot()["expired_messages"] == 1
    assert first.snapshot()["expired_messages"] == 0
    # Nothing leaks into the process-wide default registry.
    assert b"pushtrio_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_a_failing_iterable_keeps_what_was_counted() -> None:
    metrics = Metrics()

    def broken() -> Iterator[Outcome]:
        yield outcome(OutcomeKind.DELIVERED, latency_ms=4.0)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        metrics.record_outcomes(broken())
    snapshot = metrics.snapshot()
    assert snapshot["processed_messages"] == snapshot["delivered_messages"] == 1
    assert snapshot["latency_ms"]["max"] == 4.0
    by_name = {s.name: s.value for s in families(metrics)["pushtrio_latency_seconds"].samples}
    assert by_name["pushtrio_latency_seconds_sum"] == pytest.approx(0.004)


def test_steps_and_breakers_are_counted_apart_from_the_outcomes() -> None:
    metrics = Metrics(worker_count=1)
    step = Step(
        kind=StepKind.RETRY_SCHEDULED,
        topic="t.retry.1",
        message=(None, b"{}", []),
        id="n",
        user_id="u1",
        provider="fcm",
        attempts=1,
        due_ms=5,
        reason="503 unavailable",
        ts=0.0,
    )
    metrics.record_steps([step, step, replace(step, kind=StepKind.DEFERRED)])
    metrics.bind_breakers(lambda: {"fcm": ("open", 1), "apns": ("closed", 0)})
    snapshot = metrics.snapshot()
    assert snapshot["retry_scheduled_messages"] == 2
    assert snapshot["deferred_messages"] == 1
    assert snapshot["parked_messages"] == 0
    assert snapshot["processed_messages"] == 0  # a step is not an outcome
    assert snapshot["breakers"]["fcm"] == {"state": "open", "transitions": 1}
    found = families(metrics)
    assert (
        samples(found["pushtrio_retry_scheduled_messages"])[
            ("pushtrio_retry_scheduled_messages_total", frozenset())
        ]
        == 2
    )
    states = samples(found["pushtrio_breaker_state"])
    assert (
        states[("pushtrio_breaker_state", frozenset({("provider", "fcm"), ("state", "open")}))] == 1
    )
    assert (
        states[("pushtrio_breaker_state", frozenset({("provider", "fcm"), ("state", "closed")}))]
        == 0
    )
    assert (
        states[("pushtrio_breaker_state", frozenset({("provider", "apns"), ("state", "closed")}))]
        == 1
    )
