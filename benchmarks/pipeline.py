"""Phases 2 and 3: ``pushtrio serve`` throughput, fast providers and a realistic mix.

Timed from starting the process to the moment the group's committed offsets reach
the end offsets (polled every POLL_INTERVAL_S), and again from the first outcome
in the outcome log (the service's start-up excluded).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from rich.progress import TaskID
from tests.support.files import count_lines
from tests.support.kafka import end_offsets

from .context import Bench, reported_settings
from .cpu import CpuFigures
from .kafka_io import Record
from .memory import MemoryFigures
from .serve import BenchmarkError, MeasuredServe, OutcomeTail
from .stats import rate

POLL_INTERVAL_S = 0.2


@dataclass(frozen=True, slots=True)
class ThroughputResult:
    """One ``pushtrio serve`` consuming a pre-produced topic to the end."""

    messages: int
    produce_s: float
    total_s: float
    """Process start to committed offsets == end offsets."""
    startup_s: float
    """Process start to the first outcome."""
    processing_s: float
    """First outcome to committed offsets == end offsets."""
    rate_total: float
    rate_processing: float
    outcomes: dict[str, int]
    memory: MemoryFigures
    cpu: CpuFigures
    """From process start to committed offsets == end offsets."""
    settings: dict[str, str]
    cpu_us_total: float = 0.0
    """Service CPU per record, process start to committed offsets == end offsets."""
    cpu_us_processing: float = 0.0
    """Service CPU per record from the first outcome on (start-up excluded): the CPU
    spent after the first outcome was seen, over the records that had none then."""


def run_throughput(
    bench: Bench,
    phase: str,
    records: Sequence[Record],
    overrides: Mapping[str, str],
    timeout_s: float,
) -> ThroughputResult:
    """Produce ``records`` to a fresh topic, then time ``pushtrio serve`` through them.

    Raises BenchmarkError if the service exits or does not finish within ``timeout_s``.
    The service is stopped (SIGTERM, then SIGKILL) however this returns.
    """
    return serve_through(bench, phase, records, overrides, timeout_s).result


@dataclass(frozen=True, slots=True)
class ServedRun:
    result: ThroughputResult
    outcomes: list[dict[str, Any]]
    """Every line of the run's outcome log."""
    metrics: dict[str, Any]
    """``GET /metrics`` at the end, before the service stopped."""


def serve_through(
    bench: Bench,
    phase: str,
    records: Sequence[Record],
    overrides: Mapping[str, str],
    timeout_s: float,
    *,
    until_outcomes: bool = False,
    read_metrics: bool = False,
) -> ServedRun:
    """:func:`run_throughput`, keeping the outcomes and, with ``read_metrics``, the
    final ``/metrics`` (its address comes from the ready line: LOG_LEVEL=info).

    Ends when the committed offsets reach the end offsets, or with ``until_outcomes``
    once every record has an outcome (deferred ones are committed long before).
    """
    topic, group = bench.new_topic(phase)
    bench.flush_redis()
    produce_s = bench.produce(topic, records, f"{phase}: produce")
    ends = end_offsets(bench.kafka_addr, topic)
    total = sum(ends.values())
    task = bench.progress.add_task(f"{phase}: serve", total=total)
    with bench.start_serve(phase, topic, group, overrides) as serve:
        first = _FirstOutcome(serve)
        finished_wall = _wait_committed(
            bench, serve, (group, topic), ends, task, timeout_s, first.look
        )
        if until_outcomes:
            finished_wall = _wait_outcomes(bench, serve, total, task, timeout_s)
        final_metrics: dict[str, Any] = {}
        if read_metrics:
            url = serve.wait_ready(10)
            final_metrics = httpx.get(f"{url}/metrics", timeout=10).json()
        memory = serve.rss.figures()
        cpu = serve.cpu.figures()
        cpu_s = serve.cpu.service_seconds()
        settings = reported_settings(serve.env)
    outcomes = OutcomeTail(serve.outcome_log).read_new()
    if not outcomes:
        raise BenchmarkError(f"{phase}: offsets were committed but no outcome was logged")
    first_ts = min(float(outcome["ts"]) for outcome in outcomes)
    total_s = finished_wall - serve.started_wall
    processing_s = finished_wall - first_ts
    result = ThroughputResult(
        messages=total,
        produce_s=produce_s,
        total_s=total_s,
        startup_s=first_ts - serve.started_wall,
        processing_s=processing_s,
        rate_total=rate(total, total_s),
        rate_processing=rate(total, processing_s),
        outcomes=dict(Counter(str(outcome["event"]) for outcome in outcomes).most_common()),
        memory=memory,
        cpu=cpu,
        settings=settings,
        cpu_us_total=1e6 * cpu_s / max(total, 1),
        cpu_us_processing=first.cpu_us_after(cpu_s, total),
    )
    return ServedRun(result, outcomes, final_metrics)


class _FirstOutcome:
    """The service's CPU seconds and outcomes logged when the first outcome shows up."""

    def __init__(self, serve: MeasuredServe) -> None:
        self._serve = serve
        self.cpu_s: float | None = None
        self.outcomes = 0

    def look(self) -> None:
        """Called at every poll until the first outcome is seen."""
        if self.cpu_s is not None or not self._serve.outcome_log.exists():
            return
        seen = count_lines(self._serve.outcome_log)
        if seen:
            self.cpu_s, self.outcomes = self._serve.cpu.service_seconds(), seen

    def cpu_us_after(self, cpu_s: float, total: int) -> float:
        """CPU microseconds per record handled after the first outcome was seen."""
        if self.cpu_s is None or total <= self.outcomes:
            return 0.0
        return 1e6 * (cpu_s - self.cpu_s) / (total - self.outcomes)


def _wait_outcomes(
    bench: Bench, serve: MeasuredServe, total: int, task: TaskID, timeout_s: float
) -> float:
    """Poll the outcome log until it has ``total`` lines; return wall time."""
    deadline = time.perf_counter() + timeout_s
    seen = 0
    while time.perf_counter() < deadline:
        serve.check_alive()
        seen = count_lines(serve.outcome_log) if serve.outcome_log.exists() else 0
        bench.progress.update(task, completed=seen)
        if seen >= total:
            return time.time()
        time.sleep(POLL_INTERVAL_S)
    raise BenchmarkError(f"{seen} of {total} outcomes after {timeout_s:.0f}s")


def _wait_committed(
    bench: Bench,
    serve: MeasuredServe,
    reader: tuple[str, str],
    ends: Mapping[int, int],
    task: TaskID,
    timeout_s: float,
    each_poll: Callable[[], None] = lambda: None,
) -> float:
    """Poll the commits of ``reader`` (group, topic) until every partition reaches its
    end, calling ``each_poll`` at each; return wall time."""
    deadline = time.perf_counter() + timeout_s
    committed: dict[int, int] = {}
    while time.perf_counter() < deadline:
        serve.check_alive()
        each_poll()
        committed = bench.kafka.committed(*reader)
        done = sum(min(committed.get(p, 0), end) for p, end in ends.items())
        bench.progress.update(task, completed=done)
        if all(committed.get(p, 0) >= end for p, end in ends.items()):
            return time.time()
        time.sleep(POLL_INTERVAL_S)
    raise BenchmarkError(
        f"committed offsets {committed} did not reach {dict(ends)} in {timeout_s:.0f}s"
    )
