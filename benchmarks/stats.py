"""Pure arithmetic of the harness: percentiles, rates, latency summaries."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` by linear interpolation.

    Matches ``numpy.percentile``'s default method. Raises ValueError when
    ``values`` is empty or ``q`` lies outside 0-100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be from 0 to 100, not {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return float(ordered[low])
    fraction = position - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def rate(count: int, seconds: float) -> float:
    """``count`` per second over ``seconds``; 0 when no time passed."""
    return count / seconds if seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency figures in milliseconds over ``count`` samples."""

    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def summarise_latency(latencies_ms: Sequence[float]) -> LatencySummary:
    """p50/p95/p99/max/mean of ``latencies_ms``; raises ValueError when it is empty."""
    if not latencies_ms:
        raise ValueError("no latency samples")
    ordered = sorted(latencies_ms)
    return LatencySummary(
        count=len(ordered),
        p50_ms=percentile(ordered, 50),
        p95_ms=percentile(ordered, 95),
        p99_ms=percentile(ordered, 99),
        max_ms=float(ordered[-1]),
        mean_ms=statistics.fmean(ordered),
    )


def steady_value(samples: Sequence[float]) -> float:
    """The median of the second half of ``samples`` (0 when there are none)."""
    if not samples:
        return 0.0
    return float(statistics.median(samples[len(samples) // 2 :]))


def rate_limit_for_third(messages: int, users: int, skipped_share: float = 0.03) -> int:
    """A per-user limit that rate-limits about a third of the messages that reach it.

    Messages go round-robin to ``users`` users, so each has ``messages / users`` of
    them; ``skipped_share`` of those (invalid + expired) never reach the limiter.
    The limit lets two thirds of the rest through, at least one.
    """
    if messages <= 0 or users <= 0:
        raise ValueError("messages and users must be positive")
    reaching = messages / users * (1.0 - skipped_share)
    return max(1, round(reaching * 2 / 3))
