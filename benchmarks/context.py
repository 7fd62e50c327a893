"""What every phase shares: addresses, the admin client, the work folder, progress."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rich.progress import Progress

from .kafka_io import Kafka, Record, produce_bulk
from .serve import MeasuredServe, service_env

#: Service settings reported with each phase (paths and ports are left out).
REPORTED_SETTINGS = (
    "PROVIDER_LATENCY",
    "PROVIDER_SUCCESS_RATE",
    "RATE_LIMIT_PER_USER",
    "RATE_LIMIT_WINDOW",
    "RETRY_DELAY",
    "RETRY_ATTEMPTS",
    "WORKER_COUNT",
    "MAX_QUEUE_SIZE",
)


@dataclass(slots=True)
class Bench:
    """The run's shared state; one per ``python -m benchmarks``."""

    kafka_addr: str
    redis_addr: str
    redis_db: int
    kafka: Kafka
    workdir: Path
    progress: Progress
    run_id: str
    serve_overrides: dict[str, str] = field(default_factory=dict)
    used_names: set[str] = field(default_factory=set)

    def names(self, phase: str) -> tuple[str, str]:
        """A fresh topic and consumer group for ``phase`` (numbered when the phase runs
        again)."""
        name = f"bench-{self.run_id}-{phase}"
        again = 2
        while name in self.used_names:
            name, again = f"bench-{self.run_id}-{phase}-{again}", again + 1
        self.used_names.add(name)
        return name, name

    def flush_redis(self) -> None:
        """Empty the benchmark's own Redis database (never database 0 of the tests)."""
        host, port = self.redis_addr.rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port), db=self.redis_db, socket_timeout=10)
        try:
            client.flushdb()
        finally:
            client.close()

    def new_topic(self, phase: str) -> tuple[str, str]:
        """Create ``phase``'s topic (and its dead-letter topic); return (topic, group)."""
        topic, group = self.names(phase)
        self.kafka.create_topics(topic)
        self.kafka.create_topics(f"{topic}.dlq", partitions=1)
        return topic, group

    def produce(self, topic: str, records: Sequence[Record], label: str) -> float:
        """Write ``records`` with a progress bar; return the seconds it took."""
        task = self.progress.add_task(label, total=len(records))
        seconds = produce_bulk(
            self.kafka_addr, topic, records, lambda n: self.progress.update(task, completed=n)
        )
        self.progress.update(task, completed=len(records))
        return seconds

    def start_serve(
        self, phase: str, topic: str, group: str, overrides: Mapping[str, str]
    ) -> MeasuredServe:
        """Start ``pushtrio serve`` on ``topic`` with the phase's settings, then the user's."""
        env = service_env(
            kafka=self.kafka_addr,
            redis=self.redis_addr,
            redis_db=self.redis_db,
            topic=topic,
            group=group,
            outcome_log=self.workdir / f"{phase}.outcomes.jsonl",
            overrides={**overrides, **self.serve_overrides},
        )
        return MeasuredServe(env, self.workdir / f"{phase}.serve.log")


def reported_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The knobs of ``env`` worth printing with a phase's figures."""
    return {name: env[name] for name in REPORTED_SETTINGS if name in env}
