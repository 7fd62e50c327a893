"""``pushtrio produce``: a load generator and a convenience for trying the service.

Writes generated notifications (optionally a share of invalid, expired and
duplicate ones) for N users, or the JSON lines of a file, to the Kafka topic, with
a rich progress bar. Records are keyed by user id so one user's notifications stay
in one partition, in order.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..config import MEMORY_URL
from ..contract.errors import BrokerUnavailable
from ..contract.lanes import DEFAULT_LANES, LaneTopics, peek_priority
from ..contract.notification import format_time

INVALID_SAMPLES = (
    b"this is not json",
    b"[1, 2, 3]",
    b'{"title": "no user"}',
    b'{"user_id": "u1", "title": "t", "priority": "high"}',
    b'{"user_id": "u1", "title": "t", "priority": 9}',
    b'{"user_id": "u1", "title": "t", "expires_at": "tomorrow"}',
    b'{"user_id": 42, "title": "t"}',
    b'{"user_id": "u1"}',
)


@dataclass(frozen=True, slots=True)
class ProduceOptions:
    count: int = 1000
    users: int = 100
    invalid_share: float = 0.0
    expired_share: float = 0.0
    duplicate_share: float = 0.0
    rate: float = 0.0
    lanes: LaneTopics = DEFAULT_LANES
    """Where each record goes, by its priority (the urgent topic for urgent ones)."""
    topic: str = ""
    """Set: every record goes to this topic instead."""
    priority: int | None = None
    """Set: the priority of every generated notification (else a mix of 0 to 3)."""
    file: str = ""
    prefix: str = "gen"
    progress: bool = True
    seed: int | None = None


def generate(options: ProduceOptions) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` pairs of generated notifications, in a reproducible mix when seeded."""
    rng = random.Random(options.seed)
    now = datetime.now(UTC)
    past = format_time(now - timedelta(hours=1))
    future = format_time(now + timedelta(days=1))
    created = format_time(now)
    for i in range(options.count):
        user = f"user-{i % max(1, options.users)}"
        roll = rng.random()
        if roll < options.invalid_share:
            yield user.encode(), INVALID_SAMPLES[i % len(INVALID_SAMPLES)]
            continue
        roll -= options.invalid_share
        message_id = f"{options.prefix}-{i}"
        if roll < options.duplicate_share and i > 0:
            message_id = f"{options.prefix}-{rng.randrange(i)}"
        expired = options.expired_share > 0 and rng.random() < options.expired_share
        document = {
            "id": message_id,
            "user_id": user,
            "type": "push",
            "title": f"Notification {i}",
            "body": "Your order has shipped",
            "data": {"n": i},
            "priority": i % 4 if options.priority is None else options.priority,
            "created_at": created,
            "expires_at": past if expired else future,
        }
        yield user.encode(), orjson.dumps(document)


def _lines(path: str) -> Iterator[tuple[bytes | None, bytes]]:
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    with stream:
        for line in stream:
            if line.strip():
                yield None, line.strip()


def run_produce(brokers: Sequence[str], options: ProduceOptions) -> dict[str, int]:
    """Write the records; return how many went to each topic (all acknowledged).

    Raises ValueError on the embedded queue (it lives inside ``pushtrio serve``:
    use POST /send there) and BrokerUnavailable when Kafka does not take them.
    """
    if list(brokers) == [MEMORY_URL]:
        raise ValueError(
            "KAFKA_BROKERS is memory://: the embedded queue lives inside `pushtrio serve`; "
            "set KAFKA_BROKERS, or POST notifications to /send"
        )
    if options.file and options.file != "-" and not os.path.isfile(options.file):
        raise ValueError(f"no such file: {options.file}")
    records = _lines(options.file) if options.file else generate(options)
    total = None if options.file else options.count
    try:
        producer = KafkaProducer(
            bootstrap_servers=list(brokers),
            client_id="pushtrio-produce",
            linger_ms=5,
            batch_size=256 * 1024,
        )
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot reach Kafka: {exc}") from exc
    written = 0
    by_topic: dict[str, int] = {}
    failures: list[BaseException] = []
    started = time.monotonic()
    with Progress(
        TextColumn("[bold]produce"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8.0f}/s"),
        TimeRemainingColumn(),
        disable=not options.progress,
    ) as progress:
        task = progress.add_task("produce", total=total, rate=0.0)
        try:
            for key, value in records:
                if options.rate > 0:
                    due = started + written / options.rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)  # pacing a steady offered load, not synchronisation
                topic = options.topic or options.lanes.topic_for(peek_priority(value))
                by_topic[topic] = by_topic.get(topic, 0) + 1
                future = producer.send(topic, key=key, value=value)
                future.add_errback(failures.append)
                written += 1
                if written % 500 == 0:
                    elapsed = time.monotonic() - started
                    progress.update(task, completed=written, rate=written / max(elapsed, 1e-9))
            producer.flush(timeout=60)
        except KafkaError as exc:
            raise BrokerUnavailable(f"Kafka did not take the records: {exc}") from exc
        finally:
            producer.close(timeout=10)
        elapsed = time.monotonic() - started
        progress.update(task, completed=written, rate=written / max(elapsed, 1e-9))
    if failures:
        raise BrokerUnavailable(
            f"Kafka refused {len(failures)} of {written} records: {failures[0]}"
        )
    return by_topic
