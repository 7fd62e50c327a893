"""Phases 6 and 7: one provider down, and deferred delivery.

Outage: the same records twice through ``pushtrio serve``, all providers healthy, then
FCM failing every call (``PROVIDER_FCM_SUCCESS_RATE=0``). The figure that matters is
the *other* providers' throughput: their deliveries per second from the first
outcome to their last delivery, as a ratio of the healthy run's (the target is 0.8
or more: FCM's breaker parks its notifications in the park topic instead of letting
them hold up the channel and the commits).

Deferral: every user gets more notifications than the limit allows in a window,
with ``RATE_LIMIT_POLICY=defer``; all must be delivered, none ``rate_limited``,
within a little more than the windows the limit requires, and never more than the
limit in any window (by the outcome log).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .context import Bench
from .kafka_io import Record
from .pipeline import ServedRun, serve_through
from .stats import rate

DOWN = "fcm"
OUTAGE_SETTINGS = {
    "PROVIDER_LATENCY": "5ms",
    "PROVIDER_SUCCESS_RATE": "1",
    "RETRY_DELAY": "1s",
    "LOG_LEVEL": "info",  # the ready line gives the address of /metrics
}
DEFER_USERS = 200
DEFER_PER_USER = 20
DEFER_LIMIT = 5
DEFER_WINDOW_S = 1.0
DEFER_SETTINGS = {
    "PROVIDER_LATENCY": "5ms",
    "PROVIDER_SUCCESS_RATE": "1",
    "RATE_LIMIT_POLICY": "defer",
    "RATE_LIMIT_PER_USER": str(DEFER_LIMIT),
    "RATE_LIMIT_WINDOW": f"{DEFER_WINDOW_S:g}s",
    "LOG_LEVEL": "info",
}
OTHERS_RATIO_TARGET = 0.8
OUTAGE_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class OthersFigures:
    """The providers that stayed up, in one run."""

    delivered: int
    seconds: float
    """First outcome of the run to their last delivery."""
    rate: float
    p50_s: float
    """Median time from the first outcome to one of their deliveries."""
    total_s: float
    """Process start to committed offsets == end offsets (the whole run)."""


@dataclass(frozen=True, slots=True)
class OutageResult:
    messages: int
    down: str
    healthy: OthersFigures
    outage: OthersFigures
    """The pair whose ratio is the median of the ``rounds``."""
    ratio: float
    """Others' rate during the outage / with none: the median over the rounds."""
    ratios: list[float]
    """Each round's ratio (a run with no outage, then one with), in order."""
    outcomes: dict[str, int]
    """Final outcomes of the outage run when its topic was committed to the end."""
    parked: int
    retry_scheduled: int
    breaker: str
    settings: dict[str, str]


@dataclass(frozen=True, slots=True)
class DeferResult:
    messages: int
    users: int
    limit: int
    window_s: float
    outcomes: dict[str, int]
    deferred: int
    seconds: float
    """First outcome to the last."""
    minimum_s: float
    """The windows the limit requires: (ceil(per user / limit) - 1) x window."""
    most_in_a_window: int
    """Most deliveries of one user surely within one window (see :func:`most_in_a_window`)."""
    settings: dict[str, str]


def _others(run: ServedRun) -> OthersFigures:
    first = min(float(o["ts"]) for o in run.outcomes)
    times = sorted(
        float(o["ts"]) - first
        for o in run.outcomes
        if o["event"] == "delivered" and o.get("provider") != DOWN
    )
    seconds = times[-1] if times else 0.0
    return OthersFigures(
        delivered=len(times),
        seconds=seconds,
        rate=rate(len(times), seconds),
        p50_s=times[len(times) // 2] if times else 0.0,
        total_s=run.result.total_s,
    )


def run_outage(
    bench: Bench, records: Sequence[Record], timeout_s: float, rounds: int = OUTAGE_ROUNDS
) -> OutageResult:
    """``rounds`` times: the records with all providers up, then with ``DOWN`` failing
    every call. One run's figure moves by ±30% on this machine (2 cores shared with
    the broker): the ratio reported is the median round's."""
    down_settings = {**OUTAGE_SETTINGS, f"PROVIDER_{DOWN.upper()}_SUCCESS_RATE": "0"}
    pairs = []
    for n in range(1, rounds + 1):
        healthy = serve_through(
            bench, f"outage-none-{n}", records, OUTAGE_SETTINGS, timeout_s, read_metrics=True
        )
        outage = serve_through(
            bench, f"outage-{n}", records, down_settings, timeout_s, read_metrics=True
        )
        before, during = _others(healthy), _others(outage)
        pairs.append((during.rate / before.rate if before.rate else 0.0, before, during, outage))
    ratios = [ratio for ratio, *_ in pairs]
    ratio, before, during, outage = sorted(pairs, key=lambda pair: pair[0])[len(pairs) // 2]
    breakers: Mapping[str, Any] = outage.metrics.get("breakers", {})
    return OutageResult(
        messages=outage.result.messages,
        down=DOWN,
        healthy=before,
        outage=during,
        ratio=ratio,
        ratios=ratios,
        outcomes=outage.result.outcomes,
        parked=int(outage.metrics.get("parked_messages", 0)),
        retry_scheduled=int(outage.metrics.get("retry_scheduled_messages", 0)),
        breaker=str(breakers.get(DOWN, {}).get("state", "?")),
        settings=outage.result.settings,
    )


def most_in_a_window(outcomes: Sequence[Mapping[str, Any]], window_s: float) -> int:
    """Most deliveries of one user whose limiter slots were surely within one window.

    A slot is taken between the start of the record's batch and the logged ``ts``:
    at or after ``ts - latency_ms``. Deliveries i..j are surely within one window
    when ``ts_j - (ts_i - latency_i)`` is under it; counting by ``ts`` alone would
    blame the limiter for the pipeline's varying delays.
    """
    by_user: dict[str, list[tuple[float, float]]] = {}
    for outcome in outcomes:
        if outcome["event"] == "delivered":
            ts = float(outcome["ts"])
            earliest = ts - float(outcome.get("latency_ms", 0.0)) / 1000
            by_user.setdefault(str(outcome["user_id"]), []).append((ts, earliest))
    most = 0
    for slots in by_user.values():
        slots.sort()
        start = 0
        for end, (ts, _) in enumerate(slots):
            while ts - slots[start][1] >= window_s:
                start += 1
            most = max(most, end - start + 1)
    return most


def run_defer(bench: Bench, records: Sequence[Record], timeout_s: float) -> DeferResult:
    """DEFER_PER_USER notifications for each of DEFER_USERS users, deferred past the limit."""
    run = serve_through(
        bench, "defer", records, DEFER_SETTINGS, timeout_s, until_outcomes=True, read_metrics=True
    )
    times = [float(o["ts"]) for o in run.outcomes]
    return DeferResult(
        messages=run.result.messages,
        users=DEFER_USERS,
        limit=DEFER_LIMIT,
        window_s=DEFER_WINDOW_S,
        outcomes=run.result.outcomes,
        deferred=int(run.metrics.get("deferred_messages", 0)),
        seconds=max(times) - min(times),
        minimum_s=(math.ceil(DEFER_PER_USER / DEFER_LIMIT) - 1) * DEFER_WINDOW_S,
        most_in_a_window=most_in_a_window(run.outcomes, DEFER_WINDOW_S),
        settings=run.result.settings,
    )
