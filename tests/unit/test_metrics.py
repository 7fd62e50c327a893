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
from pushtrio.contract.lanes import LaneTopics
from pushtrio.contract.outcome import Outcome, OutcomeKind
from pushtrio.sinks.metrics import LATENCY_BUCKETS_S, Metrics

KINDS = list(OutcomeKind)
SNAPSHOT_KEYS = {field.name for field in msgspec.structs.fields(MetricsSnapshot)}


LANES_ON = LaneTopics("notifications", "notifications.urgent", urgent_priority=2)
LANES_OFF = LaneTopics("notifications", "")
NO_LATENCY = {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}


def outcome(
    kind: OutcomeKind, provider: str = "fcm", latency_ms: float = 1.0, priority: int = 1
) -> Outcome:
    return Outcome(
        event=kind,
        id="n",
        user_id="u1",
        provider=provider,
        priority=priority,
        latency_ms=latency_ms,
    )


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
    assert snapshot["lanes"] == {
        "main": {
            "backlog": 0,
            "queued": 0,
            "unread": 0,
            "processed": 0,
            "delivered": 0,
            "latency_ms": NO_LATENCY,
        }
    }
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


def test_each_lane_has_its_own_latency_window() -> None:
    metrics = Metrics(latency_window=10)
    metrics.bind_lanes(LANES_ON, lambda: [0, 0, 0, 0], dict)
    # Priorities 2 and 3 are urgent (1..20 ms), 0 and 1 main (101..130 ms), interleaved.
    urgent = [
        outcome(OutcomeKind.DELIVERED, latency_ms=float(i), priority=2 + i % 2)
        for i in range(1, 21)
    ]
    main = [outcome(OutcomeKind.FAILED, latency_ms=100.0 + i, priority=i % 2) for i in range(1, 31)]
    main[0] = msgspec.structs.replace(main[0], event=OutcomeKind.DELIVERED)
    metrics.record_outcomes(o for pair in zip(urgent, main[:20], strict=True) for o in pair)
    metrics.record_outcomes(main[20:])
    lanes = metrics.snapshot()["lanes"]

    assert list(lanes) == ["urgent", "main"]
    # Each window keeps its lane's latest 10, whatever the other lane did meanwhile.
    assert lanes["urgent"]["latency_ms"] == {"p50": 15.0, "p95": 20.0, "p99": 20.0, "max": 20.0}
    assert lanes["main"]["latency_ms"] == {"p50": 125.0, "p95": 130.0, "p99": 130.0, "max": 130.0}
    assert metrics.latency_percentiles_ms()["max"] == 130.0
    assert (lanes["urgent"]["processed"], lanes["urgent"]["delivered"]) == (20, 20)
    assert (lanes["main"]["processed"], lanes["main"]["delivered"]) == (30, 1)
    assert sum(lane["processed"] for lane in lanes.values()) == metrics.processed


def test_a_lane_backlog_is_its_queued_priorities_plus_its_unread_records() -> None:
    metrics = Metrics()
    queued = [1, 2, 30, 400]
    unread = {"main": 5000, "urgent": 60000}
    metrics.bind_lanes(LANES_ON, lambda: queued, lambda: unread)
    lanes = metrics.snapshot()["lanes"]
    assert {lane: view["queued"] for lane, view in lanes.items()} == {"urgent": 430, "main": 3}
    assert {lane: view["unread"] for lane, view in lanes.items()} == {
        "urgent": 60000,
        "main": 5000,
    }
    assert {lane: view["backlog"] for lane, view in lanes.items()} == {
        "urgent": 60430,
        "main": 5003,
    }
    # Read on each snapshot, not at binding; a lane the source leaves out has none unread.
    queued[3] = 0
    del unread["urgent"]
    lanes = metrics.snapshot()["lanes"]
    assert (lanes["urgent"]["backlog"], lanes["main"]["backlog"]) == (30, 5003)


def test_with_the_urgent_lane_off_everything_is_main() -> None:
    metrics = Metrics()
    metrics.bind_lanes(LANES_OFF, lambda: [1, 2, 3, 4], lambda: {"main": 7})
    metrics.record_outcomes(
        outcome(OutcomeKind.DELIVERED, latency_ms=float(p + 1), priority=p) for p in range(4)
    )
    lanes = metrics.snapshot()["lanes"]
    assert list(lanes) == ["main"]
    assert lanes["main"]["backlog"] == 17
    assert lanes["main"]["processed"] == lanes["main"]["delivered"] == 4
    assert lanes["main"]["latency_ms"]["max"] == 4.0
    families_found = families(metrics)
    assert {s.labels["lane"] for s in families_found["pushtrio_lane_backlog"].samples} == {"main"}


def test_before_binding_there_is_one_lane_and_binding_keeps_its_window() -> None:
    metrics = Metrics()
    metrics.record_outcome(outcome(OutcomeKind.DELIVERED, latency_ms=9.0, priority=3))
    assert metrics.snapshot()["lanes"]["main"]["latency_ms"]["max"] == 9.0
    metrics.bind_lanes(LANES_ON, lambda: [0, 0, 0, 0], dict)
    metrics.record_outcome(outcome(OutcomeKind.DELIVERED, latency_ms=4.0, priority=3))
    lanes = metrics.snapshot()["lanes"]
    assert lanes["main"]["processed"] == 1
    assert lanes["main"]["latency_ms"]["max"] == 9.0
    assert lanes["urgent"]["processed"] == 1
    assert lanes["urgent"]["latency_ms"]["max"] == 4.0


def test_a_priority_out_of_range_counts_as_the_default_one() -> None:
    metrics = Metrics()
    metrics.bind_lanes(LaneTopics("t", "t.urgent"), lambda: [0, 0, 0, 0], dict)  # urgent: 3
    metrics.record_outcomes(outcome(OutcomeKind.DELIVERED, priority=p) for p in (-1, 4, 9, 3))
    lanes = metrics.snapshot()["lanes"]
    assert (lanes["main"]["processed"], lanes["urgent"]["processed"]) == (3, 1)


def test_prometheus_text_has_the_lane_series() -> None:
    metrics = Metrics(latency_window=10)
    metrics.bind_lanes(LANES_ON, lambda: [1, 2, 3, 4], lambda: {"main": 10, "urgent": 20})
    metrics.record_outcomes(
        outcome(OutcomeKind.DELIVERED, latency_ms=float(i), priority=3) for i in range(1, 21)
    )
    metrics.record_outcome(outcome(OutcomeKind.FAILED, latency_ms=500.0, priority=0))
    found = families(metrics)

    for name, by_lane in (
        ("pushtrio_lane_backlog", {"urgent": 27, "main": 13}),
        ("pushtrio_lane_queued", {"urgent": 7, "main": 3}),
        ("pushtrio_lane_unread", {"urgent": 20, "main": 10}),
    ):
        assert found[name].type == "gauge", name
        assert {s.labels["lane"]: s.value for s in found[name].samples} == by_lane, name
    delivered = found["pushtrio_lane_delivered_messages"]
    assert delivered.type == "counter"
    assert {s.labels["lane"]: s.value for s in delivered.samples} == {"urgent": 20, "main": 0}

    summary = found["pushtrio_lane_latency_seconds"]
    assert summary.type == "summary"
    figures = samples(summary)

    def figure(name: str, lane: str, **labels: str) -> float:
        return figures[(name, frozenset({("lane", lane), *labels.items()}))]

    # Quantiles over each lane's window (urgent: 11..20 ms); count and sum over all.
    assert [
        figure("pushtrio_lane_latency_seconds", "urgent", quantile=q)
        for q in ("0.5", "0.95", "0.99", "1")
    ] == [0.015, 0.02, 0.02, 0.02]
    assert figure("pushtrio_lane_latency_seconds", "main", quantile="1") == 0.5
    assert figure("pushtrio_lane_latency_seconds_count", "urgent") == 20
    assert figure("pushtrio_lane_latency_seconds_sum", "urgent") == pytest.approx(0.21)
    assert figure("pushtrio_lane_latency_seconds_count", "main") == 1
    assert figure("pushtrio_lane_latency_seconds_sum", "main") == pytest.approx(0.5)
