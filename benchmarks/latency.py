"""Phase 4: latency at fixed offered rates, from a record's CreateTime to its outcome.

One ``pushtrio serve`` runs through the whole phase. After a warm-up (the service
has joined the group and delivered WARMUP_MESSAGES), each rate is offered for
``seconds`` by a producer keeping a steady schedule, and the harness waits until
every record of that step has an outcome before the next step starts. Latency is
the outcome's ``ts`` (the service's wall clock, in the outcome log) minus the
record's Kafka timestamp (the producer's wall clock, same machine).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kafka import KafkaProducer
from rich.progress import TaskID

from pushtrio.cli.produce import ProduceOptions, generate

from .context import Bench, reported_settings
from .cpu import CpuFigures
from .kafka_io import Record, paced_producer, produce_paced, record_ids
from .memory import MemoryFigures
from .serve import BenchmarkError, MeasuredServe, OutcomeTail
from .stats import LatencySummary, summarise_latency

WARMUP_MESSAGES = 500
WARMUP_RATE = 1000.0
LATENCY_USERS = 10_000
CATCH_UP_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.1


@dataclass(frozen=True, slots=True)
class RateLatency:
    """One offered rate: what was offered, what came back, and how fast."""

    target_rate: float
    achieved_rate: float
    sent: int
    catch_up_s: float
    """From the last send to the last outcome of this step."""
    outcomes: dict[str, int]
    latency: LatencySummary
    cpu: CpuFigures
    """From the first send to the last outcome of this step."""


@dataclass(frozen=True, slots=True)
class LatencyResult:
    steps: list[RateLatency]
    memory: MemoryFigures
    settings: dict[str, str]
    producer_linger_ms: int


class _Outcomes:
    """Outcome time (unix seconds) and event per id, read from the log as it grows."""

    def __init__(self, serve: MeasuredServe) -> None:
        self.serve = serve
        self._tail = OutcomeTail(serve.outcome_log)
        self.ts: dict[str, float] = {}
        self.event: dict[str, str] = {}

    def wait_for(self, ids: Sequence[str], task: TaskID, bench: Bench) -> None:
        """Read the log until every id in ``ids`` has an outcome (first one counts)."""
        deadline = time.perf_counter() + CATCH_UP_TIMEOUT_S
        while True:
            for outcome in self._tail.read_new():
                key = str(outcome["id"])
                if key not in self.ts:
                    self.ts[key] = float(outcome["ts"])
                    self.event[key] = str(outcome["event"])
            missing = sum(1 for key in ids if key not in self.ts)
            bench.progress.update(task, completed=len(ids) - missing)
            if not missing:
                return
            self.serve.check_alive()
            if time.perf_counter() > deadline:
                raise BenchmarkError(
                    f"latency: {missing} of {len(ids)} records had no outcome after "
                    f"{CATCH_UP_TIMEOUT_S:.0f}s"
                )
            time.sleep(POLL_INTERVAL_S)


def _records(prefix: str, count: int) -> list[Record]:
    options = ProduceOptions(
        count=count, users=LATENCY_USERS, prefix=prefix, progress=False, seed=7
    )
    return list(generate(options))


def _step(
    bench: Bench,
    producer: KafkaProducer,
    topic: str,
    outcomes: _Outcomes,
    index: int,
    target_rate: float,
    seconds: float,
) -> RateLatency:
    # The index keeps ids unique (dedup would see repeats) if a rate is given twice.
    prefix = f"lat{index}-{int(target_rate)}"
    records = _records(prefix, max(1, int(target_rate * seconds)))
    ids = record_ids(records)
    label = f"latency {target_rate:,.0f}/s"
    cpu = outcomes.serve.cpu
    cpu.restart()
    sent_task = bench.progress.add_task(f"{label}: offer", total=len(records))
    run = produce_paced(
        producer,
        topic,
        records,
        target_rate,
        lambda n: bench.progress.update(sent_task, completed=n),
    )
    done_task = bench.progress.add_task(f"{label}: outcomes", total=len(records))
    outcomes.wait_for(ids, done_task, bench)
    cpu_figures = cpu.figures()
    latencies_ms = [
        outcomes.ts[key] * 1000.0 - create_ms for key, create_ms in run.create_ms.items()
    ]
    _save_samples(bench, prefix, run.create_ms, outcomes.ts)
    last_outcome = max(outcomes.ts[key] for key in ids)
    last_create = max(run.create_ms.values()) / 1000.0
    return RateLatency(
        target_rate=target_rate,
        achieved_rate=run.achieved_rate,
        sent=run.sent,
        catch_up_s=max(0.0, last_outcome - last_create),
        outcomes=dict(Counter(outcomes.event[key] for key in ids).most_common()),
        latency=summarise_latency(latencies_ms),
        cpu=cpu_figures,
    )


def _save_samples(
    bench: Bench, prefix: str, create_ms: Mapping[str, int], outcome_ts: Mapping[str, float]
) -> None:
    """Keep every sample (id, CreateTime ms, outcome ts) for a look with --keep-logs."""
    path = bench.workdir / f"latency-{prefix}.csv"
    with open(path, "w") as stream:
        stream.write("id,create_ms,outcome_ts,latency_ms\n")
        for key, created in create_ms.items():
            ts = outcome_ts[key]
            stream.write(f"{key},{created},{ts:.6f},{ts * 1000.0 - created:.3f}\n")


def run_latency(
    bench: Bench,
    rates: Sequence[float],
    seconds: float,
    overrides: Mapping[str, str],
    linger_ms: int,
    phase: str = "latency",
) -> LatencyResult:
    """Offer each of ``rates`` for ``seconds`` to one running service; measure latency.

    ``phase`` names the run's topic and its logs (one name per run).

    Raises BenchmarkError if the service exits or a step's outcomes do not all
    arrive within CATCH_UP_TIMEOUT_S. The service and producer are closed on any exit.
    """
    topic, group = bench.new_topic(phase)
    bench.flush_redis()
    producer = paced_producer(bench.kafka_addr, linger_ms)
    try:
        with bench.start_serve(phase, topic, group, overrides) as serve:
            outcomes = _Outcomes(serve)
            warm = _records("warm", WARMUP_MESSAGES)
            warm_task = bench.progress.add_task("latency: warm-up", total=len(warm))
            produce_paced(producer, topic, warm, WARMUP_RATE, lambda n: None)
            outcomes.wait_for(record_ids(warm), warm_task, bench)
            serve.rss.mark()
            steps = [
                _step(bench, producer, topic, outcomes, index, target, seconds)
                for index, target in enumerate(rates)
            ]
            memory = serve.rss.figures()
            settings = reported_settings(serve.env)
    finally:
        producer.close(timeout=10)
    return LatencyResult(
        steps=steps, memory=memory, settings=settings, producer_linger_ms=linger_ms
    )
