"""Pure arithmetic of the benchmark harness."""

from __future__ import annotations

import pytest
from benchmarks.memory import MIB, summarise_rss
from benchmarks.stats import (
    percentile,
    rate,
    rate_limit_for_third,
    steady_value,
    summarise_latency,
)


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (50, 2.5), (100, 4.0), (25, 1.75), (99, 3.97)],
)
def test_percentile_interpolates_like_numpy(q: float, expected: float) -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], q) == pytest.approx(expected)


def test_percentile_of_one_value() -> None:
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match="0 to 100"):
        percentile([1.0], q)


def test_percentile_rejects_empty() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_summarise_latency() -> None:
    summary = summarise_latency([float(i) for i in range(1, 101)])
    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == 100.0
    assert summary.mean_ms == pytest.approx(50.5)


def test_rate_guards_zero_time() -> None:
    assert rate(100, 2.0) == 50.0
    assert rate(100, 0.0) == 0.0


def test_steady_is_median_of_second_half() -> None:
    assert steady_value([1.0, 100.0, 5.0, 6.0, 7.0]) == 6.0
    assert steady_value([]) == 0.0


def test_summarise_rss_peak_and_steady() -> None:
    figures = summarise_rss([10 * MIB, 50 * MIB, 20 * MIB, 30 * MIB])
    assert figures.peak_mib == 50.0
    assert figures.steady_mib == 25.0
    assert figures.samples == 4
    assert summarise_rss([]).peak_mib == 0.0


@pytest.mark.parametrize(
    ("messages", "users", "limit"),
    [(200_000, 10_000, 13), (100_000, 10_000, 6), (10_000, 10_000, 1)],
)
def test_rate_limit_for_third(messages: int, users: int, limit: int) -> None:
    assert rate_limit_for_third(messages, users, 0.03) == limit


def test_rate_limit_for_third_limits_about_a_third() -> None:
    per_user = 200_000 / 10_000 * 0.97
    limited = per_user - rate_limit_for_third(200_000, 10_000, 0.03)
    assert limited / per_user == pytest.approx(1 / 3, abs=0.05)
